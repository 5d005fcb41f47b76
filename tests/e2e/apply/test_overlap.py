"""Two integrations in one run share the slots: neither waits for the other to drain, and each
keeps its own order (its courses complete before its statistics)."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from syncer.api.bulk import PollPolicy
from syncer.apply import ApplyOptions, run_apply
from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.simulator import SimulatorThread
from tests.e2e.apply.conftest import Project, course_rows, operations, stat_rows
from tests.project import STAT_HEADER, TAGGED_COURSE_HEADER, write_csv

FAST = ApplyOptions(poll=PollPolicy(first=0.01, factor=1.5, maximum=0.05))
COURSE = "importExternalCourses"
STATS = "importExternalStatistics"


def _with_beta(project: Project, courses: int, learners: int) -> None:
    """Add an integration ``beta`` with its own sources (``courses`` courses, their statistics)."""
    config = yaml.safe_load(project.config.read_text())
    config["sources"]["catalog_b"] = {"csv": "courses_b.csv"}
    config["sources"]["progress_b"] = {"csv": "stats_b.csv"}
    beta = copy.deepcopy(config["integrations"]["acme"])
    beta.update(platform="Beta Academy", group="64b7f0c2a1e4d5f6a7b8c9d2")
    beta["courses"]["source"] = "catalog_b"
    beta["stats"]["source"] = "progress_b"
    config["integrations"]["beta"] = beta
    project.config.write_text(yaml.safe_dump(config, sort_keys=False))
    write_csv(project.root / "courses_b.csv", TAGGED_COURSE_HEADER, course_rows(courses))
    write_csv(project.root / "stats_b.csv", STAT_HEADER, stat_rows(courses, learners))


def _by_integration(sim: SimulatorThread) -> dict[str, list[dict[str, Any]]]:
    names = {i["_id"]: i["externalPlatform"].split()[0].lower() for i in sim.snapshot()["integrations"]}
    out: dict[str, list[dict[str, Any]]] = {}
    for op in operations(sim):
        out.setdefault(names[op["integrationId"]], []).append(op)
    return out


def test_two_integrations_overlap_and_each_keeps_its_order(make_sim, make_project) -> None:
    # Long enough for operations to overlap, and for the checks below to hold with the slack of a
    # loaded CI machine (at 0.3 s, acme's first statistics once came 0.1 s too late under load).
    sim: SimulatorThread = make_sim(op_seconds=0.8)
    project: Project = make_project(sim, course_batch=2, stat_batch=5)
    project.write_courses(course_rows(2))  # acme: 1 course import, then 2 statistics imports
    project.write_stats(stat_rows(2, 5))
    _with_beta(project, 8, 2)  # beta: 4 course imports, then 4 statistics imports
    config = load_config(project.config)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        report = run_apply(config, ledger, FAST)
    finally:
        ledger.close()

    assert report.exit_code == 0 and report.failed_operations == 0 and report.rejected == 0
    assert {name: o.synced for name, o in report.integrations.items()} == {"acme": 12, "beta": 24}
    ops = _by_integration(sim)
    assert [op["type"] for op in ops["acme"]] == [COURSE] + [STATS] * 2
    assert [op["type"] for op in ops["beta"]] == [COURSE] * 4 + [STATS] * 4
    for name, mine in ops.items():  # each integration's courses completed before its statistics
        last_course_end = max(op["endedAt"] for op in mine if op["type"] == COURSE)
        assert min(op["createdAt"] for op in mine if op["type"] == STATS) >= last_course_end, name
    # Neither waited for the other to drain: beta's courses started before acme's last operation
    # ended, and acme's statistics went while beta's courses were still importing.
    assert ops["beta"][0]["createdAt"] < max(op["endedAt"] for op in ops["acme"])
    first_acme_stat = min(op["createdAt"] for op in ops["acme"] if op["type"] == STATS)
    assert first_acme_stat < max(op["endedAt"] for op in ops["beta"] if op["type"] == COURSE)
    # The slots are shared, never exceeded.
    peaks = sim.snapshot()["peaks"]
    assert max(peaks["unfinished_operations"].values()) == 3
    assert [e for e in sim.snapshot()["journal"] if e["status"] == 429] == []
