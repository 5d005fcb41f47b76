"""Injected faults: 500/503/429 storms, token expiry, operations ending in ``error``, and two
applies started at the same moment on one ledger. Every case ends with the platform and the
ledger exactly as desired: no duplicate attempt, no record lost.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.reliability.conftest import World, finish_all


def _bulk(world: World) -> str:
    return f"/api/v2/bulk/integrations/{world.integration_id}"


def check(world: World) -> None:
    """Everything synced exactly once."""
    world.synced()
    world.check_platform()
    world.check_ledger()
    assert world.items_sent() == world.versions_sent


def test_error_storms_are_retried_without_duplicates(make_world: Callable[..., World]) -> None:
    worlds = [make_world("update", force_new=False), make_world("force_new", force_new=True)]
    for world in worlds:
        world.seed()
        world.inject(
            [
                {"method": "PUT", "path": f"{_bulk(world)}/courses", "status": 503},
                {"method": "POST", "path": f"{_bulk(world)}/stats", "status": 500},
                {"method": "POST", "path": f"{_bulk(world)}/stats", "status": 429},
                {
                    "method": "POST",
                    "path": f"{_bulk(world)}/stats",
                    "status": 429,
                    "shape": "flat",
                    "retry_after": 0.2,
                },
            ]
        )
    # Polls and results too: reads answered 503 and 429 (a storm shared by both worlds).
    worlds[0].inject(
        [
            {"method": "GET", "path": "/api/v2/bulk/operations", "status": 503, "count": 2},
            {"method": "GET", "path": "/api/v2/bulk/operations", "status": 429},
        ]
    )
    for world, result in zip(worlds, finish_all(*(w.start() for w in worlds)), strict=True):
        assert result.code == 0, result.err
        check(world)
    assert worlds[0].sim.snapshot()["faults"] == []  # every injected fault was met


def test_token_expiry_mid_run(make_world: Callable[..., World]) -> None:
    world = make_world(force_new=True)
    world.seed()
    world.inject(
        [
            # Revoked as a poll arrives, then again as the next statistics batch is submitted.
            {"method": "GET", "path": "/api/v2/bulk/operations/", "expire_tokens": True},
            {"method": "POST", "path": f"{_bulk(world)}/stats", "expire_tokens": True},
        ]
    )
    result = world.apply()
    assert result.code == 0, result.err
    check(world)
    journal = world.sim.snapshot()["journal"]
    assert sum(1 for e in journal if e["status"] == 401) == 2
    assert sum(1 for e in journal if e["path"] == "/api/v2/oauth2/token") == 3


def test_operations_ending_in_error_are_sent_again_once(make_world: Callable[..., World]) -> None:
    world = make_world(force_new=True)
    world.seed()
    world.inject(
        [
            {
                "method": "POST",
                "path": f"{_bulk(world)}/stats",
                "error_operation": True,
                "message": "internal failure",
                "count": 2,
            }
        ]
    )
    first = world.apply()
    assert first.code == 4, first.err  # operations failed: safe to rerun
    assert "internal failure" in first.out + first.err
    failed = [op for op in world.operations() if op["status"] == "error"]
    assert len(failed) == 2
    second = world.apply()
    assert second.code == 0, second.err
    world.synced()
    world.check_platform()
    world.check_ledger()
    # The failed operations applied nothing; their items went once more, and only once.
    completed = [op for op in world.operations() if op["status"] == "completed"]
    applied = sum(op["items"] for op in completed if op["type"] == "importExternalStatistics")
    assert applied == world.versions_sent


def test_two_applies_at_the_same_moment(make_world: Callable[..., World]) -> None:
    """One ledger, two runs started together: one runs, the other exits 5 naming it (or finds
    nothing left to do); never interleaved, never a duplicate."""
    world = make_world(force_new=True)
    world.seed()
    a, b = finish_all(world.start(), world.start())
    codes = sorted([a.code, b.code])
    assert codes in ([0, 0], [0, 5]), (a.err, b.err)
    if codes == [0, 5]:
        refused = a if a.code == 5 else b
        assert "another syncer run holds the lock" in refused.err
        assert " pid " in refused.err
    check(world)
    # And with a generous --lock-timeout the second waits for the first, then has nothing to do.
    world.stats[next(iter(world.stats))].minutes += 1
    world.write()
    a, b = finish_all(world.start("--lock-timeout", "30"), world.start("--lock-timeout", "30"))
    assert (a.code, b.code) == (0, 0), (a.err, b.err)
    check(world)


def test_a_failed_course_import_holds_back_its_statistics(make_world: Callable[..., World]) -> None:
    """Found by the state-machine test: statistics sent after their courses' import ended in
    ``error`` were rejected (unknown course) and, rejected and unchanged, never sent again."""
    world = make_world()
    world.seed()
    world.inject([{"method": "PUT", "path": f"{_bulk(world)}/courses", "error_operation": True}])
    first = world.apply()
    assert first.code == 4, first.err
    assert world.items_sent() == 0  # no statistic went to a platform without its courses
    second = world.apply()
    assert second.code == 0, second.err
    check(world)
