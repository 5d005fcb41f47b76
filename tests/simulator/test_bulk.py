"""Bulk submissions, the operation lifecycle, results and the operations list."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.simulator import SimulatorSettings
from tests.simulator.conftest import INTEGRATION, Api, course, stat

COURSES = f"/api/v2/bulk/integrations/{INTEGRATION}/courses"
STATS = f"/api/v2/bulk/integrations/{INTEGRATION}/stats"
SLOW = SimulatorSettings(op_seconds=10.0, write_rate=None, read_rate=None)


async def test_submit_answers_202_with_empty_body_and_absolute_location(api: Api) -> None:
    answer = await api.call("PUT", COURSES, json={"input": [course("c1")]})
    assert answer.status == 202
    assert answer.raw == b""
    assert answer.headers["Location"].startswith(api.sim.base_url + "/api/v2/bulk/operations/")


@pytest.mark.parametrize(
    ("method", "path", "payload", "code"),
    [
        pytest.param("PUT", COURSES, {"input": {}}, "invalidInput", id="input-not-array"),
        pytest.param("PUT", COURSES, [], "invalidInput", id="body-not-object"),
        pytest.param("PUT", COURSES, {"input": [], "extra": 1}, "invalidInput", id="extra-property"),
        pytest.param("PUT", COURSES, {"input": [{}] * 10_001}, "inputTooLong", id="courses-over-10000"),
        pytest.param("POST", STATS, {"input": [{}] * 10_001}, "inputTooLong", id="stats-over-10000"),
        pytest.param("DELETE", COURSES, {"input": [{}] * 1_001}, "inputTooLong", id="archive-over-1000"),
    ],
)
async def test_submit_validation(api: Api, method: str, path: str, payload: Any, code: str) -> None:
    answer = await api.call(method, path, json=payload)
    assert (answer.status, answer.json["error"]["code"]) == (400, code)


async def test_unknown_integration_is_404(api: Api) -> None:
    for integration in ("0" * 24, "not-an-id"):
        answer = await api.call("PUT", f"/api/v2/bulk/integrations/{integration}/courses", json={"input": []})
        assert (answer.status, answer.json["error"]["code"]) == (404, "integrationNotFound")


@pytest.mark.parametrize("sim_settings", [SLOW], ids=["slow"])
async def test_lifecycle_walks_the_five_statuses(api: Api) -> None:
    op_id = await api.submit("PUT", "courses", [course(f"c{i}") for i in range(10)])
    path = f"/api/v2/bulk/operations/{op_id}"
    seen = []
    for step in (0.0, 1.5, 4.0, 5.0):
        api.sim.advance(step)
        answer = await api.call("GET", path)
        seen.append((answer.json["status"], answer.json.get("progress", {}).get("index")))
        if answer.json["status"] != "completed":
            not_run = await api.call("GET", path + "/results")
            assert (not_run.status, not_run.json["error"]["code"]) == (400, "bulkOperationNotRun")
    assert seen == [("pending", None), ("queued", None), ("running", 4), ("completed", 10)]
    done = await api.call("GET", path)
    assert done.json["status"] == "completed" and done.json["progress"]["index"] == 10
    results = await api.call("GET", path + "/results")
    assert [item["input"]["externalId"] for item in results.json] == [f"c{i}" for i in range(10)]
    assert all(item["status"] == "success" for item in results.json)


async def test_unknown_operation_is_404(api: Api) -> None:
    for suffix in ("", "/results"):
        answer = await api.call("GET", f"/api/v2/bulk/operations/{'0' * 24}{suffix}")
        assert (answer.status, answer.json["error"]["code"]) == (404, "bulkOperationNotFound")


@pytest.mark.parametrize("sim_settings", [SLOW], ids=["slow"])
async def test_concurrency_limit_counts_every_unfinished_operation(api: Api) -> None:
    for _ in range(3):
        await api.submit("PUT", "courses", [])
    refused = await api.call("PUT", COURSES, json={"input": []})
    assert (refused.status, refused.json["error"]["code"]) == (429, "bulkOperationsConcurrencyLimitReached")
    api.sim.advance(10)
    assert (await api.call("PUT", COURSES, json={"input": []})).status == 202
    assert api.sim.snapshot()["peaks"]["unfinished_operations"]["5f0c0c0c0c0c0c0c0c0c0c0c"] == 3


async def test_course_items_upsert_archive_and_revive(api: Api) -> None:
    first = await api.finish(await api.submit("PUT", "courses", [course("c1"), course("c2", duration=0)]))
    assert first[0]["status"] == "success"
    assert first[1]["status"] == "error" and "duration" in first[1]["errorMessage"]
    archive = await api.finish(
        await api.submit("DELETE", "courses", [{"externalId": "c1"}, {"externalId": "zz"}])
    )
    assert [item["status"] for item in archive] == ["success", "error"]
    assert archive[0]["resourceId"] == first[0]["resourceId"]
    refused = await api.finish(
        await api.submit(
            "POST", "stats", [stat("c1", "a@x.io", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z")]
        )
    )
    assert refused[0]["status"] == "error" and "archived" in refused[0]["errorMessage"]
    revived = await api.finish(await api.submit("PUT", "courses", [course("c1", name="New")]))
    assert revived[0]["resourceId"] == first[0]["resourceId"]
    courses = {c["externalId"]: c for c in api.sim.snapshot()["courses"]}
    assert courses["c1"]["status"] == "live" and courses["c1"]["course"]["name"] == "New"


async def test_statistics_create_and_update_attempts(api: Api) -> None:
    await api.finish(await api.submit("PUT", "courses", [course("c1")]))
    items = [
        stat("c1", "A@x.io", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z", 40),
        stat("c1", "a@x.io", "2025-01-01T00:30:00Z", "2025-01-01T02:00:00Z", 100),
        stat("c1", "a@x.io", "2025-01-01T01:00:00Z", "2025-01-01T03:00:00Z", 10),
        stat("c1", "a@x.io", "2025-01-01T01:00:00Z", "2025-01-01T03:00:00Z", 10, forceNew=True),
        stat("nope", "a@x.io", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z"),
        stat("c1", "a@x.io", "2025-01-01T05:00:00Z", "2025-01-01T04:00:00Z"),
        stat("c1", "a@x.io", "2025-01-01T05:00:00Z", "2025-01-01T06:00:00Z", 150),
        {
            **stat("c1", "b@x.io", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z"),
            "userIdentifier": {"type": "internalId", "value": "c" * 24},
        },
    ]
    results = await api.finish(await api.submit("POST", "stats", items))
    assert [item["status"] for item in results] == ["success"] * 4 + ["error"] * 3 + ["success"]
    assert results[0]["resourceId"] == results[1]["resourceId"]  # overlapping, open: updated
    assert len({results[1]["resourceId"], results[2]["resourceId"], results[3]["resourceId"]}) == 3
    assert [item["input"] for item in results] == items
    pairs = {entry["user"]: entry["attempts"] for entry in api.sim.snapshot()["attempts"]}
    assert pairs["mail:a@x.io"][0]["completedAt"] == "2025-01-01T02:00:00.000Z"
    assert len(pairs["mail:a@x.io"]) == 3 and len(pairs[f"internalId:{'c' * 24}"]) == 1


@pytest.mark.parametrize(
    "sim_settings", [SimulatorSettings(op_seconds=0.05, users=frozenset({"known@x.io"}))], ids=["users"]
)
async def test_unknown_learner_is_an_item_error(api: Api) -> None:
    await api.finish(await api.submit("PUT", "courses", [course("c1")]))
    items = [
        stat("c1", mail, "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z")
        for mail in ("known@x.io", "who@x.io")
    ]
    results = await api.finish(await api.submit("POST", "stats", items))
    assert [item["status"] for item in results] == ["success", "error"]
    assert "who@x.io" in results[1]["errorMessage"]


async def test_internal_course_identifier(api: Api) -> None:
    created = await api.finish(await api.submit("PUT", "courses", [course("c1")]))
    item = stat("c1", "a@x.io", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z")
    item["courseIdentifier"] = {"type": "internalId", "value": created[0]["resourceId"]}
    assert (await api.finish(await api.submit("POST", "stats", [item])))[0]["status"] == "success"


@pytest.mark.parametrize(
    "sim_settings",
    [SimulatorSettings(op_seconds=0.0, write_rate=None, read_rate=None, concurrent_operations=100)],
    ids=["instant"],
)
async def test_operations_list_filters_and_pages_by_20(api: Api) -> None:
    ids = [await api.submit("PUT", "courses", []) for _ in range(25)]
    ids.append(await api.submit("DELETE", "courses", []))
    url, params, listed, pages = (
        "/api/v2/bulk/operations",
        {"type[eq]": "importExternalCourses", "status[eq]": "completed"},
        [],
        0,
    )
    while url:
        answer = await api.call("GET", url, params=params)
        assert answer.status == 200
        listed += [item["_id"] for item in answer.json]
        pages += 1
        link = answer.headers.get("Link")
        url, params = (link[1 : link.index(">")] if link else ""), None
    assert listed == ids[:25] and pages == 2
    created = api.sim.snapshot()["operations"][0]["createdAt"]
    after = await api.call("GET", "/api/v2/bulk/operations", params={"createdAt[lt]": created})
    assert after.json == []
    window = await api.call(
        "GET", "/api/v2/bulk/operations", params={"createdAt[gte]": created[:19] + ".999Z"}
    )
    assert window.json[0]["_id"] == ids[0]  # milliseconds of the filter are forced to 0
    for bad in ({"status[eq]": "done"}, {"type[eq]": "x"}, {"createdAt[gte]": "yesterday"}, {"sort": "x"}):
        assert (await api.call("GET", "/api/v2/bulk/operations", params=bad)).status == 400


async def test_operations_are_private_to_their_company(api: Api) -> None:
    op_id = await api.submit("PUT", "courses", [])
    api.sim.state.operations[op_id].company_id = "f" * 24
    assert (await api.call("GET", f"/api/v2/bulk/operations/{op_id}")).status == 404
