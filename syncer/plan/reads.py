"""Which rows of each incremental SQL source a run reads (docs/incremental.md).

For every stream (integration and kind) whose source has a ``cursor``, ``decide_reads`` chooses a
full read (the first one, ``--full``, ``--retry-rejected``, ``full_every`` due, a change of what
the cursor was recorded for, a full read that did not end, rows the ledger lost: ``_full_reason``
and ``_lost_rows``) or an incremental one: rows whose cursor is at least the last recorded
value less the overlap, and at most the greatest value the source holds when the plan starts
(``high``). Apply records ``high`` once every record of the read is recorded
(``move_cursors``); a saved plan keeps its reads, so that apply reads the very same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncer.config import Config, ObjectConfig, SourceConfig, Window
from syncer.ledger import Ledger
from syncer.models import RecordKind, content_hash
from syncer.sources.digest import mapping_facts
from syncer.sources.incremental import check_value, decode, encode, shown, start
from syncer.sources.readers import full_read_facts, high_water
from syncer.version import __version__

__all__ = ["Read", "decide_reads", "query_digest", "reads_from_data"]


@dataclass(frozen=True)
class Read:
    """How one stream reads its incremental source in this run."""

    integration: str
    kind: RecordKind
    source: str
    column: str
    full: bool
    reason: str  # why a full read; "" for an incremental one
    stored: Any  # the cursor recorded before this run (None: none)
    since: Any  # the lower bound: ``stored`` less the overlap (None for a full read)
    high: Any  # the greatest cursor value when the plan started: what apply records
    query_digest: str
    nulls: int = 0  # full reads: rows whose cursor is NULL, which no incremental read reads

    @property
    def window(self) -> Window | None:
        """The rows to read (None: every row)."""
        if self.full:
            return None
        return Window(self.column, self.since, self.high)

    def on(self, source: SourceConfig) -> SourceConfig:
        """``source`` limited to this read's rows."""
        return replace(source, window=self.window)

    def describe(self) -> str:
        """One line for a plan and the run's log."""
        what = "courses" if self.kind is RecordKind.COURSE else "statistics"
        head = f"{self.integration} {what}: source {self.source!r}"
        if self.full:
            line = f"{head} read in full ({self.reason}); apply records {self.column} = {shown(self.high)}"
            return line + (f"; {self.null_note()}" if self.nulls else "")
        upto = f" up to {shown(self.high)}" if self.high is not None else " (no row has a greater one)"
        return (
            f"{head} read incrementally: rows with {self.column} from {shown(self.since)}{upto} "
            f"(recorded: {shown(self.stored)}, less the overlap)"
        )

    def null_note(self) -> str:
        """What rows with a NULL cursor mean, for the plan and the log."""
        rows = f"{self.nulls:,} row" + ("s have" if self.nulls != 1 else " has")
        return (
            f"{rows} no {self.column} (NULL): only full reads read them (--full, full_every), "
            "incremental ones never do"
        )

    def data(self) -> dict[str, Any]:
        """JSON-ready and exact (values ``encode``-d), for plan files; ``reads_from_data`` reads it
        back. Plans show the values as people read them instead (syncer/report/plan.py)."""
        return {
            "integration": self.integration,
            "kind": self.kind.value,
            "source": self.source,
            "column": self.column,
            "full": self.full,
            "reason": self.reason,
            "stored": _encoded(self.stored),
            "since": _encoded(self.since),
            "high": _encoded(self.high),
            "query_digest": self.query_digest,
            "nulls": self.nulls,
        }


def _encoded(value: Any) -> Any:
    return None if value is None else encode(value)


def reads_from_data(items: Iterable[Mapping[str, Any]]) -> dict[tuple[str, RecordKind], Read]:
    """The reads a plan file kept (``Read.data``)."""
    out = {}
    for item in items:
        read = Read(
            integration=str(item["integration"]),
            kind=RecordKind(item["kind"]),
            source=str(item["source"]),
            column=str(item["column"]),
            full=bool(item["full"]),
            reason=str(item["reason"]),
            stored=_decoded(item["stored"]),
            since=_decoded(item["since"]),
            high=_decoded(item["high"]),
            query_digest=str(item["query_digest"]),
            nulls=int(item.get("nulls", 0)),
        )
        out[(read.integration, read.kind)] = read
    return out


def _decoded(value: Any) -> Any:
    return None if value is None else decode(str(value))


def query_digest(source: SourceConfig, spec: ObjectConfig) -> str:
    """What a cursor was recorded for: the query, the cursor column, and what the rows map to.

    When the field rules change (a mapping, a filter, ``on_unsafe_change``...), rows before the
    cursor map to other records: only a full read sends them. So does another syncer version
    (mapping may change with it), as for the digests of file rows (syncer/sources/digest.py).
    """
    return content_hash(
        {
            "query": (source.query or "").strip(),
            "cursor": source.cursor,
            "rules": mapping_facts(spec),
            "syncer": __version__,
        }
    )


def decide_reads(
    config: Config,
    ledger: Ledger,
    names: Sequence[str],
    *,
    full: bool = False,
    retry_rejected: bool = False,
    given: Mapping[tuple[str, RecordKind], Read] | None = None,
    now: datetime | None = None,
) -> dict[tuple[str, RecordKind], Read]:
    """The read of every stream of ``names`` whose source is incremental (``given``: a plan file's)."""
    now = now or datetime.now(UTC)
    reads: dict[tuple[str, RecordKind], Read] = {}
    for name in names:
        integration = config.integrations[name]
        for kind, spec in ((RecordKind.COURSE, integration.courses), (RecordKind.STAT, integration.stats)):
            if spec is None:
                continue
            source = config.sources[spec.source]
            if source.cursor is None:
                continue
            if given is not None and (name, kind) in given:
                reads[(name, kind)] = given[(name, kind)]
                continue
            reads[(name, kind)] = _decide(ledger, name, kind, source, spec, full, retry_rejected, now)
    return reads


def _decide(
    ledger: Ledger,
    name: str,
    kind: RecordKind,
    source: SourceConfig,
    spec: ObjectConfig,
    full: bool,
    retry_rejected: bool,
    now: datetime,
) -> Read:
    assert source.cursor is not None
    digest = query_digest(source, spec)
    held = ledger.cursor_of(name, kind.value, source.name)
    reason = _full_reason(source, held, digest, full, retry_rejected, now)
    if not reason:
        reason = _lost_rows(ledger, name, kind)
    stored = held.value if held is not None else None
    since = None if reason else start(source, stored)
    if reason:
        high, nulls = full_read_facts(source)  # one scan: a full read scans the source anyway
    else:
        high, nulls = high_water(source, since), 0  # the index range scan of the window
    if high is not None:
        check_value(source, high)
        start(source, high)  # an overlap of the other kind is refused by this run, not by the next
    cursor = source.cursor
    return Read(name, kind, source.name, cursor, bool(reason), reason, stored, since, high, digest, nulls)


def _full_reason(
    source: SourceConfig, held: Any, digest: str, full: bool, retry_rejected: bool, now: datetime
) -> str:
    if full:
        return "--full"
    if retry_rejected:
        return "--retry-rejected: rejected rows may lie before the cursor"
    if held is None:
        return "first read: no cursor recorded yet"
    if held.full_due:
        return "the last full read did not end (killed, interrupted or an operation failed)"
    if held.query_digest != digest:
        return "the query, the cursor column, the field rules or syncer's version changed since the last read"
    if held.value is None:
        return "the last read found no row"
    if source.full_every is not None:
        last = held.full_read_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)  # SQLite keeps no zone: the ledger writes UTC
        if last is None or now - last >= source.full_every:
            when = last.strftime("%Y-%m-%d %H:%M UTC") if last is not None else "never"
            return f"full_every {_period(source.full_every)}: last full read {when}"
    return ""


def _lost_rows(ledger: Ledger, name: str, kind: RecordKind) -> str:
    """Why rows before the cursor must be read again although the cursor is past them: the
    ledger forgot the stream's records (its integration recreated on the platform: everything
    is sent again), or a refresh found courses to restore (their rows may lie anywhere)."""
    holds, restores = ledger.stream_state(name, kind.value)
    if not holds:
        return "the ledger holds none of its records (the integration was recreated on the platform)"
    if restores and kind is RecordKind.COURSE:
        return "the last refresh found courses to restore"
    return ""


def _period(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
