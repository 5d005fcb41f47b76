"""What a plan tells: per-integration summaries with the mass-archive guard, capped detail, invalid rows.

Read from the plan's tables once the comparison is done: the counts per action come from the
small actions table and the tally kept while staging (no count over the staged records); the
detail is capped (``DETAIL_LIMIT``), in the order of the sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, func, select, true
from sqlalchemy.engine import Connection

from syncer.config import BatchSizes
from syncer.ledger import Ledger, records
from syncer.models import (
    Change,
    ChangeAction,
    FieldChange,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    OperationType,
    RecordKind,
)
from syncer.plan.compare import joined
from syncer.plan.stage import Desired
from syncer.plan.tables import DUPLICATE, INVALID, OK, SENDS, SKIPPED, UNCHANGED, Tally

__all__ = [
    "API_MAXIMUM",
    "DETAIL_LIMIT",
    "GUARD_MIN",
    "GUARD_SHARE",
    "all_invalid",
    "details",
    "invalid_detail",
    "mass_archive_guard",
    "summarise",
    "tail_merges",
    "tolerated_by_integration",
]

DETAIL_LIMIT = 100
"""Changed records and invalid rows a plan keeps in detail (per action); the rest are counted."""

# Mass-archive guard (product.md §4): more than this share of the live courses, and more than
# this many, needs --allow-mass-archive.
GUARD_SHARE = 0.10
GUARD_MIN = 5


def mass_archive_guard(integration: str, archives: int, live: int) -> str | None:
    """The mass-archive guard's message when a plan archives too many live courses, else None.

    The one place the guard is computed: ``IntegrationSummary.guard`` holds it,
    ``Plan.guard_violations`` lists them, and apply refuses such a plan unless
    --allow-mass-archive.
    """
    if archives > GUARD_MIN and archives > GUARD_SHARE * live:
        return (
            f"{integration}: the plan archives {archives:,} of {live:,} live courses "
            f"(more than {GUARD_SHARE:.0%} and more than {GUARD_MIN}); "
            "check the courses source, or pass --allow-mass-archive"
        )
    return None


def summarise(
    conn: Connection,
    s: Table,
    a: Table,
    name: str,
    sizes: BatchSizes,
    tally: Tally,
    warnings: Sequence[str] = (),
) -> IntegrationSummary:
    by_kind: dict[str, dict[str, int]] = {RecordKind.COURSE.value: {}, RecordKind.STAT.value: {}}
    for kind, act, count in conn.execute(
        select(a.c.kind, a.c.action, func.count())
        .where(a.c.integration == name)
        .group_by(a.c.kind, a.c.action)
    ):
        by_kind[kind][act] = int(count)
    staged_ok = {
        kind: n for (integration, kind, state), n in tally.items() if integration == name and state == OK
    }
    for kind, found in by_kind.items():
        found[UNCHANGED] = int(staged_ok.get(kind, 0)) - sum(found.values())
    archives = int(staged_ok.get(RecordKind.ARCHIVE.value, 0))
    invalid = sum(
        n for (integration, _kind, state), n in tally.items() if integration == name and state != OK
    )
    live = int(
        conn.execute(
            select(func.count()).where(
                records.c.integration == name, records.c.kind == RecordKind.COURSE, records.c.live == true()
            )
        ).scalar_one()
    )
    courses, stats = _counts(by_kind[RecordKind.COURSE.value]), _counts(by_kind[RecordKind.STAT.value])
    batches = {
        OperationType.IMPORT_COURSES.value: _cut_count(courses.to_send, sizes.courses, API_MAXIMUM.courses),
        OperationType.IMPORT_STATS.value: _stat_batches(conn, s, a, name, sizes.stats)
        if stats.to_send
        else 0,
        OperationType.ARCHIVE_COURSES.value: _cut_count(archives, sizes.archives, API_MAXIMUM.archives),
    }
    guard = mass_archive_guard(name, archives, live)
    return IntegrationSummary(name, courses, stats, archives, live, invalid, batches, guard, tuple(warnings))


API_MAXIMUM = BatchSizes()
"""The API's documented items per bulk call: a merged tail never goes beyond them."""

SMALL_TAIL = 100
"""A last batch of at most ``size // SMALL_TAIL`` items (1% of a batch) is a small tail."""


def tail_merges(before: int, tail: int, size: int, maximum: int) -> bool:
    """Whether a last batch of ``tail`` items joins the batch of ``before`` items sent before it
    (``merge_tail`` in plan.py): it is a small tail and both fit in one call."""
    small = size // SMALL_TAIL
    return small > 0 and before > 0 and 0 < tail <= small and before + tail <= maximum


def _cut_count(total: int, size: int, maximum: int) -> int:
    """Calls for ``total`` records cut ``size`` at a time, a small tail merged (courses, archives)."""
    full, tail = divmod(total, size)
    return full + (1 if tail and not tail_merges(size if full else 0, tail, size, maximum) else 0)


def _counts(found: Mapping[str, int]) -> KindCounts:
    return KindCounts(
        new=found.get(ChangeAction.NEW.value, 0),
        changed=found.get(ChangeAction.CHANGED.value, 0),
        resend=found.get(ChangeAction.RESEND.value, 0),
        retry=found.get(ChangeAction.RETRY.value, 0),
        unchanged=found.get(UNCHANGED, 0),
        skipped=found.get(SKIPPED, 0),
        held=found.get(ChangeAction.HELD.value, 0),
    )


def _stat_batches(conn: Connection, s: Table, a: Table, name: str, size: int) -> int:
    """The exact number of statistics calls: pairs are packed whole, as ``Plan.batches`` does."""
    pairs = conn.execute(
        select(func.count())
        .where(a.c.integration == name, a.c.kind == RecordKind.STAT.value, a.c.action.in_(SENDS))
        .group_by(a.c.grp)
        .order_by(a.c.grp),
        execution_options={"yield_per": 5000},
    )
    batches, filled, last = 0, 0, 0  # last: the size of the last batch closed
    for (count,) in pairs:
        if filled and filled + count > size:
            batches, filled, last = batches + 1, 0, filled
        filled += count
        while filled >= size:
            batches, filled, last = batches + 1, filled - size, size
    return batches + (1 if filled and not tail_merges(last, filled, size, API_MAXIMUM.stats) else 0)


def details(
    conn: Connection,
    s: Table,
    a: Table,
    summaries: Sequence[IntegrationSummary],
    limit: int,
    restaged: bool = False,
) -> list[Change]:
    """Capped detail per action: changed records with their fields, archives, then the others."""
    out: list[Change] = []
    totals = {
        ChangeAction.CHANGED: sum(x.courses.changed + x.stats.changed for x in summaries),
        ChangeAction.ARCHIVE: sum(x.archives for x in summaries),
        ChangeAction.NEW: sum(x.courses.new + x.stats.new for x in summaries),
        ChangeAction.RESEND: sum(x.courses.resend + x.stats.resend for x in summaries),
        ChangeAction.RETRY: sum(x.courses.retry + x.stats.retry for x in summaries),
    }
    for act, total in totals.items():
        if not total or limit <= 0:
            continue
        if act is ChangeAction.ARCHIVE:
            archives = (
                select(s.c.integration, s.c.key, s.c.origin)
                .where(s.c.kind == RecordKind.ARCHIVE.value, s.c.state == OK)
                .order_by(s.c.integration, s.c.key)
                .limit(limit)
            )
            for integration, key, origin in conn.execute(archives):
                out.append(Change(integration, RecordKind.COURSE, key, act, origin))
            continue
        query = (
            select(s.c.integration, s.c.kind, s.c.key, s.c.origin, s.c.payload, records.c.payload)
            .select_from(joined(a.join(s, s.c.id == a.c.id), s))
            .where(a.c.action == act.value)
            .order_by(*((s.c.stream, a.c.id) if restaged else (a.c.id,)))
            .limit(limit)
        )
        for integration, kind, key, origin, new, old in conn.execute(query):
            fields = _field_changes(old, orjson.loads(new)) if act is ChangeAction.CHANGED else ()
            out.append(Change(integration, RecordKind(kind), key, act, origin, fields))
    return out


def _field_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    old = old or {}
    return tuple(
        FieldChange(name, old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    )


def _invalid_query(s: Table, restaged: bool) -> Any:
    return (
        select(s.c.integration, s.c.kind, s.c.origin, s.c.field, s.c.reason, s.c.key)
        .where(s.c.state != OK)
        .order_by(*((s.c.stream, s.c.id) if restaged else (s.c.id,)))
    )


def _invalid_row(row: Any) -> InvalidRow:
    integration, kind, origin, field_, reason, key = row
    return InvalidRow(integration, RecordKind(kind), origin, field_, reason or "", key or None)


def invalid_detail(conn: Connection, s: Table, limit: int, restaged: bool) -> list[InvalidRow]:
    return [_invalid_row(r) for r in conn.execute(_invalid_query(s, restaged).limit(limit))]


def all_invalid(ledger: Ledger, conn: Connection, s: Table, restaged: bool) -> Iterator[InvalidRow]:
    with ledger.translate_errors("reading invalid rows"):
        for row in conn.execute(_invalid_query(s, restaged), execution_options={"yield_per": 5000}):
            yield _invalid_row(row)


def tolerated_by_integration(
    desired: Sequence[Desired], valid: Mapping[tuple[str, RecordKind], int], tally: Tally
) -> dict[str, bool]:
    """Per integration: do the invalid rows (duplicates included) of each stream stay tolerated?"""
    out: dict[str, bool] = {}
    for d in desired:
        invalid = tally.get((d.integration, d.kind.value, INVALID), 0)
        duplicates = tally.get((d.integration, d.kind.value, DUPLICATE), 0)
        # Duplicates were staged as records: among the valid ones until they count as invalid.
        good = valid.get((d.integration, d.kind), 0) - duplicates
        allowed = d.tolerance.tolerates(invalid + duplicates, good)
        out[d.integration] = out.get(d.integration, True) and allowed
    return out
