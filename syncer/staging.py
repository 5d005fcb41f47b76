"""Map a source into the rows the planner stages, in a worker process when the source is big.

Reading and mapping a million-row file is pure Python work; staging it is mostly SQLite's. On a
machine with a second core a forked worker reads and maps while the planner's process inserts,
so the two overlap. Chunks travel through a pipe; a few in flight keep memory flat. Small
sources, SQL sources and single-core machines map in-process (a fork costs more than it saves).
"""

from __future__ import annotations

import marshal
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from syncer.config import IntegrationConfig, ObjectConfig, SourceConfig, SourceKind
from syncer.errors import SourceError, SyncerError
from syncer.mapping import Mapper, build_mapper
from syncer.models import InvalidRow, RecordKind, StagedRow
from syncer.sources import Share, load_values

__all__ = ["PARALLEL_MIN_BYTES", "Run", "stage_runs", "stage_source"]

PARALLEL_MIN_BYTES = 4 << 20
"""File sources from this size on are mapped in a worker process (when there is a second core)."""

_CHUNK = 2000  # source rows per message: big enough that pickling is cheap per row
_IN_FLIGHT = 8  # chunks the worker may map ahead of the planner

Staged = StagedRow | InvalidRow
Run = list[StagedRow] | InvalidRow
"""What ``stage_runs`` yields: a list of consecutive valid records, or one invalid row."""


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
    mapper = build_mapper(integration, kind, spec)
    if _parallel(source):
        return _in_workers(mapper, source)
    return _staged_runs(mapper, source)


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


def _parallel(source: SourceConfig) -> bool:
    if source.kind is SourceKind.SQL or source.path is None:
        return False
    if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return False
    if threading.active_count() > 1:
        # Forking a process with other threads (the --simulate simulator, a driver's threads) can
        # copy a lock held by one of them and deadlock the child: map in-process instead.
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


def _staged_runs(mapper: Mapper, source: SourceConfig) -> Iterator[Run]:
    stage = mapper.stage
    run: list[StagedRow] = []
    append = run.append
    for origin, values in load_values(source):
        out = stage(origin, values)
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


def _in_workers(mapper: Mapper, source: SourceConfig) -> Iterator[Run]:
    """Map ``source`` in worker processes; chunks come back in the source's order."""
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
                args=(mapper, source, (index, count, _CHUNK), send, list(pipes)),
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
                rows = marshal.loads(data)
                if rows:
                    yield rows
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


def _work(
    mapper: Mapper, source: SourceConfig, share: Share, send: Connection, inherited: list[Connection]
) -> None:
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
        for origin, values in load_values(source, share):
            out = stage(origin, values)
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
    except SyncerError as exc:
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
