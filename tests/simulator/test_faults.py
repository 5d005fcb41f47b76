"""Fault rules and the control API: injected statuses, drops, gateway pages, delays, failed
operations, tokens."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from syncer.simulator import Exchange, add_observer, remove_observer
from tests.simulator.conftest import INTEGRATION, Api, course, stat

COURSES = f"/api/v2/bulk/integrations/{INTEGRATION}/courses"


async def control(api: Api, method: str, action: str, body: object = None) -> tuple[int, object]:
    async with api.session.request(method, f"{api.sim.base_url}/_sim/{action}", json=body) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("rule", "path", "status", "body"),
    [
        pytest.param({"status": 500}, "/api/v2/integrations", 500, None, id="500"),
        pytest.param(
            {"status": 503},
            COURSES,
            503,
            {"error": {"code": "bulkAPIDisabled", "message": "Simulated failure"}},
            id="503",
        ),
        pytest.param(
            {"status": 429}, "/api/v2/integrations", 429, {"error": "tooManyRequests"}, id="429-flat-default"
        ),
        pytest.param(
            {"status": 429, "shape": "flat"},
            COURSES,
            429,
            {"error": "tooManyRequests"},
            id="429-flat-on-submit",
        ),
        pytest.param(
            {"status": 429, "shape": "structured", "message": "busy"},
            COURSES,
            429,
            {"error": {"code": "bulkOperationsConcurrencyLimitReached", "message": "busy"}},
            id="429-structured",
        ),
    ],
)
async def test_status_faults_answer_n_requests(
    api: Api, rule: dict[str, object], path: str, status: int, body: object
) -> None:
    method = "PUT" if path == COURSES else "GET"
    payload = {"input": []} if method == "PUT" else None
    assert (await control(api, "POST", "faults", [{**rule, "path": path, "count": 2}]))[0] == 200
    answers = [await api.call(method, path, json=payload) for _ in range(3)]
    assert [a.status for a in answers] == [status, status, 202 if method == "PUT" else 200]
    if body is not None:
        assert answers[0].json == body
    assert len(api.sim.state.operations) == (1 if method == "PUT" else 0)  # faults do not perform


async def test_retry_after_header_is_optional(api: Api) -> None:
    api.sim.add_faults([{"status": 503, "retry_after": 2}])
    answer = await api.call("GET", "/api/v2/integrations")
    assert answer.headers["Retry-After"] == "2"


@pytest.mark.parametrize(
    ("method", "kind", "performed"),
    [
        pytest.param("POST", "stats", 1, id="post"),
        # aiohttp's client resends an idempotent request (PUT, DELETE) once when the connection
        # drops: the drop must hit twice to reach the caller, and the batch is performed twice.
        pytest.param("PUT", "courses", 2, id="put-resent-by-aiohttp"),
    ],
)
async def test_drop_performs_the_submission_but_loses_the_answer(
    api: Api, method: str, kind: str, performed: int
) -> None:
    path = f"/api/v2/bulk/integrations/{INTEGRATION}/{kind}"
    await api.call("GET", "/api/v2/integrations")  # the token first
    api.sim.add_faults([{"method": method, "path_regex": rf"/{kind}$", "drop": True, "count": performed}])
    with pytest.raises(aiohttp.ClientError):
        await api.call(method, path, json={"input": []})
    assert len(api.sim.state.operations) == performed
    journal = api.sim.snapshot()["journal"]
    assert journal[-1] == {**journal[-1], "method": method, "status": None}
    assert (await api.call(method, path, json={"input": []})).status == 202  # the rule is used up


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_gateway_performs_the_submission_then_answers_an_html_5xx(api: Api, status: int) -> None:
    """The operation exists and runs; the client sees a proxy's HTML page, not the 202."""
    await api.finish(await api.submit("PUT", "courses", [course("g1")]))
    path = f"/api/v2/bulk/integrations/{INTEGRATION}/stats"
    rule = {"method": "POST", "path_regex": "/stats$", "gateway": status}
    code, body = await control(api, "POST", "faults", rule)
    assert code == 200 and body == {"faults": [{**rule, "count": 1, "remaining": 1}]}
    seen: list[Exchange] = []
    add_observer(seen.append)
    try:
        item = stat("g1", "g@acme.example", "2025-01-01T10:00:00.000Z", "2025-01-01T10:05:00.000Z")
        answer = await api.call("POST", path, json={"input": [item]})
    finally:
        remove_observer(seen.append)
    assert answer.status == status
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.json is None and b"<html>" in answer.raw and str(status).encode() in answer.raw
    assert "Location" not in answer.headers
    # What the platform itself answered (and what the conformance check validates) is the 202.
    assert [(e.method, e.status) for e in seen] == [("POST", 202)]
    journal = api.sim.snapshot()["journal"]
    assert (journal[-1]["method"], journal[-1]["path"], journal[-1]["status"]) == ("POST", path, status)
    _, stats_op = api.sim.snapshot()["operations"]
    assert stats_op["type"] == "importExternalStatistics" and stats_op["items"] == 1
    results = await api.finish(stats_op["_id"])  # it runs to its end like any accepted operation
    assert [r["status"] for r in results] == ["success"]
    state = api.sim.snapshot()
    assert [op["status"] for op in state["operations"]] == ["completed", "completed"]
    assert [len(entry["attempts"]) for entry in state["attempts"]] == [1]
    assert state["faults"] == []  # used up
    assert (await api.call("POST", path, json={"input": []})).status == 202


async def test_gateway_on_a_read_answers_the_page_too(api: Api) -> None:
    api.sim.add_faults([{"method": "GET", "path": "/api/v2/integrations", "gateway": 502}])
    answer = await api.call("GET", "/api/v2/integrations")
    assert (answer.status, answer.json) == (502, None)
    assert (await api.call("GET", "/api/v2/integrations")).status == 200


async def test_delay_slows_matching_requests(api: Api) -> None:
    api.sim.add_faults([{"path": "/api/v2/integrations", "delay": 0.3}])
    loop = asyncio.get_running_loop()
    await api.call("GET", "/api/v2/bulk/operations")  # token first, unaffected
    started = loop.time()
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    assert loop.time() - started >= 0.3


async def test_error_operation_ends_the_next_submission_in_error(api: Api) -> None:
    api.sim.add_faults([{"method": "PUT", "error_operation": True, "message": "boom"}])
    await api.call("GET", "/api/v2/integrations")  # not a submission: rule untouched
    failed = await api.submit("PUT", "courses", [course("c1")])
    fine = await api.submit("PUT", "courses", [course("c2")])
    assert await api.finish(failed) == []
    op = await api.call("GET", f"/api/v2/bulk/operations/{failed}")
    assert (op.json["status"], op.json["errorMessage"]) == ("error", "boom")
    assert len(await api.finish(fine)) == 1
    assert [c["externalId"] for c in api.sim.snapshot()["courses"]] == ["c2"]


async def test_expire_tokens_now_and_on_match(api: Api) -> None:
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    await control(api, "POST", "faults", {"expire_tokens": True})
    assert (await api.call("GET", "/api/v2/integrations")).status == 401
    api.token = None
    api.sim.add_faults([{"path": "/api/v2/bulk/operations", "expire_tokens": True}])
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    assert (await api.call("GET", "/api/v2/bulk/operations")).status == 401


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param({"status": 418}, id="bad-status"),
        pytest.param({"gateway": 501}, id="bad-gateway-status"),
        pytest.param({"gateway": "502"}, id="gateway-not-int"),
        pytest.param({"gateway": True}, id="gateway-bool"),
        pytest.param({"gateway": 502, "drop": True}, id="gateway-and-drop"),
        pytest.param({"drop": True, "status": 500}, id="two-actions"),
        pytest.param({}, id="no-action"),
        pytest.param({"status": 500, "count": 0}, id="count"),
        pytest.param({"status": 500, "colour": 1}, id="unknown-key"),
        pytest.param({"delay": "x"}, id="wrong-type"),
        pytest.param({"drop": True, "path_regex": "("}, id="bad-regex"),
        pytest.param("drop", id="not-object"),
    ],
)
async def test_bad_fault_rules_are_refused(api: Api, rule: object) -> None:
    status, body = await control(api, "POST", "faults", [rule])
    assert status == 400 and "error" in body  # type: ignore[operator]
    assert api.sim.snapshot()["faults"] == []


async def test_control_state_reset_advance_and_integrations(api: Api) -> None:
    await api.finish(await api.submit("PUT", "courses", [course("c1")]))
    status, state = await control(api, "GET", "state")
    assert status == 200
    assert {"integrations", "courses", "attempts", "operations", "journal", "peaks", "faults"} <= set(state)  # type: ignore[arg-type]
    assert state["operations"][0]["successes"] == 1  # type: ignore[index]
    assert "Authorization" not in str(state) and "demo-secret" not in str(state)
    assert (await control(api, "POST", "advance", {"seconds": 5}))[0] == 200
    assert (await control(api, "POST", "advance", {"seconds": -1}))[0] == 400
    assert (await control(api, "POST", "reset"))[0] == 200
    assert api.sim.snapshot()["courses"] == []
    status, created = await control(api, "POST", "integrations", {"externalPlatform": "Seeded"})
    assert status == 201
    assert api.sim.state.integration("5f0c0c0c0c0c0c0c0c0c0c0c", created["_id"]) is not None  # type: ignore[index]
    assert (await control(api, "POST", "integrations", {"nope": 1}))[0] == 400
    assert (await control(api, "GET", "nothing"))[0] == 404
    assert (await api.call("GET", "/api/v2/integrations")).status == 200  # tokens survive a reset
