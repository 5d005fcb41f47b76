"""The API client: token, retries, error translation, pagination, rate limits, secrecy."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from syncer.api.client import ApiClient, _error_of, _seconds
from syncer.api.pacing import Backoff, RateLimiter, retry_after
from syncer.config import ApiConfig, Limits, Secret
from syncer.errors import ApiError, ApiUnavailable, SubmissionLost
from syncer.models import OperationStatus, OperationType
from syncer.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_COMPANY_ID,
    Simulator,
    SimulatorSettings,
    running_simulator,
)

# ---------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"error": "tooManyRequests"}, ("tooManyRequests", "tooManyRequests"), id="flat"),
        pytest.param(
            {"error": {"code": "bulkOperationsConcurrencyLimitReached", "message": "3 running"}},
            ("bulkOperationsConcurrencyLimitReached", "3 running"),
            id="structured",
        ),
        pytest.param(
            {"error": "invalid_request", "message": "bad grant"},
            ("invalid_request", "bad grant"),
            id="flat+msg",
        ),
        pytest.param(None, (None, "plain text"), id="not-json"),
    ],
)
def test_error_shapes(body: Any, expected: tuple[str | None, str]) -> None:
    assert _error_of(body, "plain text") == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param("0.5", 0.5, id="fraction"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="past-date"),
        pytest.param("soon", None, id="garbage"),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    assert retry_after(header) == expected


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    backoff = Backoff(initial=1.0, maximum=4.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert backoff.delay(0, retry_after=7.0) == 7.0


async def test_rate_limiter_never_exceeds_its_window() -> None:
    window, rate = 0.1, 5
    limiter = RateLimiter(rate, window=window, margin=0.0)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(16)))
    times.sort()
    # A sleeper may wake late under load but never early, and the first request goes at once:
    # the k-th request is at least k evenly spaced intervals after the first, so no window of
    # `window` seconds ever holds more than `rate` of them.
    interval = window / rate
    for k, moment in enumerate(times):
        assert moment - times[0] >= k * interval * 0.99, (k, moment - times[0])


async def test_rate_limiter_counts_when_requests_really_left() -> None:
    """A busy event loop wakes a sleeper late; the window counts from when it really went out."""
    window, rate = 0.2, 5
    limiter = RateLimiter(rate, window=window, margin=0.0)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one(stall: bool) -> None:
        await limiter.acquire()
        times.append(loop.time())
        if stall:
            time.sleep(0.1)  # the loop is blocked: every sleeper due meanwhile wakes late

    await asyncio.gather(*(one(stall=(k == 1)) for k in range(16)))
    times.sort()
    for i, start in enumerate(times):
        inside = [t for t in times[i:] if t < start + window]
        assert len(inside) <= rate, (i, [round(t - start, 3) for t in inside])


def test_secret_stays_out_of_repr() -> None:
    api = ApiConfig(base_url="http://user:pw@127.0.0.1:9/", client_id="id", client_secret=Secret("s3cr3t"))
    client = ApiClient(api)
    assert "s3cr3t" not in repr(client)
    assert "pw" not in repr(client)
    assert "s3cr3t" not in repr(api)


def test_limits_defaults_are_documented_values() -> None:
    assert Limits().requests_per_second == 10
    assert Limits().reads_per_second == 50


def test_expires_in_number_or_string() -> None:
    assert _seconds(3600) == 3600.0
    assert _seconds("3600") == 3600.0
    assert _seconds(None) == 60.0
    assert _seconds("soon") == 60.0
    assert _seconds(-5) == 60.0


# ---------------------------------------------------------------- against the simulator

INTEGRATION = "507f1f77bcf86cd799439011"
GROUP = "5f0c0c0c0c0c0c0c0c0c0c01"
AUTHOR = "5f0c0c0c0c0c0c0c0c0c0c02"
FAST_BACKOFF = Backoff(initial=0.01, maximum=0.05)
ROOMY = Limits(requests_per_second=500, reads_per_second=1000)


def make_config(base_url: str, **changes: Any) -> ApiConfig:
    """A config for the simulator's demo credentials, with fast timeouts."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": Secret(DEMO_CLIENT_SECRET),
        "company_id": DEMO_COMPANY_ID,
        "limits": ROOMY,
        "timeout_seconds": 5.0,
        "retry_seconds": 5.0,
    }
    values.update(changes)
    return ApiConfig(**values)


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """Fast operations, no server-side rate limit, room for many operations at once."""
    return SimulatorSettings(op_seconds=0.05, write_rate=None, read_rate=None, concurrent_operations=50)


@pytest.fixture
async def api_client(sim: Simulator) -> AsyncIterator[ApiClient]:
    """An ApiClient on the test's simulator."""
    async with ApiClient(make_config(sim.base_url), backoff=FAST_BACKOFF) as client:
        yield client


@pytest.fixture
def integration(sim: Simulator) -> str:
    """The id of an integration present on the simulator."""
    sim.state.add_integration(
        _id=INTEGRATION,
        externalPlatform="Acme Academy",
        groupId=GROUP,
        authorId=AUTHOR,
        company_id=DEMO_COMPANY_ID,
    )
    return INTEGRATION


def journal(sim: Simulator, method: str | None = None, prefix: str = "") -> list[tuple[str, int | None]]:
    """(method path, status) of the simulator's journal, optionally filtered."""
    return [
        (f"{e['method']} {e['path']}", e["status"])
        for e in sim.snapshot()["journal"]
        if (method is None or e["method"] == method) and e["path"].startswith(prefix)
    ]


def statuses(sim: Simulator, method: str, prefix: str) -> list[int | None]:
    """Statuses the simulator answered for one kind of request, in order."""
    return [status for _, status in journal(sim, method, prefix)]


ITEM = {
    "externalId": "c1",
    "name": "Course c1",
    "launchUrl": "https://acme.example/launch/c1",
    "defaultLang": "en",
    "sources": [{"name": "Acme"}],
    "subjects": ["safety"],
}
COURSES = f"/api/v2/bulk/integrations/{INTEGRATION}/courses"
INTEGRATIONS = "/api/v2/integrations"
TOKEN = "/api/v2/oauth2/token"


async def test_submit_and_follow_an_operation(
    api_client: ApiClient, integration: str, sim: Simulator
) -> None:
    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert location.startswith(sim.base_url + "/api/v2/bulk/operations/")
    await sim.wait_for(lambda s: all(op.finished for op in s.operations.values()))
    by_location = await api_client.fetch_operation(location)
    by_id = await api_client.fetch_operation(location.rsplit("/", 1)[1])
    assert by_location["status"] == by_id["status"] == "completed"
    results = await api_client.fetch_results(location)
    assert results == [{"input": ITEM, "status": "success", "resourceId": results[0]["resourceId"]}]
    # Token once, then every call carried it (the simulator refuses calls without the version header).
    assert statuses(sim, "POST", TOKEN) == [200]
    assert api_client.requests_sent == {"POST": 1, "PUT": 1, "GET": 3}


@pytest.mark.parametrize(
    ("op_type", "method", "suffix"),
    [
        pytest.param(OperationType.IMPORT_COURSES, "PUT", "courses", id="import-courses"),
        pytest.param(OperationType.ARCHIVE_COURSES, "DELETE", "courses", id="archive-courses"),
        pytest.param(OperationType.IMPORT_STATS, "POST", "stats", id="import-stats"),
    ],
)
async def test_bulk_routes(
    api_client: ApiClient, integration: str, sim: Simulator, op_type: OperationType, method: str, suffix: str
) -> None:
    await api_client.submit_bulk(op_type, integration, [])
    assert statuses(sim, method, f"/api/v2/bulk/integrations/{integration}/{suffix}") == [202]
    (operation,) = sim.snapshot()["operations"]
    assert operation["type"] == op_type.value


async def test_integrations_create_patch_and_paginate(api_client: ApiClient, sim: Simulator) -> None:
    created = await api_client.create_integration(
        {"externalPlatform": "Acme", "groupId": GROUP, "authorId": AUTHOR, "defaultProgress": 0}
    )
    assert len(created["_id"]) == 24
    patched = await api_client.patch_integration(created["_id"], {"defaultCompletion": True})
    assert patched["defaultCompletion"] is True
    for n in range(150):
        sim.state.add_integration(externalPlatform=f"Other {n}", company_id=DEMO_COMPANY_ID)
    everything = await api_client.fetch_integrations()
    assert len(everything) == 151
    assert len({i["_id"] for i in everything}) == 151
    assert statuses(sim, "GET", INTEGRATIONS) == [200, 200]  # 100 per page
    only = await api_client.fetch_integrations("Acme")
    assert [i["_id"] for i in only] == [created["_id"]]
    assert await api_client.fetch_integrations("Nobody") == []


async def test_create_integration_whose_answer_was_lost_is_found(
    api_client: ApiClient, sim: Simulator
) -> None:
    sim.add_faults([{"method": "POST", "path": INTEGRATIONS, "count": 1, "drop": True}])
    created = await api_client.create_integration(
        {"externalPlatform": "Acme", "groupId": GROUP, "authorId": AUTHOR}
    )
    assert [i["_id"] for i in sim.snapshot()["integrations"]] == [created["_id"]]
    assert statuses(sim, "POST", INTEGRATIONS) == [None]  # dropped, and not sent again


async def test_operations_pagination_and_filters(
    api_client: ApiClient, integration: str, sim: Simulator
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    for _ in range(23):
        await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [])
    await api_client.submit_bulk(OperationType.ARCHIVE_COURSES, integration, [])
    listed = [op async for op in api_client.fetch_operations(op_type=OperationType.IMPORT_COURSES)]
    assert len(listed) == 23
    assert statuses(sim, "GET", "/api/v2/bulk/operations") == [200, 200]  # 20 per page
    everything = [op async for op in api_client.fetch_operations(created_gte=before)]
    assert len(everything) == 24
    future = datetime.now(UTC) + timedelta(hours=1)
    assert [op async for op in api_client.fetch_operations(created_gte=future)] == []
    assert len([op async for op in api_client.fetch_operations(created_lt=future)]) == 24
    await sim.wait_for(lambda s: all(op.finished for op in s.operations.values()))
    done = [op async for op in api_client.fetch_operations(status=OperationStatus.COMPLETED)]
    assert len(done) == 24


# -- tokens


async def test_token_is_renewed_before_expiry(sim: Simulator) -> None:
    async with running_simulator(
        SimulatorSettings(token_lifetime=0.3, write_rate=None, read_rate=None)
    ) as short:
        async with ApiClient(make_config(short.base_url), backoff=FAST_BACKOFF) as client:
            await client.fetch_integrations()
            await asyncio.sleep(0.3)  # let the token age past its renewal margin (not a synchronisation)
            await client.fetch_integrations()
        assert statuses(short, "POST", TOKEN) == [200, 200]
        assert statuses(short, "GET", INTEGRATIONS) == [200, 200]  # never a 401


async def test_token_is_renewed_once_after_a_401(api_client: ApiClient, sim: Simulator) -> None:
    await api_client.fetch_integrations()
    sim.add_faults([{"expire_tokens": True}])
    await api_client.fetch_integrations()
    assert statuses(sim, "GET", INTEGRATIONS) == [200, 401, 200]
    assert statuses(sim, "POST", TOKEN) == [200, 200]


async def test_a_second_401_is_an_error(api_client: ApiClient, sim: Simulator) -> None:
    sim.add_faults([{"method": "GET", "path": INTEGRATIONS, "count": 2, "expire_tokens": True}])
    with pytest.raises(ApiError) as caught:
        await api_client.fetch_integrations()
    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
    assert not isinstance(caught.value, ApiUnavailable)
    assert statuses(sim, "GET", INTEGRATIONS) == [401, 401]


async def test_bad_credentials(sim: Simulator) -> None:
    config = make_config(sim.base_url, client_secret=Secret("wrong-s3cret"))
    async with ApiClient(config, backoff=FAST_BACKOFF) as client:
        with pytest.raises(ApiError) as caught:
            await client.fetch_integrations()
    assert (caught.value.status, caught.value.code) == (401, "invalid_client")
    assert "wrong-s3cret" not in str(caught.value) and "wrong-s3cret" not in repr(caught.value)
    assert statuses(sim, "POST", TOKEN) == [401]


# -- retries


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        pytest.param({"status": 429, "shape": "flat"}, "tooManyRequests", id="429-flat"),
        pytest.param(
            {"status": 429, "shape": "structured"}, "bulkOperationsConcurrencyLimitReached", id="429-struct"
        ),
        pytest.param({"status": 503}, "bulkAPIDisabled", id="503"),
    ],
)
async def test_retryable_bursts_then_success(
    api_client: ApiClient, integration: str, sim: Simulator, fault: dict[str, Any], code: str
) -> None:
    sim.add_faults([{"method": "PUT", "path": COURSES, "count": 3, **fault}])
    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert statuses(sim, "PUT", COURSES) == [fault["status"]] * 3 + [202]
    assert len(sim.snapshot()["operations"]) == 1
    assert location.endswith(sim.snapshot()["operations"][0]["_id"])


async def test_429_on_reads_too(api_client: ApiClient, sim: Simulator) -> None:
    sim.add_faults([{"method": "GET", "path": INTEGRATIONS, "count": 2, "status": 429}])
    assert await api_client.fetch_integrations() == []
    assert statuses(sim, "GET", INTEGRATIONS) == [429, 429, 200]


async def test_retry_after_is_honoured(api_client: ApiClient, sim: Simulator) -> None:
    sim.add_faults([{"method": "GET", "path": INTEGRATIONS, "count": 1, "status": 429, "retry_after": 0.3}])
    loop = asyncio.get_running_loop()
    started = loop.time()
    await api_client.fetch_integrations()
    assert loop.time() - started >= 0.3


async def test_retry_budget_runs_out(sim: Simulator, integration: str) -> None:
    sim.add_faults([{"method": "PUT", "path": COURSES, "count": 1000, "status": 503}])
    config = make_config(sim.base_url, retry_seconds=0.3)
    loop = asyncio.get_running_loop()
    async with ApiClient(config, backoff=FAST_BACKOFF) as client:
        started = loop.time()
        with pytest.raises(ApiUnavailable) as caught:
            await client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert loop.time() - started < 1.5
    assert (caught.value.status, caught.value.code) == (503, "bulkAPIDisabled")
    assert "gave up after" in str(caught.value)
    assert 2 < len(statuses(sim, "PUT", COURSES)) < 1000
    assert sim.snapshot()["operations"] == []


async def test_dropped_read_is_retried(api_client: ApiClient, sim: Simulator) -> None:
    sim.add_faults([{"method": "GET", "path": INTEGRATIONS, "count": 1, "drop": True}])
    assert await api_client.fetch_integrations() == []
    assert statuses(sim, "GET", INTEGRATIONS) == [None, 200]


async def test_slow_read_times_out_then_retries(sim: Simulator) -> None:
    sim.add_faults([{"method": "GET", "path": INTEGRATIONS, "count": 1, "delay": 0.5}])
    async with ApiClient(make_config(sim.base_url, timeout_seconds=0.15), backoff=FAST_BACKOFF) as client:
        assert await client.fetch_integrations() == []
    assert client.requests_sent["GET"] == 2


async def test_dropped_submission_is_lost_not_retried(
    api_client: ApiClient, integration: str, sim: Simulator
) -> None:
    sim.add_faults([{"method": "PUT", "path": COURSES, "count": 1, "drop": True}])
    with pytest.raises(SubmissionLost) as caught:
        await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert isinstance(caught.value, ApiUnavailable) and not caught.value.retryable
    assert statuses(sim, "PUT", COURSES) == [None]
    assert len(sim.snapshot()["operations"]) == 1  # it was accepted


async def test_timed_out_submission_is_lost(sim: Simulator, integration: str) -> None:
    sim.add_faults([{"method": "PUT", "path": COURSES, "count": 1, "delay": 0.4}])
    async with ApiClient(make_config(sim.base_url, timeout_seconds=0.1), backoff=FAST_BACKOFF) as client:
        with pytest.raises(SubmissionLost, match="may have been accepted"):
            await client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert client.requests_sent["PUT"] == 1  # not resent


async def test_unreachable_api_is_unavailable_not_lost() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(f"http://127.0.0.1:{port}", retry_seconds=0.1)
    async with ApiClient(config, backoff=FAST_BACKOFF) as client:
        with pytest.raises(ApiUnavailable) as caught:
            await client.submit_bulk(OperationType.IMPORT_COURSES, INTEGRATION, [ITEM])
    assert not isinstance(caught.value, SubmissionLost)
    assert "cannot connect" in str(caught.value)


# -- which answers to a submission are refusals, and which may hide an accepted batch


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_gateway_page_after_acceptance_is_lost_not_retried(
    api_client: ApiClient, integration: str, sim: Simulator, status: int
) -> None:
    sim.add_faults([{"method": "PUT", "path": COURSES, "gateway": status}])
    with pytest.raises(SubmissionLost) as caught:
        await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert caught.value.status == status and not caught.value.retryable
    assert f"-> {status}: a text/html body, not a documented refusal" in str(caught.value)
    assert "<html>" not in str(caught.value)
    assert statuses(sim, "PUT", COURSES) == [status]  # not resent
    assert len(sim.snapshot()["operations"]) == 1  # the platform had accepted it


async def test_undocumented_500_to_a_submission_is_lost(
    api_client: ApiClient, integration: str, sim: Simulator
) -> None:
    """A JSON 500 is declared nowhere: nothing says the batch was not accepted."""
    sim.add_faults([{"method": "PUT", "path": COURSES, "status": 500}])
    with pytest.raises(SubmissionLost) as caught:
        await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    assert (caught.value.status, caught.value.code) == (500, "internalServerError")
    assert statuses(sim, "PUT", COURSES) == [500]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param({"status": 503, "count": 2}, [503, 503, 202], id="503-bulkAPIDisabled"),
        pytest.param({"status": 429, "shape": "flat"}, [429, 202], id="429-flat"),
        pytest.param({"status": 429, "shape": "structured"}, [429, 202], id="429-structured"),
    ],
)
async def test_documented_refusals_are_retried(
    api_client: ApiClient, integration: str, sim: Simulator, fault: dict[str, Any], expected: list[int]
) -> None:
    sim.add_faults([{"method": "POST", "path_regex": "/stats$", **fault}])
    await api_client.submit_bulk(OperationType.IMPORT_STATS, integration, [])
    assert statuses(sim, "POST", f"/api/v2/bulk/integrations/{integration}/stats") == expected
    assert len(sim.snapshot()["operations"]) == 1


async def test_documented_400_is_refused_not_lost(api_client: ApiClient, integration: str) -> None:
    with pytest.raises(ApiError) as caught:
        await api_client.submit_bulk(OperationType.ARCHIVE_COURSES, integration, [{"externalId": "x"}] * 1001)
    assert (caught.value.status, caught.value.code) == (400, "inputTooLong")
    assert not isinstance(caught.value, ApiUnavailable)


@pytest.mark.parametrize("fault", [{"gateway": 500}, {"status": 500}], ids=["html", "json"])
async def test_a_read_answered_500_is_still_retried(
    api_client: ApiClient, sim: Simulator, fault: dict[str, Any]
) -> None:
    sim.add_faults([{"method": "GET", "path": INTEGRATIONS, **fault}])
    assert await api_client.fetch_integrations() == []
    assert statuses(sim, "GET", INTEGRATIONS) == [500, 200]


async def test_integration_created_behind_a_gateway_error_is_found_not_recreated(
    api_client: ApiClient, sim: Simulator
) -> None:
    sim.add_faults([{"method": "POST", "path": INTEGRATIONS, "gateway": 502}])
    created = await api_client.create_integration(
        {"externalPlatform": "Behind a proxy", "groupId": GROUP, "authorId": AUTHOR}
    )
    assert statuses(sim, "POST", INTEGRATIONS) == [502]
    assert [i["_id"] for i in sim.snapshot()["integrations"]] == [created["_id"]]


class Canned:
    """A server answering every bulk submission with one fixed answer the simulator cannot give."""

    def __init__(self) -> None:
        self.answer = web.Response(status=500)
        self.submissions = 0
        self.tokens = 0
        self.app = web.Application()
        self.app.router.add_post(TOKEN, self._token)
        self.app.router.add_route("*", "/api/v2/bulk/integrations/{integrationId}/{kind}", self._submit)

    async def _token(self, request: web.Request) -> web.Response:
        self.tokens += 1
        return web.json_response({"token_type": "Bearer", "access_token": "t0k3n", "expires_in": 3600})

    async def _submit(self, request: web.Request) -> web.Response:
        await request.read()
        self.submissions += 1
        return self.answer


@pytest.fixture
async def canned(aiohttp_server: Any) -> AsyncIterator[tuple[Canned, ApiClient]]:
    """The canned server on loopback and an ApiClient pointed at it."""
    server = Canned()
    running = await aiohttp_server(server.app)
    async with ApiClient(make_config(str(running.make_url("/"))), backoff=FAST_BACKOFF) as client:
        yield server, client


def _html(status: int) -> web.Response:
    return web.Response(status=status, text="<html><body>Oops</body></html>", content_type="text/html")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param(lambda: _html(413), "413: a text/html body", id="413-html"),
        pytest.param(lambda: _html(401), "401: a text/html body", id="401-html-no-renewal"),
        pytest.param(lambda: web.Response(status=400, text="bad"), "400: a text/plain body", id="400-text"),
        pytest.param(lambda: web.Response(status=404), "404: an empty body", id="404-empty"),
        pytest.param(
            lambda: web.json_response({"message": "no such thing"}, status=404),
            '404: {"message": "no such thing"}',
            id="404-json-without-error-shape",
        ),
        pytest.param(
            lambda: web.json_response({"error": {"code": "maintenance", "message": "later"}}, status=503),
            "503 maintenance: later",
            id="503-other-code",
        ),
        pytest.param(
            lambda: web.json_response({"error": "bulkAPIDisabled"}, status=503),
            "503 bulkAPIDisabled",
            id="503-flat-shape",
        ),
        pytest.param(lambda: _html(502), "502: a text/html body", id="502-html"),
        pytest.param(lambda: web.json_response({"ok": True}), "200 instead of 202", id="200"),
        pytest.param(lambda: web.Response(status=202), "202 without a Location header", id="202-no-location"),
    ],
)
async def test_ambiguous_answers_to_a_submission_are_lost(
    canned: tuple[Canned, ApiClient], answer: Any, says: str
) -> None:
    server, client = canned
    server.answer = answer()
    with pytest.raises(SubmissionLost) as caught:
        await client.submit_bulk(OperationType.IMPORT_STATS, INTEGRATION, [])
    assert says in str(caught.value)
    assert "may have been accepted" in str(caught.value)
    assert (server.submissions, server.tokens) == (1, 1)  # never resent, token never renewed


async def test_documented_refusal_shapes_are_not_lost(canned: tuple[Canned, ApiClient]) -> None:
    server, client = canned
    structured = {"error": {"code": "integrationNotFound", "message": "Integration not found"}}
    server.answer = web.json_response(structured, status=404)
    with pytest.raises(ApiError) as caught:
        await client.submit_bulk(OperationType.IMPORT_STATS, INTEGRATION, [])
    assert (caught.value.status, caught.value.code) == (404, "integrationNotFound")
    assert not isinstance(caught.value, ApiUnavailable)
    server.answer = web.json_response({"error": "invalid_scope"}, status=403)
    with pytest.raises(ApiError) as caught:
        await client.submit_bulk(OperationType.IMPORT_STATS, INTEGRATION, [])
    assert (caught.value.status, caught.value.code, type(caught.value)) == (403, "invalid_scope", ApiError)
    assert server.submissions == 2


# -- limits


async def test_rate_limiter_keeps_the_simulator_within_its_limits(sim: Simulator) -> None:
    settings = SimulatorSettings(write_rate=20, read_rate=40, concurrent_operations=50)
    async with running_simulator(settings) as limited:
        limited.state.add_integration(
            _id=INTEGRATION,
            externalPlatform="Acme",
            groupId=GROUP,
            authorId=AUTHOR,
            company_id=DEMO_COMPANY_ID,
        )
        config = make_config(limited.base_url, limits=Limits(requests_per_second=20, reads_per_second=40))
        async with ApiClient(config, backoff=FAST_BACKOFF) as client:
            writes = [client.patch_integration(INTEGRATION, {"defaultProgress": n % 100}) for n in range(29)]
            reads = [client.fetch_integrations() for _ in range(50)]
            await asyncio.gather(*writes, *reads)
        peaks = limited.snapshot()["peaks"]
        assert peaks["writes_per_second"][DEMO_COMPANY_ID] <= 20
        assert peaks["reads_per_second"][DEMO_COMPANY_ID] <= 40
        assert peaks["writes_per_second"][DEMO_COMPANY_ID] >= 10  # the limiter did not just crawl
        assert 429 not in [status for _, status in journal(limited)]
        assert client.requests_sent == {"POST": 1, "PATCH": 29, "GET": 50}


# -- error translation and secrecy


async def test_4xx_bodies_are_translated(api_client: ApiClient, integration: str, sim: Simulator) -> None:
    unknown = "0123456789abcdef01234567"
    with pytest.raises(ApiError) as caught:
        await api_client.submit_bulk(OperationType.IMPORT_COURSES, unknown, [ITEM])
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        404,
        "integrationNotFound",
        False,
    )
    assert f"/api/v2/bulk/integrations/{unknown}/courses -> 404 integrationNotFound" in str(caught.value)

    with pytest.raises(ApiError) as caught:
        await api_client.submit_bulk(OperationType.ARCHIVE_COURSES, integration, [{"externalId": "x"}] * 1001)
    assert (caught.value.status, caught.value.code) == (400, "inputTooLong")

    body = {"externalPlatform": "Acme Academy", "groupId": GROUP, "authorId": AUTHOR}
    with pytest.raises(ApiError) as caught:
        await api_client.create_integration(body)
    assert (caught.value.status, caught.value.code) == (400, "duplicateExternalPlatform")

    location = await api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM])
    with pytest.raises(ApiError) as caught:
        await api_client.fetch_results(location)
    assert (caught.value.status, caught.value.code) == (400, "bulkOperationNotRun")
    assert "has not run yet" in str(caught.value)
    # Every one of them was answered once: 4xx is never retried.
    assert [s for _, s in journal(sim) if s and s >= 400] == [404, 400, 400, 400]


async def test_no_secret_or_token_in_messages_or_reprs(
    api_client: ApiClient, integration: str, sim: Simulator
) -> None:
    messages: list[str] = []
    await api_client.fetch_integrations()
    token = api_client._token
    assert token
    sim.add_faults(
        [
            {"method": "GET", "path": INTEGRATIONS, "count": 2, "expire_tokens": True},
            {"method": "PUT", "path": COURSES, "count": 1, "drop": True},
        ]
    )
    for call in (
        api_client.fetch_integrations(),
        api_client.submit_bulk(OperationType.IMPORT_COURSES, integration, [ITEM]),
        api_client.fetch_operation("0123456789abcdef01234567"),
    ):
        with pytest.raises(ApiError) as caught:
            await call
        messages += [str(caught.value), repr(caught.value)]
    messages.append(repr(api_client))
    assert len(messages) == 7
    for message in messages:
        assert DEMO_CLIENT_SECRET not in message
        assert token not in message
        assert api_client._token is None or api_client._token not in message
