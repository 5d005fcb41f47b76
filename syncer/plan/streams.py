"""Map a source into the rows the planner stages, in a worker process when the source is big.

Reading and mapping a million-row file is pure Python work; staging it is mostly SQLite's. On a
machine with a second core a forked worker reads and maps while the planner's process inserts,
so the two overlap. Chunks travel through a pipe; a few in flight keep memory flat. Small
sources, SQL sources and single-core machines map in-process (a fork costs more than it saves).
"""

from __future__ import annotations

import hashlib
import itertools
import marshal
import multiprocessing
import os
import queue
import signal
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from syncer.config import IntegrationConfig, ObjectConfig, SourceConfig, SourceKind
from syncer.errors import SourceError, SyncerError
from syncer.mapping import Mapper, build_mapper
from syncer.models import InvalidRow, RecordKind, StagedRow
from syncer.sources import Share, load_values
from syncer.sources.digest import Unscannable, digest_of, parse, parse_header, runs, seed

__all__ = [
    "PARALLEL_MIN_BYTES",
    "PARALLEL_MIN_ROWS",
    "FileStream",
    "Run",
    "Selection",
    "stage_runs",
    "stage_source",
]

PARALLEL_MIN_BYTES = 4 << 20
"""File sources from this size on are mapped in a worker process (when there is a second core)."""

_CHUNK = 2000  # source rows per message: big enough that pickling is cheap per row
_IN_FLIGHT = 8  # chunks the worker may map ahead of the planner

Staged = StagedRow | InvalidRow
Run = list[StagedRow] | InvalidRow
"""What ``stage_runs`` yields: a list of consecutive valid records, or one invalid row."""
SourceRow = tuple[str, dict[str, Any] | None, int | None]
"""(origin, values or None for a record the reader skips, source digest or None)."""
RowsOf = Callable[[Share | None], Iterator[SourceRow]]
"""Reads a share of a source's rows (all of them for None)."""


def stage_source(
    integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig, source: SourceConfig
) -> Iterator[Staged]:
    """Stream ``source`` mapped for staging: StagedRow per valid record, InvalidRow per bad row.

    Raises ConfigError at once for a bad field spec, SourceError while iterating.
    """
    mapper = build_mapper(integration, kind, spec)
    if _parallel(source):
        return _flat(_in_workers(mapper, source))
    return _staged(mapper, source)


def stage_runs(
    integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig, source: SourceConfig
) -> Iterator[Run]:
    """``stage_source`` in runs: lists of consecutive StagedRows, and each InvalidRow alone.

    The same items in the same order; the planner takes a list at a time instead of an item at
    a time (a million generator steps and type tests fewer).
    Raises ConfigError at once for a bad field spec, SourceError while iterating.
    """
    return _classic_runs(build_mapper(integration, kind, spec), source)


def _classic_runs(mapper: Mapper, source: SourceConfig) -> Iterator[Run]:
    if _parallel(source):
        return _in_workers(mapper, source)
    return _staged_runs(mapper, _classic_rows(source)(None))


def _flat(runs: Iterator[Run]) -> Iterator[Staged]:
    try:
        for run in runs:
            if type(run) is list:
                yield from run
            else:
                yield run  # type: ignore[misc]
    finally:
        close = getattr(runs, "close", None)
        if close is not None:
            close()  # stopped early: stop the workers now, not when the generator is collected


def _runs(items: list[Staged]) -> Iterator[Run]:
    """Group a chunk's items into runs of valid records, keeping the order."""
    run: list[StagedRow] = []
    for item in items:
        if not isinstance(item, InvalidRow):
            run.append(item)
            continue
        if run:
            yield run
            run = []
        yield item
    if run:
        yield run


def _can_fork() -> bool:
    if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return False
    # Forking a process with other threads (the --simulate simulator, a driver's threads) can
    # copy a lock held by one of them and deadlock the child: map in-process instead.
    return threading.active_count() == 1


def _parallel(source: SourceConfig) -> bool:
    if source.kind is SourceKind.SQL or source.path is None:
        return False
    if not _can_fork():
        return False
    try:
        return source.path.stat().st_size >= PARALLEL_MIN_BYTES
    except OSError:  # missing or unreadable: reading it in-process reports it properly
        return False


def _staged(mapper: Mapper, source: SourceConfig) -> Iterator[Staged]:
    stage = mapper.stage
    for origin, values in load_values(source):
        out = stage(origin, values)
        if out is not None:
            yield out


def _staged_runs(mapper: Mapper, rows: Iterator[SourceRow]) -> Iterator[Run]:
    stage = mapper.stage
    run: list[StagedRow] = []
    append = run.append
    for origin, values, digest in rows:
        if values is None:
            continue
        out = stage(origin, values, digest)
        if out is None:
            continue
        if not isinstance(out, InvalidRow):
            append(out)
            if len(run) >= _CHUNK:
                yield run
                run = []
                append = run.append
        else:
            if run:
                yield run
                run = []
                append = run.append
            yield out
    if run:
        yield run


def _workers() -> int:
    # Each worker parses the whole file (cheap) and maps its share (the expensive part); the
    # planner's process inserts. Two workers keep two cores busy; more parse more for less gain.
    return min(3, max(2, (os.cpu_count() or 1) - 1))


def _classic_rows(source: SourceConfig) -> RowsOf:
    def rows(share: Share | None) -> Iterator[SourceRow]:
        for origin, values in load_values(source, share):
            yield origin, values, None

    return rows


def _in_workers(mapper: Mapper, source: SourceConfig, rows: RowsOf | None = None) -> Iterator[Run]:
    """Map ``source`` in worker processes; chunks come back in the source's order.

    ``rows(share)`` reads a worker's share of the rows (by default: every row of the file).
    """
    read = rows or _classic_rows(source)
    # fork: the compiled mapper (generated code, closures) is inherited instead of pickled.
    ctx = multiprocessing.get_context("fork")
    count = _workers()
    pipes: list[Connection] = []
    workers: list[multiprocessing.process.BaseProcess] = []
    try:
        for index in range(count):
            receive, send = ctx.Pipe(duplex=False)
            worker = ctx.Process(
                target=_work,
                args=(mapper, read, (index, count, _CHUNK), send, list(pipes)),
                name=f"syncer-map-{source.name}-{index}",
                daemon=True,
            )
            worker.start()
            send.close()  # the worker holds the only sending end: its death ends recv() (EOFError)
            pipes.append(receive)
            workers.append(worker)
        chunk = 0
        while True:  # chunk k comes from worker k % count, so the source's order is kept
            index = chunk % count
            try:
                tag, data = pipes[index].recv()
            except EOFError:
                workers[index].join()
                raise SourceError(
                    f"{source.path}: the mapping process ended unexpectedly"
                    f" (exit code {workers[index].exitcode})"
                ) from None
            if tag == "rows":  # valid records only, marshalled: cheaper than pickle both ways
                valid = marshal.loads(data)
                if valid:
                    yield valid
            elif tag == "mixed":
                yield from _runs(data)
            elif tag == "error":
                raise data
            elif tag == "crash":
                raise RuntimeError(f"mapping {source.path} failed in a worker process: {data}")
            else:  # "done": there is no chunk k, hence no later one
                break
            chunk += 1
    finally:
        for receive in pipes:
            receive.close()
        for process in workers:
            if process.is_alive():
                process.terminate()  # stopped early (error, interrupt): stop mapping too
            process.join()


def _work(mapper: Mapper, rows: RowsOf, share: Share, send: Connection, inherited: list[Connection]) -> None:
    """A worker process: map its share of the source, one message per chunk of source rows."""
    for other in inherited:  # the earlier workers' pipes: only the planner may hold them open
        other.close()
    try:
        # Ctrl-C reaches the whole process group: the planner handles it and stops the workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # pragma: no cover - not the main thread: keep the inherited handlers
        pass
    # A sender thread pickles and writes while this thread maps on, up to _IN_FLIGHT chunks ahead.
    outbox: queue.Queue[tuple[str, Any] | None] = queue.Queue(_IN_FLIGHT)
    sender = threading.Thread(target=_send_all, args=(outbox, send), daemon=True)
    sender.start()
    size = share[2]
    stage = mapper.stage
    try:
        chunk: list[Staged] = []
        taken = 0
        mixed = False  # does the chunk hold an invalid row (which marshal cannot carry)?
        for origin, values, digest in rows(share):
            if values is not None:  # None: a record the reader skips (still one of the share's)
                out = stage(origin, values, digest)
                if out is not None:
                    chunk.append(out)
                    mixed = mixed or type(out) is not tuple
            taken += 1
            if taken == size:  # a whole chunk of source rows, however many were filtered out
                outbox.put(_message(chunk, mixed))
                chunk, taken, mixed = [], 0, False
        if taken:
            outbox.put(_message(chunk, mixed))
        outbox.put(("done", None))
    except (SyncerError, Unscannable) as exc:  # Unscannable: the planner reads the file again
        outbox.put(("error", exc))
    except Exception as exc:  # a bug: report it rather than die silently
        outbox.put(("crash", f"{type(exc).__name__}: {exc}"))
    finally:
        outbox.put(None)
        sender.join()
        send.close()


def _message(chunk: list[Staged], mixed: bool) -> tuple[str, Any]:
    return ("mixed", chunk) if mixed else ("rows", marshal.dumps(chunk))


def _send_all(outbox: queue.Queue[tuple[str, Any] | None], send: Connection) -> None:
    while (message := outbox.get()) is not None:
        try:
            send.send(message)
        except OSError:  # the planner is gone (killed): nobody will read the rest
            os._exit(1)


# -- by digest: only the rows the ledger does not know are mapped ---------------------------------


class Selection:
    """(ordinal, digest) of the records of a file to map, ordinals ascending.

    Two arrays of 8-byte integers: a million records take 16 MB instead of the 130 MB of a list
    of tuples, and forked mapping workers share them without touching reference counts.
    """

    __slots__ = ("digests", "ords")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self.ords = array("q")
        self.digests = array("q")
        self.extend(pairs)

    def extend(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Add pairs (after those already held, ordinals ascending)."""
        for ordinal, digest in pairs:
            self.ords.append(ordinal)
            self.digests.append(digest)

    def __len__(self) -> int:
        return len(self.ords)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.ords, self.digests, strict=True)


PARALLEL_MIN_ROWS = 50_000
"""Selected rows from which a digested file is mapped in worker processes."""
_DIGEST_CHUNK = 20_000


class FileStream:
    """A CSV or JSON Lines source read by digest (syncer/sources/digest.py).

    ``digests()`` gives the digest of every data record, in order (a record's position in that
    order is its ordinal); the planner looks them up in the ledger and calls ``runs()`` with the
    ordinals of the records to map, whose StagedRows then carry their digest. Raises ConfigError
    at once for a bad field spec.
    """

    def __init__(
        self, integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig, source: SourceConfig
    ) -> None:
        self.integration = integration
        self.kind = kind
        self.spec = spec
        self.source = source
        self.mapper = build_mapper(integration, kind, spec)
        self._header: list[str] | None = None
        self._key: int | None = None

    def classic(self) -> Iterator[Run]:
        """Every row mapped the ordinary way, without digests (for a file ``cut`` refuses)."""
        return _classic_runs(self.mapper, self.source)

    def digests(self) -> Iterator[list[int]]:
        """The digests of the data records in chunks, in order; raises scan.Unscannable."""
        records = self._records()
        blake2b, from_bytes = hashlib.blake2b, int.from_bytes
        key = self._key
        assert key is not None
        chunk: list[int] = []
        for _first, raws in records:
            # The hot loop of a plan with nothing changed: one comprehension per block of lines
            # (scan.digest_of, inlined: a call per record would cost a tenth of a second more).
            chunk += [
                from_bytes(blake2b(raw, digest_size=8).digest(), "little", signed=True) ^ key for raw in raws
            ]
            if len(chunk) >= _DIGEST_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _records(self) -> Iterator[tuple[int, list[bytes]]]:
        """``scan.runs`` of the data records; reads the CSV header and sets the digests' key."""
        records = runs(self.source)
        header_raw = b""
        if self.source.kind is SourceKind.CSV:
            for first, raws in records:
                header_raw = raws[0]
                self._header = parse_header(self.source, header_raw)
                if len(raws) > 1:
                    records = itertools.chain([(first + 1, raws[1:])], records)
                break
            else:
                self._header = []
        self._key = seed(self.integration, self.kind, self.spec, self.source, header_raw)
        return records

    def runs(self, selected: Selection | None) -> Iterator[Run]:
        """Map the records given as ``(ordinal, digest)``, in ordinal order (after ``digests()``),
        or every record (``None``: no ``digests()`` needed); StagedRows carry their digest.

        With a selection, a record whose digest is not the one ``digests()`` gave means the file
        changed in between: SourceError. Every record may raise scan.Unscannable instead (the
        file is then to be read the ordinary way, from ``classic()``).
        """
        if selected is None:
            rows = self._rows_of(None)
            if _parallel(self.source):
                return _in_workers(self.mapper, self.source, rows)
            return _staged_runs(self.mapper, rows(None))
        if not selected:
            return iter(())
        rows = self._rows_of(selected)
        if len(selected) >= PARALLEL_MIN_ROWS and _can_fork():
            return _in_workers(self.mapper, self.source, rows)
        return _staged_runs(self.mapper, rows(None))

    def _rows_of(self, selected: Selection | None) -> RowsOf:
        source = self.source

        def every(share: Share | None) -> Iterator[tuple[int, bytes, int]]:
            index, count, size = share or (0, 1, 1)
            records = self._records()
            key = self._key
            assert key is not None
            position = 0
            for first, raws in records:
                for offset, raw in enumerate(raws):
                    if count == 1 or ((position + offset) // size) % count == index:
                        yield first + offset, raw, digest_of(raw, key)
                position += len(raws)

        def picked(share: Share | None) -> Iterator[tuple[int, bytes, int]]:
            assert selected is not None
            key = self._key
            if key is None:
                raise RuntimeError("FileStream.runs() before digests()")
            index, count, size = share or (0, 1, 1)
            wanted = iter(selected)
            ordinal, digest = next(wanted)
            taken = -1
            position = 0  # ordinal of the run's first record
            try:
                for first, raws in self._records():
                    end = position + len(raws)
                    while ordinal < end:
                        taken += 1
                        if count == 1 or (taken // size) % count == index:
                            raw = raws[ordinal - position]
                            if digest_of(raw, key) != digest:
                                raise SourceError(_changed(source))
                            yield first + ordinal - position, raw, digest
                        following = next(wanted, None)
                        if following is None:
                            return
                        ordinal, digest = following
                    position = end
            except Unscannable:
                raise SourceError(_changed(source)) from None
            raise SourceError(_changed(source))  # fewer records than the first reading found

        def rows(share: Share | None) -> Iterator[SourceRow]:
            records = picked(share) if selected is not None else every(share)
            first = next(records, None)  # reading starts with the header, which parse() needs
            if first is None:
                return iter(())
            header = self._header if source.kind is SourceKind.CSV else None
            return parse(source, header, itertools.chain([first], records))

        return rows


def _changed(source: SourceConfig) -> str:
    return f"{source.path}: the file changed while the plan read it; plan again"
