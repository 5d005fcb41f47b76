"""Lost submissions: answers dropped, or replaced by a gateway's 5xx, after the platform
accepted the batch.

The simulator's ``drop`` fault performs a request and closes the connection without answering;
its ``gateway`` fault performs it and answers a 5xx HTML page instead of the 202. syncer must then
find the operation among recent ones and adopt it, never send the batch again, and never adopt
an operation that the ledger already holds for another batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from syncer.api.bulk import PollPolicy, find_submitted_operation, operation_id
from syncer.api.client import ApiClient
from syncer.models import OperationType
from syncer.simulator import SimState, Simulator
from tests.api.test_client import FAST_BACKOFF, make_config
from tests.e2e.reliability.conftest import BASE_TIME, Stat, World, finish_all


def test_dropped_answers_are_adopted_not_resent(make_world: Callable[..., World]) -> None:
    worlds = [make_world("update", force_new=False), make_world("force_new", force_new=True)]
    for world in worlds:
        world.seed()
        base = f"/api/v2/bulk/integrations/{world.integration_id}"
        world.inject(
            [
                {"method": "PUT", "path": f"{base}/courses", "drop": True},
                {"method": "POST", "path": f"{base}/stats", "drop": True, "count": 2},
            ]
        )
    for world, result in zip(worlds, finish_all(*(w.start() for w in worlds)), strict=True):
        assert result.code == 0, result.err
        world.synced()
        world.check_platform()
        world.check_ledger()
        assert world.items_sent() == world.versions_sent  # adopted: no batch went twice
        assert world.items_sent("importExternalCourses") == len(world.courses)
    journal = worlds[0].sim.snapshot()["journal"]
    assert sum(1 for entry in journal if entry["status"] is None) == 6  # every drop happened


@pytest.mark.parametrize("status", [500, 502, 504])
def test_gateway_errors_after_acceptance_are_adopted_not_resent(
    make_world: Callable[..., World], status: int
) -> None:
    """A 5xx HTML page in place of the 202: the batch was accepted, and is never sent twice."""
    world = make_world(force_new=True)  # a statistic sent twice would add a second attempt
    world.seed()
    base = f"/api/v2/bulk/integrations/{world.integration_id}"
    world.inject(
        [
            {"method": "PUT", "path": f"{base}/courses", "gateway": status},
            {"method": "POST", "path": f"{base}/stats", "gateway": status, "count": 2},
        ]
    )
    result = world.apply()
    assert result.code == 0, result.err  # adopted within the run: no rerun needed
    world.synced()
    world.check_platform()
    world.check_ledger()
    state = world.sim.snapshot()
    assert [e["status"] for e in state["journal"]].count(status) == 3  # every page was met
    assert state["faults"] == []
    # Exactly one attempt per source row, and each batch accepted once.
    attempts = [len(e["attempts"]) for e in state["attempts"] if e["integrationId"] == world.integration_id]
    assert sorted(attempts) == [1] * len(world.stats)
    assert world.items_sent() == world.versions_sent == len(world.stats)
    assert world.items_sent("importExternalCourses") == len(world.courses)
    courses = [c for c in state["courses"] if c["integrationId"] == world.integration_id]
    assert len(courses) == len({c["externalId"] for c in courses}) == len(world.courses)


@pytest.mark.parametrize("force_new", [False, True], ids=["update", "force_new"])
def test_a_retried_rejection_is_not_mistaken_for_its_first_operation(
    make_world: Callable[..., World], force_new: bool
) -> None:
    """The retry of a rejected batch is identical to it: its lost answer must not adopt it."""
    world = make_world(force_new=force_new)
    world.seed(courses=2, learners=4)
    # Four more learners of C1, deleted on the platform: it refuses their statistics, an item
    # error each. The plan cannot see it coming (no learner listing), so they are sent; sorted
    # by pair, they make the last batch of four on their own.
    late = {}
    for u in range(4):
        stat = Stat("C1", f"x{u}@lms.example", BASE_TIME + timedelta(days=5, hours=u), 40, 5)
        late[stat.key] = stat
        world.sim.state.add_user(stat.mail, status="deleted")
    world.stats.update(late)
    world.write()
    first = world.apply()
    assert first.code == 3, first.err  # records rejected
    rejected_ops = [op for op in world.operations() if op["errors"] == len(late)]
    assert len(rejected_ops) == 1 and rejected_ops[0]["items"] == len(late)

    for stat in late.values():
        world.sim.state.add_user(stat.mail, status="active")
    base = f"/api/v2/bulk/integrations/{world.integration_id}"
    world.inject([{"method": "POST", "path": f"{base}/stats", "drop": True}])
    retry = world.apply("--retry-rejected")
    assert retry.code == 0, retry.err
    world.synced()
    world.check_platform()  # C1's learners have their attempt: the retry really happened
    world.check_ledger()


async def test_lookup_skips_operations_already_known(sim: Simulator) -> None:
    """``known`` names operations carried for other batches: an identical one is never adopted."""
    integration = "c3" * 12
    sim.state.add_integration(_id=integration, externalPlatform="Lookup")
    since = datetime.now(UTC)
    items = [{"externalId": "k1"}, {"externalId": "k2"}]
    async with ApiClient(make_config(sim.base_url), backoff=FAST_BACKOFF) as client:
        first = await client.submit_bulk(OperationType.ARCHIVE_COURSES, integration, items)
        fast = PollPolicy(first=0.01, maximum=0.05, timeout=10)
        lookup = find_submitted_operation
        found = await lookup(client, OperationType.ARCHIVE_COURSES, items, created_after=since, poll=fast)
        assert found is not None and operation_id(found) == operation_id(first)
        asked: list[list[str]] = []

        def known(ids: list[str]) -> set[str]:
            asked.append(list(ids))
            return {operation_id(first)}

        none = await lookup(
            client, OperationType.ARCHIVE_COURSES, items, created_after=since, poll=fast, known=known
        )
        assert none is None and asked == [[operation_id(first)]]
        second = await client.submit_bulk(OperationType.ARCHIVE_COURSES, integration, items)
        again = await lookup(
            client, OperationType.ARCHIVE_COURSES, items, created_after=since, poll=fast, known=known
        )
        assert again is not None and operation_id(again) == operation_id(second)


async def test_lookup_never_adopts_a_batch_that_differs_in_force_new(sim: Simulator) -> None:
    """An echo that adds ``forceNew: true`` is another batch; one adding the default is ours."""
    integration = "c4" * 12
    sim.state.add_integration(_id=integration, externalPlatform="Strict")
    since = datetime.now(UTC)
    stat = {
        "courseIdentifier": {"type": "externalId", "value": "nowhere"},
        "userIdentifier": {"type": "mail", "value": "u@lms.example"},
        "progress": 10,
        "timeSpent": 1000,
        "firstActivityAt": "2025-01-01T10:00:00.000Z",
        "lastActivityAt": "2025-01-01T10:10:00.000Z",
    }
    fast = PollPolicy(first=0.01, maximum=0.05, timeout=10)
    stats = OperationType.IMPORT_STATS
    async with ApiClient(make_config(sim.base_url), backoff=FAST_BACKOFF) as client:
        await client.submit_bulk(stats, integration, [{**stat, "forceNew": True}])
        assert await find_submitted_operation(client, stats, [stat], created_after=since, poll=fast) is None
        ours = await client.submit_bulk(stats, integration, [{**stat, "forceNew": False}])
        found = await find_submitted_operation(client, stats, [stat], created_after=since, poll=fast)
        assert found is not None and operation_id(found) == operation_id(ours)


async def test_lookup_keeps_looking_while_the_platform_may_still_be_working(sim: Simulator) -> None:
    """An operation that shows up late (still being created after a 5xx) is found, not resent."""
    integration = "c5" * 12
    sim.state.add_integration(_id=integration, externalPlatform="Late")
    since = datetime.now(UTC)
    items = [{"externalId": "late"}]
    archive = OperationType.ARCHIVE_COURSES
    fast = PollPolicy(first=0.01, maximum=0.05, timeout=10)

    def readings(state: SimState) -> int:
        return sum(
            1 for e in state.journal if e["method"] == "GET" and e["path"] == "/api/v2/bulk/operations"
        )

    async with ApiClient(make_config(sim.base_url), backoff=FAST_BACKOFF) as client:
        # Without a settling time one empty reading concludes "never accepted".
        assert await find_submitted_operation(client, archive, items, created_after=since, poll=fast) is None
        assert readings(sim.state) == 1
        # With one, an empty list is read again until the time is up...
        none = await find_submitted_operation(
            client, archive, items, created_after=since, poll=fast, settle=0.2
        )
        assert none is None and readings(sim.state) >= 3
        # ...so an operation the platform shows only after the first readings is adopted.
        before = readings(sim.state)
        lookup = asyncio.create_task(
            find_submitted_operation(client, archive, items, created_after=since, poll=fast, settle=30)
        )
        await sim.wait_for(lambda state: readings(state) >= before + 2)
        assert not lookup.done()
        late = await client.submit_bulk(archive, integration, items)
        found = await asyncio.wait_for(lookup, timeout=10)
        assert found is not None and operation_id(found) == operation_id(late)
