"""Kill matrix: a real ``syncer apply`` SIGKILLed at every named step and at random moments.

Each case kills one or more applies (the simulator, in this process, lives on), then runs a
clean apply and checks: the platform holds exactly the desired courses and one attempt per
statistic version (no duplicate, nothing lost), the ledger has no unfinished operation, every
record is synced and a new plan is empty. Every case runs two worlds side by side, one with
``force_new: false`` and one with ``force_new: true`` (own ledger, own integration).

``SYNCER_RELIABILITY_KILLS`` raises the number of random kills per world and
``SYNCER_RELIABILITY_SEED`` changes their moments, for a soak run (see docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.e2e.reliability.conftest import BASE_TIME, Stat, World, finish_all

STEPS = ("after_prepare", "after_submit", "while_polling", "after_results")
RANDOM_KILLS = int(os.environ.get("SYNCER_RELIABILITY_KILLS", "4"))
SEED = int(os.environ.get("SYNCER_RELIABILITY_SEED", "360"))
KILLED = -signal.SIGKILL


def both(make_world: Callable[..., World]) -> list[World]:
    """Two seeded worlds: statistics updating attempts, and statistics forcing new ones."""
    worlds = [make_world("update", force_new=False), make_world("force_new", force_new=True)]
    for world in worlds:
        world.seed()
    return worlds


def check(world: World) -> None:
    """The model, the platform and the ledger agree once the world was applied cleanly."""
    world.synced()
    world.check_platform()
    world.check_ledger()
    # Each statistic version was accepted by the platform exactly once, whatever was resumed.
    assert world.items_sent() == world.versions_sent


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_then_clean_apply(make_world: Callable[..., World], step: str) -> None:
    worlds = both(make_world)
    # The 2nd time the step is reached: another operation is then finished or in flight.
    crash = {"SYNCER_TEST_CRASH_AT": f"{step}:2"}
    for world, first in zip(worlds, finish_all(*(w.start(env=crash) for w in worlds)), strict=True):
        assert first.code == KILLED, f"{world.root.name}: no SIGKILL at {step} ({first.code}):\n{first.err}"
    for world, second in zip(worlds, finish_all(*(w.start() for w in worlds)), strict=True):
        assert second.code == 0, second.err
        check(world)


def test_kill_in_the_resuming_run_too(make_world: Callable[..., World]) -> None:
    """A run that resumes a killed one and is itself killed leaves a ledger the third completes."""
    world = make_world(force_new=True)
    world.seed()
    assert world.apply(env={"SYNCER_TEST_CRASH_AT": "after_submit:3"}).code == KILLED
    assert world.apply(env={"SYNCER_TEST_CRASH_AT": "after_results:1"}).code == KILLED
    assert world.apply().code == 0
    check(world)


def test_kills_at_random_moments(make_world: Callable[..., World]) -> None:
    """Seeded random kill times across source edits; a clean apply after each round."""
    worlds = both(make_world)
    rngs = [random.Random(f"{SEED}-{w.root.name}") for w in worlds]
    kills = 0
    for round_no in range(max(1, RANDOM_KILLS // 2)):
        if round_no:
            for world, rng in zip(worlds, rngs, strict=True):
                _edit(world, rng, round_no)
        for _ in range(2):
            procs = [w.start() for w in worlds]
            for proc, rng in zip(procs, rngs, strict=True):
                try:
                    # A random moment within a typical run: most land in flight, some after its end.
                    proc.wait(timeout=rng.uniform(0.3, 1.5))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            for result in finish_all(*procs):
                assert result.code in (0, KILLED), result.err
        for world, clean in zip(worlds, finish_all(*(w.start() for w in worlds)), strict=True):
            assert clean.code == 0, clean.err
            check(world)
    assert kills > 0, "no run was caught in flight: the random moments are too late"


def _edit(world: World, rng: random.Random, round_no: int) -> None:
    """Change some statistics, add a course with statistics, replace a course without any."""
    for stat in rng.sample(sorted(world.stats.values(), key=lambda s: s.key), 4):
        if stat.pct < 100:
            stat.pct = min(100, stat.pct + rng.randint(1, 30))
        stat.minutes += rng.randint(1, 9)
    new = f"N{round_no}"
    world.courses[new] = f"New {round_no}"
    for u in range(3):
        stat = Stat(new, f"u{u}@lms.example", BASE_TIME + timedelta(days=30 + round_no, hours=u), 50, 7)
        world.stats[stat.key] = stat
    world.courses[f"X{round_no}"] = f"Extra {round_no}"
    world.courses.pop(f"X{round_no - 1}", None)  # archived: it never had statistics
    world.write()
