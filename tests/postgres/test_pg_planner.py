"""Planning (staging + diff in SQL) gives the same plan on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from syncer.config import BatchSizes, Tolerance
from syncer.errors import LedgerError
from syncer.ledger import Ledger
from syncer.models import (
    ChangeAction,
    FieldChange,
    InvalidRow,
    ItemResult,
    KindCounts,
    OperationStatus,
    OperationType,
    Record,
    RecordKind,
    content_hash,
    stat_group,
    stat_key,
)
from syncer.plan import Desired, plan_records


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    opened = Ledger.open(url)
    yield opened
    opened.close()


def course(key: str, name: str = "Course", origin: str = "c.csv:2", integration: str = "acme") -> Record:
    payload = {"externalId": key, "name": name}
    return Record(integration, RecordKind.COURSE, key, payload, content_hash(payload), origin)


def stat(course_id: str, user: str, first: str, last: str = "2025-01-31", progress: int = 50,
         origin: str = "s.csv:2") -> Record:  # fmt: skip
    c, u = {"type": "externalId", "value": course_id}, {"type": "mail", "value": user}
    payload = {"courseIdentifier": c, "userIdentifier": u, "firstActivityAt": first,
               "lastActivityAt": last, "progress": progress}  # fmt: skip
    return Record("acme", RecordKind.STAT, stat_key(c, u, first), payload, content_hash(payload), origin,
                  group=stat_group(c, u), order=first, activity=last)  # fmt: skip


def known(ledger: Ledger, items: Sequence[Record], outcome: str) -> None:
    """Put records in the ledger as an earlier run left them: synced, rejected or pending."""
    op_type = OperationType.IMPORT_STATS if items[0].kind is RecordKind.STAT else OperationType.IMPORT_COURSES
    op_id = ledger.prepare_operation(None, items[0].integration, op_type, list(items))
    ledger.mark_submitted(op_id, "https://x/api/v2/bulk/operations/" + "a" * 24, "a" * 24)
    if outcome != "pending":
        results = [ItemResult(i, outcome == "synced", None, "refused" if outcome == "rejected" else None, {})
                   for i in range(len(items))]  # fmt: skip
        ledger.record_results(op_id, OperationStatus.COMPLETED, results)


def keys(batches: list[tuple[OperationType, list[Record]]]) -> list[tuple[str, list[str]]]:
    return [(op.value, [r.key if r.kind is not RecordKind.STAT else r.order for r in b]) for op, b in batches]


def test_the_same_plan_on_both_backends(ledger: Ledger) -> None:
    live = [course(f"K{i:02}") for i in range(12)]
    known(ledger, live, "synced")
    known(ledger, [course("rej")], "rejected")
    known(ledger, [course("pend")], "pending")
    known(ledger, [stat("K00", "old@x", "2025-01-01")], "synced")
    known(ledger, [course("other", integration="beta")], "synced")  # another integration: untouched

    courses: list[Record | InvalidRow] = [
        *live[:10],  # K10 is missing (archived); K11 is kept by an invalid row with its key
        course("K03", name="Renamed", origin="c.csv:9"),  # a duplicate, later row wins on a tie
        course("rej"), course("pend"), course("Ünïcödé-日本"), course("new-b"), course("new-a"),
        InvalidRow("acme", RecordKind.COURSE, "c.csv:20", "name", "missing", key="K11"),
    ]  # fmt: skip
    stats: list[Record | InvalidRow] = [
        stat("K00", "old@x", "2025-01-01"),  # unchanged
        stat("K01", "b@x", "2025-02-02"), stat("K01", "b@x", "2025-02-01"),  # one pair, out of order
        stat("K02", "a@x", "2025-03-01", last="2025-03-02", progress=10, origin="s.csv:5"),
        stat("K02", "a@x", "2025-03-01", last="2025-03-09", progress=90, origin="s.csv:6"),  # wins
        stat("K02", "c@x", "2025-04-01"), stat("K02", "c@x", "2025-04-02"), stat("K02", "c@x", "2025-04-03"),
        InvalidRow("acme", RecordKind.STAT, "s.csv:30", "progress", "over 100"),
    ]  # fmt: skip
    desired = [
        Desired("acme", RecordKind.COURSE, courses, archive_missing=True),
        Desired("acme", RecordKind.STAT, stats, tolerance=Tolerance(count=2)),
    ]
    sizes = BatchSizes(courses=3, stats=4, archives=1)
    with plan_records(ledger, desired, integrations=["acme"], batch_sizes=sizes, detail_limit=3) as plan:
        summary = plan.summary("acme")
        batches = list(plan.batches("acme"))
        changes = [(c.key, c.action, c.origin, c.fields) for c in plan.changes]
        invalid = [(r.origin, r.field, r.reason) for r in plan.invalid_rows]
        tolerated = plan.invalid_tolerated("acme")
        total = plan.invalid_total

    assert (summary.courses, summary.stats) == (
        KindCounts(new=3, changed=1, resend=1, unchanged=9, skipped=1),
        KindCounts(new=6, unchanged=1),
    )
    assert (summary.archives, summary.live_courses, summary.invalid, summary.guard) == (1, 12, 4, None)
    assert summary.batches == {
        "importExternalCourses": 2,
        "importExternalStatistics": 2,
        "archiveExternalCourses": 1,
    }
    assert keys(batches) == [
        ("importExternalCourses", ["K03", "new-a", "new-b"]),
        ("importExternalCourses", ["pend", "Ünïcödé-日本"]),
        ("importExternalStatistics", ["2025-02-01", "2025-02-02", "2025-03-01"]),
        ("importExternalStatistics", ["2025-04-01", "2025-04-02", "2025-04-03"]),
        ("archiveExternalCourses", ["K10"]),
    ]
    progress = {
        r.order: r.payload.get("progress") for _, b in batches for r in b if r.kind is RecordKind.STAT
    }
    assert progress["2025-03-01"] == 90
    assert changes == [
        ("K03", ChangeAction.CHANGED, "c.csv:9", (FieldChange("name", "Course", "Renamed"),)),
        ("K10", ChangeAction.ARCHIVE, "c.csv:2", ()),
        ("Ünïcödé-日本", ChangeAction.NEW, "c.csv:2", ()),  # detail in source order, by action
        ("new-b", ChangeAction.NEW, "c.csv:2", ()),
        ("new-a", ChangeAction.NEW, "c.csv:2", ()),
        ("pend", ChangeAction.RESEND, "c.csv:2", ()),
    ]
    assert invalid == [
        ("c.csv:2", None, "duplicate of c.csv:9"),
        ("c.csv:20", "name", "missing"),
        ("s.csv:5", None, "duplicate of s.csv:6"),
    ]  # the first three (detail_limit) of four
    assert (total, tolerated) == (4, False)  # 2 invalid + 2 duplicates > 2 tolerated
    assert len(ledger.invalid_rows("acme")) == 4


def test_staging_leaves_nothing_behind(ledger: Ledger) -> None:
    many: list[Record | InvalidRow] = [course(f"C{i:05}") for i in range(12_000)]  # over a staging chunk
    with plan_records(ledger, [Desired("acme", RecordKind.COURSE, many)]) as plan:
        assert plan.summary("acme").courses == KindCounts(new=12_000)
        sent = sum(len(b) for _, b in plan.batches("acme"))
    assert sent == 12_000
    with ledger.engine.connect() as conn:
        tables: Any = inspect(conn).get_table_names()
    assert not [t for t in tables if t.startswith("syncer_")]


def test_awkward_text_survives_staging(ledger: Ledger) -> None:
    # COPY's text format escapes tabs, newlines and backslashes: they must come back unchanged.
    awkward = "tab\there, new\nline, back\\slash, \\N, quote ' \" , ünï 日本 🎓"
    items: list[Record | InvalidRow] = [
        course(f"k\t{awkward}", name=awkward),
        InvalidRow("acme", RecordKind.COURSE, f"c.csv:3 {awkward}", "name", awkward, key=None),
    ]
    with plan_records(ledger, [Desired("acme", RecordKind.COURSE, items)]) as plan:
        [(_, [sent])] = list(plan.batches("acme"))
        [invalid] = plan.invalid_rows
    assert (sent.key, sent.payload["name"]) == (f"k\t{awkward}", awkward)
    assert sent.hash == course(f"k\t{awkward}", name=awkward).hash
    assert (invalid.origin, invalid.reason, invalid.key) == (f"c.csv:3 {awkward}", awkward, None)


@pytest.mark.postgres
def test_a_staging_failure_is_a_ledger_error(pg_url: str) -> None:
    ledger = Ledger.open(pg_url)
    try:
        with pytest.raises(LedgerError, match=r"staging records failed: .*0x00"):
            plan_records(ledger, [Desired("acme", RecordKind.COURSE, [course("nul\x00byte")])])
    finally:
        ledger.close()


@pytest.mark.postgres
def test_the_plan_connection_stays_usable_after_streaming(pg_url: str) -> None:
    # Streaming options are per statement: after the batches were read, the plan's connection
    # still runs ordinary statements (on PostgreSQL a sticky stream_results would turn them into
    # server-side cursors, and DDL or DML would then fail).
    ledger = Ledger.open(pg_url)
    try:
        with plan_records(ledger, [Desired("acme", RecordKind.COURSE, [course("a")])]) as plan:
            assert [len(b) for _, b in plan.batches("acme")] == [1]
            conn = plan._conn
            assert conn is not None
            conn.execute(text("CREATE TEMPORARY TABLE after_stream (i int)"))
            conn.execute(text("INSERT INTO after_stream VALUES (1)"))
            conn.rollback()
    finally:
        ledger.close()
