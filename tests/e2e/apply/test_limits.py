"""Many operations against the simulator's real limits: never above them (library entry point)."""

from __future__ import annotations

from syncer.api.bulk import PollPolicy
from syncer.apply import ApplyOptions, run_apply
from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.simulator import SimulatorThread
from tests.e2e.apply.conftest import Project, course_rows, operations, stat_rows

FAST = ApplyOptions(poll=PollPolicy(first=0.01, factor=1.5, maximum=0.05))


def test_concurrency_and_write_rate_stay_within_the_limits(make_sim, make_project) -> None:
    sim: SimulatorThread = make_sim(op_seconds=0.3)  # long enough for operations to overlap
    project: Project = make_project(sim, course_batch=2, stat_batch=5)
    project.write_courses(course_rows(8))
    project.write_stats(stat_rows(8, 5))
    config = load_config(project.config)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        report = run_apply(config, ledger, FAST)
    finally:
        ledger.close()

    ops = operations(sim)
    assert len(ops) == 4 + 8 and all(op["status"] == "completed" for op in ops)
    assert report.submissions == 12 and report.rejected == 0 and report.failed_operations == 0
    peaks = sim.snapshot()["peaks"]
    unfinished = max(peaks["unfinished_operations"].values())
    assert 2 <= unfinished <= 3  # the limit was used, never exceeded
    assert 1 <= report.peak_in_flight <= 3
    assert max(peaks["writes_per_second"].values()) <= 10
    assert max(peaks["reads_per_second"].values()) <= 50
    refused = [e for e in sim.snapshot()["journal"] if e["status"] == 429]
    assert refused == []
    # Courses first, statistics after: no statistic was submitted before the last course ended.
    types = [op["type"] for op in ops]
    assert types == ["importExternalCourses"] * 4 + ["importExternalStatistics"] * 8
    last_course_end = max(op["endedAt"] for op in ops[:4])
    assert min(op["createdAt"] for op in ops[4:]) >= last_course_end
