"""Token endpoint, bearer tokens, the version header, scopes and the rate limits."""

from __future__ import annotations

import pytest

from syncer.simulator import SimClient, SimulatorSettings
from tests.simulator.conftest import INTEGRATION, Api, course

TOKEN = "/api/v2/oauth2/token"
GOOD = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"}


async def test_token_is_opaque_bearer_with_numeric_lifetime(api: Api) -> None:
    answer = await api.call("POST", TOKEN, json=GOOD, auth=False)
    assert answer.status == 200
    assert answer.json["token_type"] == "Bearer"
    assert answer.json["expires_in"] == 3600
    assert isinstance(answer.json["expires_in"], int)
    assert len(answer.json["access_token"]) >= 32


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({**GOOD, "scope": "x"}, 400, "invalid_request", id="extra-property"),
        pytest.param(
            {k: v for k, v in GOOD.items() if k != "client_id"}, 400, "invalid_request", id="missing"
        ),
        pytest.param({**GOOD, "client_id": 5}, 400, "invalid_request", id="wrong-type"),
        pytest.param({**GOOD, "company_id": "nothex"}, 400, "invalid_request", id="bad-company-pattern"),
        pytest.param([GOOD], 400, "invalid_request", id="not-an-object"),
        pytest.param({**GOOD, "grant_type": "password"}, 400, "unsupported_grant_type", id="grant"),
        pytest.param({**GOOD, "client_secret": "nope"}, 401, "invalid_client", id="bad-secret"),
        pytest.param({**GOOD, "client_id": "nobody"}, 401, "invalid_client", id="unknown-client"),
        pytest.param({**GOOD, "company_id": "a" * 24}, 401, "invalid_client", id="other-company"),
    ],
)
async def test_token_errors_are_flat(api: Api, body: object, status: int, code: str) -> None:
    answer = await api.call("POST", TOKEN, json=body, auth=False)
    assert (answer.status, answer.json) == (status, {"error": code})


async def test_token_refuses_malformed_and_duplicate_json(api: Api) -> None:
    for raw in (b"{not json", b'{"grant_type":"client_credentials","grant_type":"client_credentials"}'):
        answer = await api.call(
            "POST", TOKEN, data=raw, headers={"Content-Type": "application/json"}, auth=False
        )
        assert (answer.status, answer.json) == (400, {"error": "invalid_request"})
    form = await api.call("POST", TOKEN, data=b"grant_type=client_credentials", auth=False)
    assert form.json == {"error": "invalid_request"}


async def test_token_accepts_company_and_user(api: Api) -> None:
    body = {**GOOD, "company_id": "5f0c0c0c0c0c0c0c0c0c0c0c", "user_id": "b" * 24}
    assert (await api.call("POST", TOKEN, json=body, auth=False)).status == 200


async def test_missing_or_bad_token_is_401(api: Api) -> None:
    missing = await api.call("GET", "/api/v2/integrations", auth=False)
    assert (missing.status, missing.json) == (401, {"error": "invalid_token"})
    wrong = await api.call("GET", "/api/v2/integrations", auth=False, headers={"Authorization": "Bearer x"})
    assert wrong.status == 401


async def test_tokens_expire_after_their_lifetime(api: Api) -> None:
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    api.sim.advance(3599)
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    api.sim.advance(2)
    assert (await api.call("GET", "/api/v2/integrations")).status == 401


async def test_missing_version_header_is_a_labelled_400(api: Api) -> None:
    answer = await api.call("GET", "/api/v2/integrations", version=False)
    assert answer.status == 400
    assert answer.json["error"]["code"] == "invalidApiVersion"
    wrong = await api.call("GET", "/api/v2/integrations", headers={"360-api-version": "v1"})
    assert wrong.status == 400


READ_ONLY = SimClient(client_id="reader", client_secret="s", scopes=frozenset({"integrations:read"}))


@pytest.mark.parametrize(
    "sim_settings", [SimulatorSettings(op_seconds=0.05, clients=(READ_ONLY,))], ids=["read-only"]
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/api/v2/integrations", {}, id="create"),
        pytest.param("PUT", f"/api/v2/bulk/integrations/{INTEGRATION}/courses", {"input": []}, id="bulk"),
        pytest.param("GET", "/api/v2/bulk/operations", None, id="operations"),
    ],
)
async def test_missing_scope_is_structured_403(api: Api, method: str, path: str, body: object) -> None:
    api.token = await api.fetch_token("reader", "s")
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    answer = await api.call(method, path, json=body)
    assert answer.status == 403
    assert answer.json["error"]["code"] == "invalid_scope"


@pytest.mark.parametrize(
    "sim_settings", [SimulatorSettings(op_seconds=0.05, write_rate=2, read_rate=3)], ids=["tight"]
)
async def test_rate_limits_per_company_over_one_second(api: Api) -> None:
    statuses = [(await api.call("GET", "/api/v2/integrations")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    writes = []
    for _ in range(3):
        answer = await api.call("PUT", f"/api/v2/bulk/integrations/{INTEGRATION}/courses", json={"input": []})
        writes.append(answer.status)
    assert writes == [202, 202, 429]
    assert answer.json == {"error": "tooManyRequests"}
    api.sim.advance(1.01)
    assert (await api.call("GET", "/api/v2/integrations")).status == 200
    peaks = api.sim.snapshot()["peaks"]
    assert peaks["reads_per_second"]["5f0c0c0c0c0c0c0c0c0c0c0c"] == 4
    assert peaks["writes_per_second"]["5f0c0c0c0c0c0c0c0c0c0c0c"] == 3


async def test_course_helper_is_valid(api: Api) -> None:
    op = await api.submit("PUT", "courses", [course("c1")])
    assert (await api.finish(op))[0]["status"] == "success"
