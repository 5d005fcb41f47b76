"""Signals and locks: SIGINT/SIGTERM stop a run cleanly (exit 4) and the next resumes; a second
run on a held ledger exits 5 naming the holder or waits with ``--lock-timeout``; a holder row
left by a killed run is cleared by ``syncer unlock``; a long run's holder row keeps beating.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from datetime import datetime

import pytest

from syncer.apply import ApplyOptions, run_apply
from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.ledger.lock import acquire_lock, read_holders
from syncer.models import OperationStatus
from tests.e2e.reliability.conftest import TALLY, World, finish, wait_until

UNFINISHED = {"pending", "queued", "running"}


def _holders(world: World) -> list[int]:
    ledger = Ledger.open(world.ledger_url)
    try:
        return [h.pid for h in read_holders(ledger)]
    finally:
        ledger.close()


def _submitted(world: World) -> bool:
    ledger = Ledger.open(world.ledger_url)
    try:
        return any(
            op.location and op.status is not OperationStatus.PREPARED for op in ledger.unfinished_operations()
        )
    finally:
        ledger.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_and_the_next_resumes(make_world: Callable[..., World], sig: int) -> None:
    world = make_world(force_new=True)
    world.seed()
    proc = world.start()
    wait_until(
        "a statistics operation in flight",
        lambda: any(
            op["type"] == "importExternalStatistics" and op["status"] in UNFINISHED
            for op in world.operations()
        ),
        proc,
    )
    # ... and its Location recorded: the 202 reaches the ledger a moment after the platform
    # shows the operation (under load the signal could otherwise come in between).
    wait_until("a submitted operation in the ledger", lambda: _submitted(world), proc)
    proc.send_signal(sig)
    stopped = finish(proc)
    assert stopped.code == 4, stopped.err
    assert "stopped by a signal" in stopped.err
    TALLY["runs stopped (SIGINT/SIGTERM)"] += 1
    ledger = Ledger.open(world.ledger_url)
    try:
        in_flight = ledger.unfinished_operations()
        assert any(op.location and op.status is not OperationStatus.PREPARED for op in in_flight)
        assert ledger.last_runs(1)[0].status == "interrupted"
    finally:
        ledger.close()

    again = world.apply()
    assert again.code == 0, again.err
    assert "resumed" in again.out
    world.synced()
    world.check_platform()
    world.check_ledger()
    assert world.items_sent() == world.versions_sent  # resumed, never sent twice


def test_a_second_run_exits_5_naming_the_holder_or_waits(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.seed()
    holder = world.start()
    wait_until("the first run holds the lock", lambda: holder.pid in _holders(world), holder)
    # Park the holder: while the test holds the simulator's state, its API calls wait.
    with world.sim.state.locked():
        refused = world.apply()
        assert refused.code == 5
        assert f"pid {holder.pid}" in refused.err and "--lock-timeout" in refused.err
        status = world.syncer("status", str(world.config_path))
        assert f"pid {holder.pid}" in status.out
        kept = world.syncer("unlock", str(world.config_path))
        assert kept.code == 0 and kept.out.startswith("kept ledger: held by a live run"), kept
        waiter = world.start("--lock-timeout", "30")
        wait_until("the second run waits", lambda: _waiting(waiter), waiter)
    assert finish(holder).code == 0
    waited = finish(waiter)
    assert waited.code == 0, waited.err
    world.synced()
    world.check_platform()
    world.check_ledger()


def _waiting(proc: subprocess.Popen[str]) -> bool:
    """True once ``proc`` logged that it waits for the lock (its first line)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    return "waiting up to 30 s for the lock" in line


def test_a_killed_holder_never_blocks_and_unlock_clears_its_row(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.seed()
    proc = world.start(env={"SYNCER_TEST_CRASH_AT": "after_prepare:1"})
    assert finish(proc).code == -signal.SIGKILL
    assert _holders(world) == [proc.pid]  # the row it left names it...
    assert f"pid {proc.pid}" in world.syncer("status", str(world.config_path)).out
    cleared = world.syncer("unlock", str(world.config_path))  # ...until unlock clears it
    assert cleared.code == 0 and cleared.out.startswith("cleared ledger:")
    assert "Locks: none held" in world.syncer("status", str(world.config_path)).out
    # Its flock died with it: the next run (default --lock-timeout 0) is not refused.
    again = world.apply()
    assert again.code == 0, again.err
    world.synced()
    world.check_platform()
    world.check_ledger()


def test_a_long_run_keeps_its_holder_row_beating(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.seed()
    config = load_config(world.config_path)
    ledger = Ledger.open(world.ledger_url)
    beats: list[datetime] = []
    try:
        with acquire_lock(ledger, ["lms"]) as lock:

            def beat() -> None:
                lock.heartbeat()
                beats.extend(h.heartbeat_at for h in read_holders(ledger))

            report = run_apply(config, ledger, ApplyOptions(), heartbeat=beat, heartbeat_seconds=0.05)
    finally:
        ledger.close()
    assert report.submissions > 0
    assert len(beats) >= 3 and beats == sorted(beats) and beats[0] < beats[-1]
