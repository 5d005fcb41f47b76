"""The shared conformance check itself, the spec copy, and the pinned public API."""

from __future__ import annotations

import json

import pytest

import syncer.simulator
from syncer.simulator import Exchange, Simulator
from syncer.simulator.rules import _SPEC
from tests.openapi.referee import FACTS
from tests.sim_fixture import check_exchange

OP = "/api/v2/bulk/operations/{bulkOperationId}"
GOOD_OP = {
    "_id": "a" * 24,
    "type": "importExternalCourses",
    "createdAt": "2025-01-01T00:00:00.000Z",
    "status": "pending",
}


def exchange(route: str | None, status: int, body: object = None, **extra: object) -> Exchange:
    raw = b"" if body is None else json.dumps(body).encode()
    return Exchange(
        method=str(extra.pop("method", "GET")),
        path=route or "/x",
        route=route,
        status=status,
        headers=dict(extra.pop("headers", {})),  # type: ignore[call-overload]
        body=raw,
        undocumented=extra.pop("undocumented", None),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("sent", "fine"),
    [
        pytest.param(exchange(OP, 200, GOOD_OP), True, id="conforming"),
        pytest.param(exchange(OP, 200, {**GOOD_OP, "status": "queued"}), False, id="missing-queuedAt"),
        pytest.param(exchange(OP, 200, {**GOOD_OP, "createdAt": "yesterday"}), False, id="bad-date-time"),
        pytest.param(exchange(OP, 500, {"error": "x"}), False, id="undeclared-status"),
        pytest.param(exchange(OP, 500, {"error": "x"}, undocumented="fault"), True, id="labelled-status"),
        pytest.param(exchange(OP, 400, {"oops": 1}, undocumented="choice"), False, id="labelled-bad-shape"),
        pytest.param(exchange(None, 404, {"error": "x"}), False, id="unlabelled-unknown-route"),
        pytest.param(
            exchange("/api/v2/bulk/integrations/{integrationId}/stats", 202, method="POST"),
            False,
            id="202-without-location",
        ),
        pytest.param(
            exchange(
                "/api/v2/bulk/integrations/{integrationId}/stats",
                202,
                method="POST",
                headers={"Location": f"http://127.0.0.1:1/api/v2/bulk/operations/{'b' * 24}"},
            ),
            True,
            id="202-with-location",
        ),
        pytest.param(
            exchange("/api/v2/bulk/operations", 200, [GOOD_OP], headers={"Link": "</x>; rel=next"}),
            False,
            id="bad-link",
        ),
    ],
)
def test_check_exchange(sent: Exchange, fine: bool) -> None:
    assert (check_exchange(sent) == []) is fine


def test_packaged_spec_is_the_referee_extract() -> None:
    assert json.loads(_SPEC.read_text("utf-8")) == json.loads(FACTS.read_text("utf-8"))


def test_public_api_is_stable() -> None:
    assert sorted(syncer.simulator.__all__) == [
        "ALL_SCOPES",
        "DEMO_CLIENT",
        "DEMO_CLIENT_ID",
        "DEMO_CLIENT_SECRET",
        "DEMO_COMPANY_ID",
        "Exchange",
        "FaultRule",
        "FaultRuleError",
        "SimClient",
        "SimState",
        "Simulator",
        "SimulatorSettings",
        "SimulatorThread",
        "add_observer",
        "build_fault_rule",
        "create_app",
        "load_users",
        "remove_observer",
        "running_simulator",
        "serve_forever",
    ]


async def test_on_response_callback_sees_every_api_answer() -> None:
    seen: list[Exchange] = []
    sim = Simulator(on_response=seen.append)
    await sim.start()
    try:
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.get(sim.base_url + "/api/v2/integrations") as resp,
        ):
            assert resp.status == 401
            async with session.get(sim.base_url + "/_sim/state") as control:
                assert control.status == 200
    finally:
        await sim.stop()
    assert [(e.route, e.status) for e in seen] == [("/api/v2/integrations", 401)]
