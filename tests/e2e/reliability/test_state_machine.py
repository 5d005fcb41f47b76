"""A bounded hypothesis test: random source edits and injected faults, each step followed by a
clean apply; the platform must then equal the model (one attempt per statistic version applied
exactly once, courses live or archived as the source says) and the ledger be consistent.

Applies run in this process (``run_apply``, as ``syncer apply`` does) to keep the examples cheap.
``SYNCER_RELIABILITY_EXAMPLES`` raises the number of examples for a soak run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.api.bulk import PollPolicy
from syncer.apply import ApplyOptions, RunReport, run_apply
from syncer.config import load_config
from syncer.errors import SyncerError
from syncer.ledger import Ledger
from syncer.ledger.lock import acquire_lock
from tests.e2e.reliability.conftest import BASE_TIME, Stat, World

EXAMPLES = int(os.environ.get("SYNCER_RELIABILITY_EXAMPLES", "5"))
FAST = PollPolicy(first=0.02, factor=1.5, maximum=0.2)

EDITS = st.sampled_from(["progress", "complete", "new_stat", "new_course", "drop_course", "rename", "none"])
FAULTS = st.sampled_from(["drop", "storm", "error_operation", "expire_tokens", "throttle", "none"])
STEPS = st.lists(st.tuples(EDITS, st.integers(0, 1000), FAULTS), min_size=1, max_size=3)


def apply_in_process(world: World) -> RunReport | SyncerError:
    """One apply as the CLI runs it (lock, plan, send, record); an error is returned, not raised."""
    config = load_config(world.config_path)
    ledger = Ledger.open(world.ledger_url)
    try:
        with acquire_lock(ledger, list(config.integrations)) as lock:
            return run_apply(config, ledger, ApplyOptions(poll=FAST), heartbeat=lock.heartbeat)
    except SyncerError as exc:
        return exc
    finally:
        ledger.close()


def edit(world: World, what: str, n: int) -> None:
    """Change the sources (and the world's model of them) in one way."""
    stats = sorted(world.stats.values(), key=lambda s: s.key)
    stat = stats[n % len(stats)]
    if what == "progress" and stat.pct < 100:
        stat.pct = min(99, stat.pct + 1 + n % 20)
        stat.minutes += 1
    elif what == "complete":
        stat.pct = 100
    elif what == "new_stat":
        course = sorted(c for c in world.courses if c.startswith("C"))[n % 3]
        started = BASE_TIME + timedelta(days=60, minutes=n)
        new = Stat(course, f"h{n}@lms.example", started, n % 101, 1 + n % 30)
        world.stats[new.key] = new
    elif what == "new_course":
        world.courses[f"H{n}"] = f"Hypo {n}"
    elif what == "drop_course":
        extra = sorted(c for c in world.courses if c.startswith("H"))
        if extra:
            del world.courses[extra[n % len(extra)]]  # no statistics: archived
    elif what == "rename":
        ext = sorted(world.courses)[n % len(world.courses)]
        world.courses[ext] = f"{world.courses[ext]} v{n}"
    world.write()


def inject(world: World, fault: str) -> None:
    """Faults for the next apply, on this world's integration."""
    base = f"/api/v2/bulk/integrations/{world.integration_id}"
    rules: dict[str, list[dict[str, Any]]] = {
        "drop": [{"method": "POST", "path": f"{base}/stats", "drop": True}],
        "storm": [{"path": base, "status": 503, "count": 2}, {"method": "GET", "status": 500, "count": 2}],
        "error_operation": [{"path": base, "error_operation": True, "message": "lost in the mail"}],
        "expire_tokens": [{"method": "GET", "path": "/api/v2/bulk/operations", "expire_tokens": True}],
        "throttle": [{"path": base, "status": 429, "count": 2, "retry_after": 0.1}],
        "none": [],
    }
    world.inject(rules[fault])


def test_random_edits_and_faults_then_clean_apply(make_world: Callable[..., World]) -> None:
    examples = iter(range(10_000))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(force_new=st.booleans(), steps=STEPS)
    def run(force_new: bool, steps: list[tuple[str, int, str]]) -> None:
        world = make_world(f"ex{next(examples)}", force_new=force_new)
        world.seed(courses=3, learners=2)
        for what, n, fault in steps:
            edit(world, what, n)
            inject(world, fault)
            apply_in_process(world)  # may fail: that is the point
            world.sim.call(lambda: world.sim.state.faults.clear())
            clean = apply_in_process(world)
            assert isinstance(clean, RunReport), clean
            assert clean.failed_operations == 0 and clean.rejected == 0
            world.synced()
            world.check_platform()
            world.check_ledger()
            assert world.items_sent() == world.versions_sent + _failed_items(world)

    run()


def _failed_items(world: World) -> int:
    """Statistics carried by operations that ended in ``error`` (they applied nothing)."""
    ops = world.operations()
    return sum(
        op["items"] for op in ops if op["status"] == "error" and op["type"] == "importExternalStatistics"
    )
