"""Four runners of one platform on one PostgreSQL ledger share its limits (issue 17).

Each runner is a ``syncer apply --integration X`` process; the governor's slots are advisory
locks of the runners' own sessions and the write clock a ledger row. One simulator with the
platform's real limits (3 unfinished operations, 10 writes a second) serves them all: none of
them is refused, never more than 3 operations are unfinished, each statistic is sent once; and a
runner killed by SIGKILL frees its slot with its session, so the others finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.ledger import Ledger
from syncer.ledger.governor import LEASE_SECONDS
from syncer.simulator import SimulatorSettings, SimulatorThread
from tests import fleet
from tests.project import client_settings, simulators

pytestmark = pytest.mark.postgres

DEADLINE = 90.0
COURSES, LEARNERS = 4, 3  # per runner: 2 course batches, 4 statistic batches


@pytest.fixture
def platform() -> Iterator[SimulatorThread]:
    settings: SimulatorSettings = client_settings(fleet.CLIENT_ID, fleet.SECRET)
    with simulators(settings) as start:
        yield start(op_seconds=0.15)  # long enough that the runners' operations overlap


def _fleet(folder: Path, sim: SimulatorThread, pg_url: str, count: int, **limits: int) -> dict[str, Path]:
    Ledger.open(pg_url).close()  # migrated once, before the runners start
    # The read rate (50 a second per platform) is still counted per runner: divided here, as the
    # runners poll fast (docs/scaling.md).
    limits = {"reads_per_second": 50 // count, **limits}
    names = fleet.names(count)
    fleet.add_integrations(sim.state, names)
    return fleet.write_fleet(
        folder,
        sim.base_url,
        lambda _: pg_url,
        names,
        courses=COURSES,
        learners=LEARNERS,
        course_batch=2,
        stat_batch=3,
        limits=limits,
    )


def test_four_runners_share_the_slots_and_the_write_rate(
    tmp_path: Path, platform: SimulatorThread, pg_url: str
) -> None:
    configs = _fleet(tmp_path, platform, pg_url, 4)
    procs = {n: fleet.start_runner(c, n, "--poll-seconds", "0.01") for n, c in configs.items()}
    codes = fleet.wait_all(procs, DEADLINE)
    assert codes == dict.fromkeys(configs, 0), {n: fleet.output(c) for n, c in configs.items()}

    state = platform.snapshot()
    assert fleet.refused(state["journal"]) == [], state["peaks"]
    ops = state["operations"]
    assert len(ops) == 4 * (2 + 4) and all(op["status"] == "completed" for op in ops)
    assert fleet.peak_unfinished(ops) <= 3
    assert max(state["peaks"]["unfinished_operations"].values()) <= 3
    assert max(state["peaks"]["writes_per_second"].values()) <= 10
    pairs = fleet.attempts_per_pair(state)
    assert len(pairs) == 4 * COURSES * LEARNERS and set(pairs.values()) == {1}


def test_a_killed_runner_frees_its_slot(tmp_path: Path, platform: SimulatorThread, pg_url: str) -> None:
    """One slot for the fleet: the others finish only because the killed runner's slot is freed."""
    configs = _fleet(tmp_path, platform, pg_url, 4, concurrent_operations=1)
    victim = "lms1"
    crash = {"SYNCER_TEST_CRASH_AT": "while_polling"}
    procs = {
        n: fleet.start_runner(c, n, "--poll-seconds", "0.01", env=crash if n == victim else None)
        for n, c in configs.items()
    }
    fleet.finish_with_a_victim(procs, configs, victim, DEADLINE)

    state = platform.snapshot()
    assert fleet.refused(state["journal"]) == []
    assert fleet.peak_unfinished(state["operations"]) <= 1  # the dead runner's operation counted too
    # Its session ended with the process: the slot went on at once (the lease time, LEASE_SECONDS,
    # bounds only a host that vanishes without closing its connection). Well under the lease: a
    # slot freed only by the lease would take about 25 s; a loaded machine takes a few seconds.
    assert fleet.handover_seconds(state["operations"], fleet.integration_id(1)) < LEASE_SECONDS / 2.5
    pairs = fleet.attempts_per_pair(state)
    for n, name in enumerate(fleet.names(4), start=1):
        theirs = {k: v for k, v in pairs.items() if k[0] == fleet.integration_id(n)}
        if name != victim:
            assert len(theirs) == COURSES * LEARNERS and set(theirs.values()) == {1}
