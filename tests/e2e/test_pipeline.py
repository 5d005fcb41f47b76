"""The pipelined apply keeps the order rules of product.md §4 with many operations in flight.

Small batch sizes make dozens of operations; the simulator runs them slowly enough that three are
unfinished at once, while the executor prepares the next batches ahead. What the platform saw is
read from the simulator's own operations (their items in request order and their timestamps)
and attempts.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncer.api.bulk import PollPolicy, seconds_left
from syncer.apply import ApplyOptions, RunReport, run_apply
from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.models import OperationType
from syncer.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SimulatorSettings, SimulatorThread
from syncer.simulator.rules import format_time
from syncer.simulator.state import Operation
from tests.project import (
    ACME,
    COURSE_FIELDS,
    COURSE_HEADER,
    STAT_HEADER,
    config_text,
    courses_block,
    stats_block,
    write_csv,
)

BASE = datetime(2024, 3, 1, tzinfo=UTC)
ATTEMPTS = 3  # per (course, user) pair, each after the end of the one before: a new attempt each


def write_config(folder: Path, base_url: str) -> Path:
    """The config: small batches (2 courses, 6 statistics, 1 archive) make many operations."""
    api = {
        "base_url": base_url,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "batch_size": {"courses": 2, "stats": 6, "archives": 1},
    }
    acme = {
        **ACME,
        "courses": courses_block(
            archive_missing=True, fields={**COURSE_FIELDS, "subjects": {"value": ["safety"]}}
        ),
        "stats": stats_block(),
    }
    path = folder / "syncer.yaml"
    path.write_text(config_text(api, f"sqlite:///{folder / 'ledger.db'}", {"acme": acme}), "utf-8")
    return path


def write_courses(path: Path, ids: list[str], title: str = "Course") -> None:
    """A course catalog."""
    write_csv(path, COURSE_HEADER, ([course, f"{title} {course}"] for course in ids))


def stat_rows(courses: list[str], learners: int) -> list[list[Any]]:
    """Three non-overlapping attempts per (course, learner); progress 10, 20, 30 in time order."""
    rows: list[list[Any]] = []
    for n in range(learners):
        for course in courses:
            for k in range(ATTEMPTS):
                start = BASE + timedelta(days=10 * k, hours=n)
                rows.append(
                    [
                        course,
                        f"learner{n}@example.com",
                        10 * (k + 1),
                        60,
                        format_time(start),
                        format_time(start + timedelta(hours=1)),
                    ]
                )
    random.Random(3).shuffle(rows)  # the source order says nothing: sorting is syncer's job
    return rows


def write_stats(path: Path, rows: list[list[Any]]) -> None:
    """A statistics source."""
    write_csv(path, STAT_HEADER, rows)


@pytest.fixture
def slow_sim() -> Iterator[SimulatorThread]:
    """Operations take 0.4 s: at 10 writes/s three are unfinished at once when the pipe is full."""
    with SimulatorThread(SimulatorSettings(op_seconds=0.4)) as sim:
        yield sim


def apply(config_path: Path) -> RunReport:
    """One apply through the library, as the CLI runs it."""
    config = load_config(config_path)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        return run_apply(config, ledger, ApplyOptions(poll=PollPolicy(first=0.02, maximum=0.05)))
    finally:
        ledger.close()


def ops_of(sim: SimulatorThread, op_type: OperationType, after: int = 0) -> list[Operation]:
    """The simulator's operations of one type submitted after sequence ``after``, in order."""
    with sim.state.locked():
        found = [op for op in sim.state.operations.values() if op.type is op_type and op.seq > after]
    return sorted(found, key=lambda op: op.seq)


def test_pipelined_apply_keeps_the_order_rules(slow_sim: SimulatorThread, tmp_path: Path) -> None:
    courses = [f"C{i:02}" for i in range(8)]
    config_path = write_config(tmp_path, slow_sim.base_url)
    write_courses(tmp_path / "courses.csv", courses)
    write_stats(tmp_path / "stats.csv", [])
    first = apply(config_path)
    assert first.integrations["acme"].synced == len(courses)
    with slow_sim.state.locked():
        mark = max(op.seq for op in slow_sim.state.operations.values())

    # Second run: two courses leave the catalog (archives), the others change (imports), and
    # statistics arrive: all three kinds in one run.
    kept = courses[:6]
    write_courses(tmp_path / "courses.csv", kept, title="Renamed")
    rows = stat_rows(kept, learners=4)
    write_stats(tmp_path / "stats.csv", rows)
    second = apply(config_path)
    outcome = second.integrations["acme"]
    assert (outcome.rejected, outcome.failed_operations) == (0, 0)
    assert outcome.synced == len(kept) + len(rows) + 2

    imports = ops_of(slow_sim, OperationType.IMPORT_COURSES, mark)
    stats = ops_of(slow_sim, OperationType.IMPORT_STATS, mark)
    archives = ops_of(slow_sim, OperationType.ARCHIVE_COURSES, mark)
    assert (len(imports), len(archives)) == (3, 2)
    assert len(stats) == 12  # 72 statistics: two pairs of three per batch of six
    # Courses completed before any statistic was submitted; archives only after the last one.
    assert max(op.ended for op in imports) <= min(op.created for op in stats)
    assert max(op.ended for op in stats) <= min(op.created for op in archives)
    # The pipe was full: three operations unfinished at once, never more.
    assert second.peak_in_flight == 3
    assert max(slow_sim.snapshot()["peaks"]["unfinished_operations"].values()) == 3

    # Each pair's statistics travel in one batch, in firstActivityAt order.
    batch_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for op in stats:
        starts: dict[tuple[str, str], list[str]] = defaultdict(list)
        for item in op.items:
            pair = (item["courseIdentifier"]["value"], item["userIdentifier"]["value"])
            batch_of[pair].add(op.op_id)
            starts[pair].append(item["firstActivityAt"])
        for pair, seen in starts.items():
            assert seen == sorted(seen) and len(seen) == ATTEMPTS, pair
    assert len(batch_of) == len(kept) * 4
    assert all(len(ops) == 1 for ops in batch_of.values())

    # ... so the platform created the attempts in order: three per pair, progress 10, 20, 30.
    snapshot = slow_sim.snapshot()
    attempts = [a["attempts"] for a in snapshot["attempts"]]
    assert len(attempts) == len(kept) * 4
    for history in attempts:
        assert [a["progress"] for a in history] == [10, 20, 30]
        assert [a["firstActivityAt"] for a in history] == sorted(a["firstActivityAt"] for a in history)


def test_nothing_changed_makes_no_submission(slow_sim: SimulatorThread, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, slow_sim.base_url)
    write_courses(tmp_path / "courses.csv", ["C1", "C2"])
    write_stats(tmp_path / "stats.csv", stat_rows(["C1"], learners=2))
    assert apply(config_path).submissions > 0
    before = len(slow_sim.state.operations)
    again = apply(config_path)
    assert (again.submissions, len(slow_sim.state.operations)) == (0, before)


@pytest.mark.parametrize(
    ("operation", "items", "expected"),
    [
        pytest.param(
            {
                "status": "running",
                "startedAt": "2024-01-01T00:00:00.000Z",
                "progress": {"index": 250, "updatedAt": "2024-01-01T00:00:01.000Z"},
            },
            1000,
            3.0,
            id="quarter-done-in-1s",
        ),
        pytest.param({"status": "queued"}, 1000, None, id="queued"),
        pytest.param(
            {
                "status": "running",
                "startedAt": "2024-01-01T00:00:00.000Z",
                "progress": {"index": 0, "updatedAt": "2024-01-01T00:00:00.000Z"},
            },
            1000,
            None,
            id="nothing-done",
        ),
        pytest.param(
            {"status": "running", "startedAt": "garbage", "progress": {"index": 5, "updatedAt": "x"}},
            10,
            None,
            id="unreadable",
        ),
    ],
)
def test_seconds_left_estimates_the_end(
    operation: dict[str, Any], items: int, expected: float | None
) -> None:
    assert seconds_left(operation, items) == expected
