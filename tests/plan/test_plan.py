"""The planner: desired records vs the ledger, compared in SQL; batches streamed back in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text

from syncer.config import BatchSizes, Tolerance
from syncer.errors import PlanError
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
from syncer.plan import Desired, Plan, plan_records


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def course(key: str, name: str = "Course", origin: str = "courses.csv:2") -> Record:
    payload = {"externalId": key, "name": name}
    return Record("acme", RecordKind.COURSE, key, payload, content_hash(payload), origin)


def stat(
    course_id: str,
    user: str,
    first: str,
    last: str = "2025-01-31",
    progress: int = 50,
    origin: str = "s.csv:2",
) -> Record:
    c, u = {"type": "externalId", "value": course_id}, {"type": "mail", "value": user}
    payload = {
        "courseIdentifier": c,
        "userIdentifier": u,
        "firstActivityAt": first,
        "lastActivityAt": last,
        "progress": progress,
    }
    return Record(
        "acme", RecordKind.STAT, stat_key(c, u, first), payload, content_hash(payload), origin,
        group=stat_group(c, u), order=first, activity=last,
    )  # fmt: skip


def record_state(ledger: Ledger, items: Sequence[Record], outcome: str) -> None:
    """Put records in the ledger as an earlier run left them: synced, rejected or pending."""
    op_type = OperationType.IMPORT_STATS if items[0].kind is RecordKind.STAT else OperationType.IMPORT_COURSES
    op_id = ledger.prepare_operation(None, "acme", op_type, list(items))
    ledger.mark_submitted(op_id, "https://x/api/v2/bulk/operations/" + "a" * 24, "a" * 24)
    if outcome == "pending":
        return
    results = [ItemResult(i, outcome == "synced", None, "refused" if outcome == "rejected" else None, {})
               for i in range(len(items))]  # fmt: skip
    ledger.record_results(op_id, OperationStatus.COMPLETED, results)


def make_plan(
    ledger: Ledger,
    courses: Sequence[Record | InvalidRow] | None = None,
    stats: Sequence[Record | InvalidRow] | None = None,
    *,
    archive_missing: bool = True,
    retry_rejected: bool = False,
    sizes: BatchSizes | None = None,
) -> Plan:
    desired = []
    if courses is not None:
        desired.append(Desired("acme", RecordKind.COURSE, courses, archive_missing=archive_missing))
    if stats is not None:
        desired.append(Desired("acme", RecordKind.STAT, stats))
    return plan_records(
        ledger, desired, integrations=["acme"], batch_sizes=sizes, retry_rejected=retry_rejected
    )


def live(n: int) -> list[Record]:
    return [course(f"C{i:03}") for i in range(n)]


CASES = [
    # (known: [(records, outcome)], desired courses, desired stats, options, expected)
    pytest.param([], [course("a")], [stat("a", "u@x", "2025-01-01")], {},
                 (KindCounts(new=1), KindCounts(new=1), 0), id="new"),
    pytest.param([([course("a")], "synced")], [course("a", name="Renamed")], None, {},
                 (KindCounts(changed=1), KindCounts(), 0), id="changed"),
    pytest.param([([course("a")], "synced")], [course("a")], None, {},
                 (KindCounts(unchanged=1), KindCounts(), 0), id="unchanged"),
    pytest.param([([course("a")], "rejected")], [course("a")], None, {},
                 (KindCounts(skipped=1), KindCounts(), 0), id="rejected-unchanged-skipped"),
    pytest.param([([course("a")], "rejected")], [course("a", name="Fixed")], None, {},
                 (KindCounts(changed=1), KindCounts(), 0), id="rejected-changed-sent"),
    pytest.param([([course("a")], "rejected")], [course("a")], None, {"retry_rejected": True},
                 (KindCounts(retry=1), KindCounts(), 0), id="rejected-retry"),
    pytest.param([([stat("a", "u@x", "2025-01-01")], "pending")], None, [stat("a", "u@x", "2025-01-01")], {},
                 (KindCounts(), KindCounts(resend=1), 0), id="pending-resent"),
    pytest.param([(live(20), "synced")], live(19), None, {},
                 (KindCounts(unchanged=19), KindCounts(), 1), id="archive"),
    pytest.param([(live(20), "synced")], live(19), None, {"archive_missing": False},
                 (KindCounts(unchanged=19), KindCounts(), 0), id="archive-off"),
    pytest.param([(live(20), "synced")], [], None, {},
                 (KindCounts(), KindCounts(), 0), id="empty-source-never-archives"),
    pytest.param([(live(20), "synced")],
                 [InvalidRow("acme", RecordKind.COURSE, "c.csv:2", "name", "missing", key="C000"),
                  *live(20)[1:19]],
                 None, {}, (KindCounts(unchanged=18), KindCounts(), 1), id="invalid-row-keeps-its-course"),
]  # fmt: skip


@pytest.mark.parametrize(("known", "courses", "stats", "options", "expected"), CASES)
def test_build_plan(ledger: Ledger, known, courses, stats, options, expected) -> None:
    for items, outcome in known:
        record_state(ledger, items, outcome)
    with make_plan(ledger, courses, stats, **options) as plan:
        [summary] = plan.integrations
        assert (summary.courses, summary.stats, summary.archives) == expected
        sent = [r for _, batch in plan.batches("acme") for r in batch]
        assert len(sent) == summary.courses.to_send + summary.stats.to_send + summary.archives
        assert plan.has_changes == bool(sent)


def test_field_level_changes(ledger: Ledger) -> None:
    record_state(ledger, [course("a", name="Old"), course("b")], "synced")
    with make_plan(ledger, [course("a", name="New", origin="courses.csv:7"), course("b")]) as plan:
        [change] = plan.changes
    assert (change.key, change.action, change.origin) == ("a", ChangeAction.CHANGED, "courses.csv:7")
    assert change.fields == (FieldChange("name", "Old", "New"),)


@pytest.mark.parametrize(
    ("live_courses", "kept", "guarded"),
    [
        pytest.param(100, 89, True, id="11-of-100-guarded"),
        pytest.param(100, 90, False, id="10-of-100-allowed"),
        pytest.param(20, 14, True, id="6-of-20-guarded"),
        pytest.param(20, 15, False, id="5-never-guarded"),
    ],
)
def test_mass_archive_guard(ledger: Ledger, live_courses: int, kept: int, guarded: bool) -> None:
    record_state(ledger, live(live_courses), "synced")
    with make_plan(ledger, live(live_courses)[:kept]) as plan:
        assert plan.summary("acme").archives == live_courses - kept
        assert bool(plan.guard_violations) is guarded


def test_duplicates_latest_activity_wins(ledger: Ledger) -> None:
    older = stat("a", "u@x", "2025-01-01", last="2025-01-05", progress=10, origin="s.csv:2")
    newer = stat("a", "u@x", "2025-01-01", last="2025-01-09", progress=90, origin="s.csv:3")
    later_tie = course("c", name="second", origin="c.csv:3")
    with make_plan(ledger, [course("c", name="first"), later_tie], [newer, older]) as plan:
        sent = {r.key: r for _, batch in plan.batches("acme") for r in batch}
        assert sent[newer.key].payload["progress"] == 90
        assert sent["c"].origin == "c.csv:3"  # same activity: the later row wins
        assert sorted((r.origin, r.reason) for r in plan.invalid_rows) == [
            ("courses.csv:2", "duplicate of c.csv:3"),
            ("s.csv:2", "duplicate of s.csv:3"),
        ]
        assert plan.invalid_total == 2
    assert len(ledger.invalid_rows()) == 2  # stored for `syncer rejected`


def test_invalid_rows_are_counted_and_tolerated(ledger: Ledger) -> None:
    bad = [InvalidRow("acme", RecordKind.STAT, f"s.csv:{i}", "progress", "too big") for i in range(3)]
    good = [stat("a", f"u{i}@x", "2025-01-01") for i in range(97)]
    desired = [Desired("acme", RecordKind.STAT, [*good, *bad], tolerance=Tolerance(share=0.03))]
    with plan_records(ledger, desired, detail_limit=2) as plan:
        assert (plan.summary("acme").invalid, plan.invalid_total, len(plan.invalid_rows)) == (3, 3, 2)
        assert plan.invalid_tolerated("acme")
    desired = [Desired("acme", RecordKind.STAT, [*good, *bad], tolerance=Tolerance(count=2))]
    with plan_records(ledger, desired) as plan:
        assert not plan.invalid_tolerated("acme")


def test_batches_keep_pairs_together_in_order(ledger: Ledger) -> None:
    # Attempts that do not overlap (each ends the day it starts): each is a new attempt.
    pair_a = [stat("a", "u@x", f"2025-01-0{d}", f"2025-01-0{d}T12") for d in (3, 1, 2)]  # out of order
    pair_b = [stat("b", "u@x", f"2025-02-0{d}", f"2025-02-0{d}T12") for d in (1, 2)]
    pair_c = [stat("c", "u@x", "2025-03-01")]
    courses = [course(k) for k in "edcba"]
    sizes = BatchSizes(courses=2, stats=4, archives=1)
    with make_plan(ledger, courses, [*pair_b, *pair_a, *pair_c], sizes=sizes) as plan:
        batches = list(plan.batches("acme"))
        assert plan.summary("acme").batches == {
            "importExternalCourses": 3,
            "importExternalStatistics": 2,
            "archiveExternalCourses": 0,
        }
    kinds = [op for op, _ in batches]
    assert kinds == [OperationType.IMPORT_COURSES] * 3 + [OperationType.IMPORT_STATS] * 2
    assert [[r.key for r in b] for op, b in batches if op is OperationType.IMPORT_COURSES] == [
        ["a", "b"], ["c", "d"], ["e"],
    ]  # fmt: skip
    stat_batches = [b for op, b in batches if op is OperationType.IMPORT_STATS]
    # A pair never straddles two calls, and its statistics go by firstActivityAt.
    assert [[r.order for r in b] for b in stat_batches] == [
        ["2025-01-01", "2025-01-02", "2025-01-03"],
        ["2025-02-01", "2025-02-02", "2025-03-01"],
    ]
    assert all(len(b) <= 4 for b in stat_batches)


def test_courses_then_stats_then_archives(ledger: Ledger) -> None:
    record_state(ledger, [course("gone")], "synced")
    with make_plan(ledger, [course("new")], [stat("new", "u@x", "2025-01-01")]) as plan:
        order = [(op, [r.key for r in batch]) for op, batch in plan.batches("acme")]
    assert [op for op, _ in order] == [
        OperationType.IMPORT_COURSES,
        OperationType.IMPORT_STATS,
        OperationType.ARCHIVE_COURSES,
    ]
    assert order[2][1] == ["gone"]


def test_a_big_pair_is_split_in_order(ledger: Ledger) -> None:
    pair = [stat("a", "u@x", f"2025-01-{d:02}", f"2025-01-{d:02}T12") for d in range(1, 6)]
    with make_plan(ledger, None, pair, sizes=BatchSizes(stats=2)) as plan:
        sizes = [len(b) for _, b in plan.batches("acme")]
        assert sizes == [2, 2, 1] and plan.summary("acme").batches["importExternalStatistics"] == 3


def test_plan_reads_records_but_does_not_change_them(ledger: Ledger) -> None:
    record_state(ledger, [course("a")], "synced")
    generation = ledger.generation()
    with ledger.engine.connect() as conn:
        before = conn.execute(text("SELECT * FROM records ORDER BY id")).all()
    plan = make_plan(ledger, [course("a", name="x"), course("b")])
    assert [len(b) for _, b in plan.batches("acme")] == [2]
    assert plan.generation == generation == ledger.generation()
    plan.discard()
    plan.discard()  # twice is fine
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM records ORDER BY id")).all() == before
    with pytest.raises(PlanError, match="holds no staged records"):
        list(plan.batches("acme"))


def _batches(*sizes: int) -> Iterator[tuple[OperationType, list[Record]]]:
    n = 0
    for size in sizes:
        yield OperationType.IMPORT_STATS, [course(str(n + i)) for i in range(size)]
        n += size


@pytest.mark.parametrize(
    ("sizes", "size", "maximum", "expected"),
    [
        ((200, 1), 200, 10_000, [201]),
        ((200, 200, 2), 200, 10_000, [200, 202]),
        ((200, 3), 200, 10_000, [200, 3]),  # 3 > 1% of 200: not a small tail
        ((10_000, 1), 10_000, 10_000, [10_000, 1]),  # never beyond the API's maximum
        ((9_950, 50), 10_000, 10_000, [10_000]),  # a pair flushed early leaves room
        ((4, 1), 4, 10_000, [4, 1]),  # batches under 100: no tail is small
        ((200,), 200, 10_000, [200]),
        ((), 200, 10_000, []),
    ],
    ids=[
        "one-item-tail",
        "after-several",
        "not-small",
        "at-maximum",
        "room-left",
        "tiny-size",
        "one",
        "none",
    ],
)
def test_a_small_tail_is_merged_into_the_batch_before(
    sizes: tuple[int, ...], size: int, maximum: int, expected: list[int]
) -> None:
    from syncer.plan.plan import merge_tail

    merged = list(merge_tail(_batches(*sizes), size, maximum))
    assert [len(b) for _, b in merged] == expected
    keys = [r.key for _, b in merged for r in b]
    assert keys == [str(n) for n in range(sum(sizes))]  # nothing lost, nothing reordered


@pytest.mark.parametrize("error", [0, -3, 3, -250], ids=["exact", "over", "under", "far-over"])
@pytest.mark.parametrize(
    ("sizes", "size", "maximum"),
    [((200, 200, 200, 1), 200, 10_000), ((200, 200, 3), 200, 10_000), ((199, 200, 2), 200, 400)],
    ids=["tail", "no-tail", "room-left"],
)
def test_a_batch_is_held_back_only_when_a_small_tail_may_follow(
    sizes: tuple[int, ...], size: int, maximum: int, error: int
) -> None:
    # With the plan's total, merge_tail hands a batch on before the next one is read, unless
    # what is left could still be a small tail: one batch of Records less in apply's memory.
    # A total too low only holds a batch longer; one too high may send a tail on its own.
    from syncer.plan.plan import merge_tail

    read: list[int] = []

    def source() -> Iterator[tuple[OperationType, list[Record]]]:
        for n, batch in enumerate(_batches(*sizes)):
            read.append(n)
            yield batch

    expected = [len(b) for _, b in merge_tail(_batches(*sizes), size, maximum)]
    handed: list[tuple[int, int]] = []  # (size of each batch handed on, batches read by then)
    keys: list[str] = []
    for _, batch in merge_tail(source(), size, maximum, sum(sizes) + error):
        handed.append((len(batch), len(read)))
        keys += [r.key for r in batch]
    assert keys == [str(n) for n in range(sum(sizes))]  # nothing lost, nothing reordered
    if error <= 0:
        assert [n for n, _ in handed] == expected
    else:
        assert [n for n, _ in handed] in (expected, list(sizes))
    if error == 0:  # the first batch goes before the second is read
        assert handed[0] == (sizes[0], 1)


def test_a_tail_merged_back_keeps_its_pair_in_order(ledger: Ledger) -> None:
    # One pair of 201 statistics with batches of 200: cut [200, 1], sent as one call, in order.
    days = [(m, d) for m in range(1, 10) for d in range(1, 29)][:201]
    pair = [stat("a", "u@x", f"2025-{m:02}-{d:02}", f"2025-{m:02}-{d:02}T12") for m, d in reversed(days)]
    with make_plan(ledger, None, pair, sizes=BatchSizes(stats=200)) as plan:
        batches = [b for _, b in plan.batches("acme")]
    assert [len(b) for b in batches] == [201]
    assert plan.summary("acme").batches[OperationType.IMPORT_STATS.value] == 1  # counted as sent
    orders = [r.order for r in batches[0]]
    assert orders == sorted(orders) and len(set(orders)) == 201


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [(201, 200, [201]), (203, 200, [200, 3]), (400, 200, [200, 200]), (1, 200, [1]), (5, 4, [4, 1])],
    ids=["small-tail", "not-small", "no-tail", "one", "tiny-size"],
)
def test_the_summary_counts_the_calls_that_are_sent(
    ledger: Ledger, count: int, size: int, expected: list[int]
) -> None:
    courses = [course(f"c{n:04}") for n in range(count)]
    with make_plan(ledger, courses, sizes=BatchSizes(courses=size)) as plan:
        sent = [len(b) for _, b in plan.batches("acme")]
        counted = plan.summary("acme").batches[OperationType.IMPORT_COURSES.value]
    assert sent == expected
    assert counted == len(expected)
