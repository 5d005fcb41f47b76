"""Bulk operations: result matching, batch hashes, polling and lost-submission recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from syncer.api.bulk import (
    MISSING_RESULT,
    PollPolicy,
    fetch_item_results,
    find_submitted_operation,
    match_results,
    operation_id,
    wait_for_operation,
)
from syncer.api.client import ApiClient
from syncer.errors import ApiError, ApiUnavailable, SubmissionLost
from syncer.models import OperationType
from syncer.simulator import Simulator, SimulatorSettings, running_simulator
from tests.api.test_client import (
    FAST_BACKOFF,
    INTEGRATION,
    api_client,
    integration,
    make_config,
    sim_settings,
)

__all__ = ["api_client", "integration", "sim_settings"]  # fixtures shared with test_client

OP = "507f1f77bcf86cd799439011"


def ok(item: dict[str, Any], rid: str = "r") -> dict[str, Any]:
    return {"input": item, "status": "success", "resourceId": rid}


def err(item: dict[str, Any], message: str = "unknown user") -> dict[str, Any]:
    return {"input": item, "status": "error", "errorMessage": message}


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        pytest.param(f"https://app.360learning.com/api/v2/bulk/operations/{OP}", OP, id="absolute"),
        pytest.param(f"http://127.0.0.1:1/api/v2/bulk/operations/{OP}/", OP, id="trailing-slash"),
        pytest.param(f"/api/v2/bulk/operations/{OP}/results", OP, id="results-url"),
        pytest.param(f"/api/v2/bulk/operations/{OP}?x=1", OP, id="query"),
        pytest.param(OP, OP, id="bare-id"),
    ],
)
def test_operation_id(location: str, expected: str) -> None:
    assert operation_id(location) == expected


def test_operation_id_refuses_empty() -> None:
    with pytest.raises(ApiError, match="not a bulk operation location"):
        operation_id("https://host/")


A = {"externalId": "a", "score": 50.0}
B = {"externalId": "b"}


@pytest.mark.parametrize(
    ("items", "results", "expected", "leftover"),
    [
        pytest.param([A, B], [ok(B, "rb"), ok(A, "ra")], ["ra", "rb"], 0, id="reordered"),
        pytest.param(
            [A, A, B], [ok(A, "1"), ok(B, "b"), ok(A, "2")], ["1", "2", "b"], 0, id="dupes-in-order"
        ),
        pytest.param(
            [A], [ok({"externalId": "a", "score": 50}, "x")], ["x"], 0, id="integral-float-echoed-as-int"
        ),
        pytest.param([A, B], [ok(B, "b")], [None, "b"], 0, id="missing-result"),
        pytest.param([A], [ok(A, "a"), ok(B, "b")], ["a"], 1, id="extra-result"),
        pytest.param(
            [B], [ok({"externalId": "b", "forceNew": False}, "d")], ["d"], 0, id="echo-with-defaults"
        ),
        pytest.param([B], [ok({"externalId": "c"}, "c")], [None], 1, id="different-value"),
    ],
)
def test_match_results(
    items: list[dict[str, Any]], results: list[dict[str, Any]], expected: list[str | None], leftover: int
) -> None:
    matched, leftovers = match_results(items, results)
    assert [m["resourceId"] if m else None for m in matched] == expected
    assert len(leftovers) == leftover


def test_poll_policy_defaults_are_sane() -> None:
    policy = PollPolicy()
    assert 0 < policy.first <= policy.maximum
    assert policy.factor > 1
    assert policy.timeout is None


# ---------------------------------------------------------------- against the simulator

FAST = PollPolicy(first=0.02, factor=1.5, maximum=0.1, timeout=10.0)


def course(external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "name": f"Course {external_id}",
        "launchUrl": f"https://acme.example/launch/{external_id}",
        "defaultLang": "en",
        "sources": [{"name": "Acme"}],
        "subjects": ["safety"],
        **extra,
    }


def stat(external_id: str, mail: str, first: str = "2024-01-01T09:00:00.000Z") -> dict[str, Any]:
    return {
        "courseIdentifier": {"type": "externalId", "value": external_id},
        "userIdentifier": {"type": "mail", "value": mail},
        "progress": 100,
        "timeSpent": 60000,
        "firstActivityAt": first,
        "lastActivityAt": "2024-01-01T10:00:00.000Z",
    }


async def test_wait_reports_progress_and_reads_results(api_client: ApiClient, integration: str) -> None:
    items = [course("c1"), course("c2"), course("c1", name="again")]
    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, items)
    seen: list[str] = []

    async def progress(op: Any) -> None:
        seen.append(op["status"])

    final = await wait_for_operation(api_client, location, poll=FAST, on_progress=progress)
    assert final["status"] == "completed"
    assert seen[-1] == "completed"
    assert seen.count("completed") == 1  # reported on change, not on every poll
    results = await fetch_item_results(api_client, location, items)
    assert [r.position for r in results] == [0, 1, 2]
    assert all(r.success for r in results), results
    assert [r.input for r in results] == items


async def test_item_errors_and_missing_items_are_reported(api_client: ApiClient, integration: str) -> None:
    items = [stat("c-unknown", "a@example.com")]
    location = await api_client.submit_bulk(OperationType.IMPORT_STATS, integration, items)
    await wait_for_operation(api_client, location, poll=FAST)
    # One item really submitted, one that the results cannot mention.
    results = await fetch_item_results(api_client, location, [*items, stat("c-x", "b@example.com")])
    assert results[0].success is False
    assert results[0].message
    assert results[1].success is False
    assert results[1].message == MISSING_RESULT


async def test_wait_gives_up_after_its_timeout() -> None:
    async with running_simulator(SimulatorSettings(op_seconds=30, write_rate=None, read_rate=None)) as slow:
        slow.state.add_integration(_id=INTEGRATION, externalPlatform="Acme")
        async with ApiClient(make_config(slow.base_url), backoff=FAST_BACKOFF) as client:
            location = await client.submit_bulk(OperationType.IMPORT_COURSES, INTEGRATION, [course("slow")])
            # Long enough for several polls even on a loaded machine, far shorter than the operation.
            with pytest.raises(ApiUnavailable, match=r"still (pending|queued|running) after 0.5 s"):
                await wait_for_operation(client, location, poll=PollPolicy(first=0.01, timeout=0.5))
            assert client.requests_sent["GET"] >= 2


async def test_lost_submission_is_found_and_not_resent(
    api_client: ApiClient, integration: str, sim: Simulator
) -> None:
    since = datetime.now(UTC)
    items = [course("l1"), course("l2"), course("l1")]
    await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [course("l1")])
    sim.add_faults(
        [{"method": "PUT", "path": f"/api/v2/bulk/integrations/{integration}/courses", "drop": True}]
    )
    with pytest.raises(SubmissionLost):
        await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, items)
    found = await find_submitted_operation(
        api_client, OperationType.IMPORT_COURSES, items, created_after=since, poll=FAST
    )
    lost = [op for op in sim.snapshot()["operations"] if op["items"] == 3]
    assert found is not None and operation_id(found) == lost[0]["_id"]
    results = await fetch_item_results(api_client, found, items)
    assert [r.success for r in results] == [True, True, True]
    # A different batch (a subset, or the same items once more) is not mistaken for it.
    for other in (items[:2], [*items, course("l3")], [course("l1"), course("l2"), course("l2")]):
        assert (
            await find_submitted_operation(
                api_client, OperationType.IMPORT_COURSES, other, created_after=since, poll=FAST
            )
            is None
        )


async def test_find_submitted_operation(api_client: ApiClient, integration: str) -> None:
    since = datetime.now(UTC)
    items = [course("f1"), course("f2")]
    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, items)
    other = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [course("f3")])
    # Unfinished candidates are waited for: nothing is finished yet.
    found = await find_submitted_operation(
        api_client, OperationType.IMPORT_COURSES, list(reversed(items)), created_after=since, poll=FAST
    )
    assert found is not None and operation_id(found) == operation_id(location)
    assert operation_id(other) != operation_id(location)
    assert (
        await find_submitted_operation(
            api_client, OperationType.IMPORT_COURSES, [course("f1")], created_after=since, poll=FAST
        )
        is None
    )
    # Another type never matches, nor do operations created before the window.
    assert (
        await find_submitted_operation(
            api_client, OperationType.ARCHIVE_COURSES, items, created_after=since, poll=FAST
        )
        is None
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    assert (
        await find_submitted_operation(
            api_client, OperationType.IMPORT_COURSES, items, created_after=later, poll=FAST
        )
        is None
    )


async def test_payloads_kept_as_text_are_sent_and_matched_as_their_values(
    api_client: ApiClient, integration: str
) -> None:
    # A batch read back from the plan keeps each payload as its canonical JSON text (Payloads):
    # the platform receives the same items, and each result is paired with its own item.
    from syncer.models import Payloads, dumps_canonical

    items = [course("t1"), course("t2", name="Two"), course("t1", name="again")]
    texts = Payloads([dumps_canonical(item).decode() for item in items])
    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, texts)
    await wait_for_operation(api_client, location, poll=FAST)
    results = await fetch_item_results(api_client, location, texts)
    assert [r.position for r in results] == [0, 1, 2]
    assert all(r.success for r in results), results
    assert [r.input for r in results] == items


async def test_payloads_kept_as_text_are_sent_without_decoding_them(
    api_client: ApiClient, integration: str
) -> None:
    # The request body is the texts joined: decoding 10,000 of them into dicts for nothing cost
    # a first sync CPU and 9 MB of memory per batch (docs/performance.md).
    from syncer.models import Payloads, dumps_canonical

    decoded: list[int] = []

    class Watched(Payloads):
        def __getitem__(self, index: Any) -> Any:
            decoded.append(index)
            return super().__getitem__(index)

    texts = Watched([dumps_canonical(course(f"w{n}")).decode() for n in range(3)])
    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, texts)
    assert decoded == []
    await wait_for_operation(api_client, location, poll=FAST)
    assert all(r.success for r in await fetch_item_results(api_client, location, texts))


async def test_payloads_whose_echo_differs_in_form_are_still_matched(
    api_client: ApiClient, integration: str
) -> None:
    # "progress": 100.0 comes back as 100 (JSON numbers): the texts differ from the echo, so the
    # results are matched by value instead, each to its own item, none reported missing.
    from syncer.models import Payloads

    first = stat("c-float", "f@example.com")
    second = stat("c-float", "g@example.com")
    texts = [
        orjson.dumps({**item, "progress": 100.0}, option=orjson.OPT_SORT_KEYS).decode()
        for item in (first, second)
    ]
    assert '"progress":100.0' in texts[0]
    location = await api_client.submit_bulk(OperationType.IMPORT_STATS, integration, Payloads(texts))
    await wait_for_operation(api_client, location, poll=FAST)
    results = await fetch_item_results(api_client, location, Payloads(texts))
    assert [r.input["userIdentifier"] for r in results] == [first["userIdentifier"], second["userIdentifier"]]
    assert all(r.message != MISSING_RESULT for r in results), results
