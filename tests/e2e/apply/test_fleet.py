"""Runners of one platform share its limits (issue 17): SQLite ledgers in one folder.

Each runner is a ``syncer apply --integration X`` process with its own SQLite ledger; the ledgers
sit in one folder, where the governor keeps the platform's slot locks and write clock. One
simulator with the platform's real limits (3 unfinished operations, 10 writes a second) serves
them all: none of them is ever refused, and each statistic is sent once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from syncer.models import OperationType
from syncer.simulator import DEMO_COMPANY_ID, SimulatorSettings, SimulatorThread
from tests import fleet
from tests.e2e.apply.conftest import POLL
from tests.project import client_settings, run_cli, simulators

DEADLINE = 60.0
COURSES, LEARNERS = 4, 3  # per runner: 2 course batches, 4 statistic batches


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """The platform's real limits; operations long enough that several runners overlap."""
    return client_settings(fleet.CLIENT_ID, fleet.SECRET)


@pytest.fixture
def platform(sim_settings: SimulatorSettings) -> Iterator[SimulatorThread]:
    with simulators(sim_settings) as start:
        yield start(op_seconds=0.15)


def _fleet(folder: Path, sim: SimulatorThread, count: int, **limits: int) -> dict[str, Path]:
    # The read rate (50 a second per platform) is still counted per runner: divided here, as the
    # runners poll fast (docs/scaling.md).
    limits = {"reads_per_second": 50 // count, **limits}
    names = fleet.names(count)
    fleet.add_integrations(sim.state, names)
    return fleet.write_fleet(
        folder,
        sim.base_url,
        lambda name: f"sqlite:///{folder / name}.db",
        names,
        courses=COURSES,
        learners=LEARNERS,
        course_batch=2,
        stat_batch=3,
        limits=limits,
    )


def test_runners_share_the_slots_and_the_write_rate(tmp_path: Path, platform: SimulatorThread) -> None:
    configs = _fleet(tmp_path, platform, 3)
    procs = {n: fleet.start_runner(c, n, "--poll-seconds", "0.01") for n, c in configs.items()}
    codes = fleet.wait_all(procs, DEADLINE)
    assert codes == dict.fromkeys(configs, 0), {n: fleet.output(c) for n, c in configs.items()}

    state = platform.snapshot()
    assert fleet.refused(state["journal"]) == [], (fleet.refused(state["journal"]), state["peaks"])
    ops = state["operations"]
    assert len(ops) == 3 * (2 + 4) and all(op["status"] == "completed" for op in ops)
    assert fleet.peak_unfinished(ops) <= 3
    assert max(state["peaks"]["unfinished_operations"].values()) <= 3
    pairs = fleet.attempts_per_pair(state)
    assert len(pairs) == 3 * COURSES * LEARNERS and set(pairs.values()) == {1}


def test_a_killed_runner_frees_its_slot(tmp_path: Path, platform: SimulatorThread) -> None:
    """One slot for the fleet: the others finish only because the killed runner's slot is freed."""
    configs = _fleet(tmp_path, platform, 3, concurrent_operations=1)
    victim = "lms1"
    procs = {
        n: fleet.start_runner(
            c,
            n,
            "--poll-seconds",
            "0.01",
            env={"SYNCER_TEST_CRASH_AT": "while_polling"} if n == victim else None,
        )
        for n, c in configs.items()
    }
    fleet.finish_with_a_victim(procs, configs, victim, DEADLINE)

    state = platform.snapshot()
    assert fleet.refused(state["journal"]) == []
    assert fleet.peak_unfinished(state["operations"]) <= 1  # the dead runner's operation counted too
    pairs = fleet.attempts_per_pair(state)
    for n, name in enumerate(fleet.names(3), start=1):
        theirs = {k: v for k, v in pairs.items() if k[0] == fleet.integration_id(n)}
        if name != victim:
            assert len(theirs) == COURSES * LEARNERS and set(theirs.values()) == {1}


def test_another_tools_operations_count_too(
    tmp_path: Path, sim_settings: SimulatorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform is full of another tool's operations: the runner waits for them, unrefused."""
    with simulators(sim_settings) as start:
        sim = start(op_seconds=0.15)
        configs = _fleet(tmp_path, sim, 1)
        foreign = [
            sim.state.submit(DEMO_COMPANY_ID, fleet.integration_id(9), OperationType.IMPORT_STATS, [])
            for _ in range(3)
        ]
        with sim.state.locked():  # they run longer than the runner's start and plan take
            for op in foreign:
                op.ended = op.created + 4.0
        monkeypatch.setenv("L360_CLIENT_SECRET", fleet.SECRET)
        outputs: list[str] = []
        result = run_cli(outputs, "apply", str(configs["lms1"]), "--integration", "lms1", *POLL)
        assert result.exit_code == 0, outputs

        state = sim.snapshot()
        assert fleet.refused(state["journal"]) == []
        ours = [op for op in state["operations"] if op["integrationId"] == fleet.integration_id(1)]
        first_ended = min(op.ended for op in foreign)
        assert ours and min(_epoch(op["createdAt"]) for op in ours) >= first_ended - 0.01
        assert "waiting for an operation slot" in "".join(outputs)


def _epoch(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
