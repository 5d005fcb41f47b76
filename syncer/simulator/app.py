"""The aiohttp application: routes, the fault/journal middleware, the control API, observers.

Every /api response is reported as an ``Exchange`` to the ``on_response`` callback given to
``create_app`` and to every process-wide observer (``add_observer``): the test suite's
conformance check listens there. A dropped answer is not reported; under a ``gateway`` fault the
platform's own answer is reported, not the HTML page that stands in for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from syncer.simulator import api, reads, rules
from syncer.simulator.faults import FaultRule, FaultRuleError, build_fault_rule
from syncer.simulator.learners import USER_STATUSES
from syncer.simulator.settings import SimulatorSettings
from syncer.simulator.state import SimState


@dataclass(frozen=True)
class Exchange:
    """One answered /api request, as the conformance check sees it.

    ``route`` is the matched path template (``/api/v2/bulk/operations/{bulkOperationId}``) or
    None; ``undocumented`` names why a status or shape is outside the official documents.
    """

    method: str
    path: str
    route: str | None
    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    undocumented: str | None = None


Observer = Callable[[Exchange], None]
_OBSERVERS: list[Observer] = []
ON_RESPONSE = web.AppKey("sim_on_response", list[Observer])


def add_observer(observer: Observer) -> None:
    """Report every /api exchange of every simulator in this process to ``observer`` (tests)."""
    _OBSERVERS.append(observer)


def remove_observer(observer: Observer) -> None:
    """Stop reporting to ``observer``."""
    with contextlib.suppress(ValueError):
        _OBSERVERS.remove(observer)


def _fault_response(rule: FaultRule, path: str) -> web.Response:
    headers = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after is not None else None
    # UNDOCUMENTED: an injected 500 has the structured shape with code internalServerError.
    label = f"injected fault: status {rule.status}"
    if rule.status == 429:
        submit = path.startswith(api.SUBMIT_ROUTES)
        if (rule.shape or ("structured" if submit else "flat")) == "flat":
            body: Any = {"error": "tooManyRequests"}
        else:
            body = {"error": {"code": "bulkOperationsConcurrencyLimitReached", "message": rule.message}}
    elif rule.status == 503:
        body = {"error": {"code": "bulkAPIDisabled", "message": rule.message}}
    elif rule.code is not None:
        body = {"error": {"code": rule.code, "message": rule.message}}
    else:
        body = {"error": {"code": "internalServerError", "message": rule.message}}
    return api.json_response(rule.status or 500, body, undocumented=label, headers=headers)


def _gateway_response(status: int) -> web.Response:
    """What a reverse proxy in front of the platform answers when it loses the upstream answer."""
    reason = http.HTTPStatus(status).phrase
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>gateway</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


def _route_of(request: web.Request) -> str | None:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or isinstance(request.match_info.http_exception, web.HTTPException):
        return None
    return resource.canonical


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    state = request.app[api.STATE]
    state.tick()
    response: web.StreamResponse | None = None
    drop = False
    gateway: int | None = None
    reverse = False
    for rule in state.faults.take(request.method, request.path, submission=False):
        reverse = reverse or rule.reverse_results
        if rule.delay is not None:
            await asyncio.sleep(rule.delay)
        if rule.expire_tokens:
            state.expire_tokens()
        drop = drop or rule.drop
        gateway = gateway or rule.gateway
        if rule.status is not None and response is None:
            response = _fault_response(rule, request.path)
    if response is None:
        try:
            response = await handler(request)
        except api.Reply as reply:
            response = reply.response
        except ConnectionResetError:
            # The client went away while sending its request: it was never complete, nothing was
            # performed, and nobody is left to answer; it is not journaled.
            return web.Response(status=400)
        except web.HTTPException as exc:
            # UNDOCUMENTED: unknown routes and methods answer 404 notFound / 405 methodNotAllowed.
            response = api.json_response(
                exc.status,
                {
                    "error": {
                        "code": "notFound" if exc.status == 404 else "methodNotAllowed",
                        "message": exc.reason,
                    }
                },
                undocumented="no such route or method",
            )
    if reverse and isinstance(response, web.Response) and response.status == 200 and response.body:
        answer = orjson.loads(bytes(response.body))  # type: ignore[arg-type]
        if isinstance(answer, list):
            response = api.json_response(200, answer[::-1])
    if gateway is not None and not drop:
        # The request was performed and the platform answered (that answer is what observers
        # check); a proxy in front of it lost that answer and sends its own HTML error page.
        _report(request, response)
        state.record(request.method, request.path, gateway)
        return _gateway_response(gateway)
    state.record(request.method, request.path, None if drop else response.status)
    if drop:
        # The request was performed; the answer is lost: close the connection without a reply.
        if request.transport is not None:
            request.transport.abort()
        return response  # aiohttp cannot write it to the aborted transport and lets it go
    _report(request, response)
    return response


def _report(request: web.Request, response: web.StreamResponse) -> None:
    body = response.body if isinstance(response, web.Response) else b""
    exchange = Exchange(
        method=request.method,
        path=request.path,
        route=_route_of(request),
        status=response.status,
        headers=dict(response.headers),
        body=bytes(body) if isinstance(body, bytes | bytearray) else b"",
        undocumented=response.get(api.UNDOCUMENTED),
    )
    for observer in [*request.app[ON_RESPONSE], *_OBSERVERS]:
        observer(exchange)


# -- control API (no auth) -----------------------------------------------------------------


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400, dumps=lambda v: orjson.dumps(v).decode())


async def _read_json(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise api.Reply(_control_error(f"the body is not valid JSON: {exc}")) from exc


async def _control(request: web.Request) -> web.Response:
    try:
        return await _dispatch_control(request)
    except api.Reply as reply:
        return reply.response


async def _dispatch_control(request: web.Request) -> web.Response:
    state = request.app[api.STATE]
    action = request.match_info["action"]
    dumps: Callable[[Any], str] = lambda v: orjson.dumps(v).decode()  # noqa: E731
    if request.method == "GET" and action == "state":
        return web.json_response(state.snapshot(), dumps=dumps)
    if request.method == "POST" and action == "faults":
        data = await _read_json(request)
        try:
            add_faults(state, data if isinstance(data, list) else [data])
        except FaultRuleError as exc:
            return _control_error(str(exc))
        return web.json_response({"faults": state.faults.as_json()}, dumps=dumps)
    if request.method == "DELETE" and action == "faults":
        state.faults.clear()
        return web.json_response({"faults": []}, dumps=dumps)
    if request.method == "POST" and action == "reset":
        state.reset()
        return web.json_response({"reset": True}, dumps=dumps)
    if request.method == "POST" and action == "advance":
        data = await _read_json(request)
        seconds = data.get("seconds") if isinstance(data, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return _control_error('give {"seconds": N} with N >= 0')
        state.clock.advance(float(seconds))
        state.tick()
        return web.json_response({"now": state.snapshot()["now"]}, dumps=dumps)
    if request.method == "POST" and action == "integrations":
        data = await _read_json(request)
        if not isinstance(data, dict):
            return _control_error("give the integration as a JSON object")
        unknown = set(data) - _SEEDABLE
        if unknown:
            return _control_error(f"unknown integration keys: {sorted(unknown)}")
        created = state.add_integration(**data)
        return web.json_response(created, status=201, dumps=dumps)
    if request.method == "POST" and action == "users":
        data = await _read_json(request)
        problem = _users_problem(data)
        if problem:
            return _control_error(problem)
        added = [state.add_user(**entry).dto() for entry in data]
        return web.json_response(added, status=201, dumps=dumps)
    if request.method == "POST" and action == "groups":
        data = await _read_json(request)
        problem = _groups_problem(data)
        if problem:
            return _control_error(problem)
        state.declare(data.get("groups", ()), data.get("authors", ()))
        known = {"groups": state.groups, "authors": state.authors}
        return web.json_response({k: None if v is None else sorted(v) for k, v in known.items()}, dumps=dumps)
    if request.method == "POST" and action == "launch":
        data = await _read_json(request)
        keys = {"integrationId", "externalId", "mail"}
        if not isinstance(data, dict) or set(data) != keys or not all(isinstance(data[k], str) for k in keys):
            return _control_error('give {"integrationId": ..., "externalId": ..., "mail": ...} (strings)')
        outcome = state.launch(data["integrationId"], data["externalId"], data["mail"])
        if isinstance(outcome, str):
            return _control_error(outcome)
        attempt, opened = outcome
        return web.json_response(attempt, status=201 if opened else 200, dumps=dumps)
    return web.json_response({"error": f"no control action {request.method} {action}"}, status=404)


def _users_problem(data: Any) -> str | None:
    """What is wrong with a ``POST /_sim/users`` body (a list of {mail, status?, username?})."""
    if not isinstance(data, list):
        return 'give a JSON list of {"mail": ..., "status"?: ..., "username"?: ...}'
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("mail"), str) or not entry["mail"].strip():
            return f"user {index}: give an object with a non-empty mail"
        unknown = set(entry) - {"mail", "status", "username"}
        if unknown:
            return f"user {index}: unknown keys {sorted(unknown)}"
        if "status" in entry and entry["status"] not in USER_STATUSES:
            return f"user {index}: status must be one of {', '.join(USER_STATUSES)}"
        if "username" in entry and not (isinstance(entry["username"], str) and entry["username"]):
            return f"user {index}: username must be a non-empty string"
    return None


def _groups_problem(data: Any) -> str | None:
    """What is wrong with a ``POST /_sim/groups`` body ({"groups"?: [id], "authors"?: [id]})."""
    if not isinstance(data, dict) or set(data) - {"groups", "authors"}:
        return 'give {"groups"?: [id, ...], "authors"?: [id, ...]}'
    for key, ids in data.items():
        if not isinstance(ids, list) or not all(rules.is_object_id(i) for i in ids):
            return f"{key}: give a list of 24-hex ids"
    return None


_SEEDABLE = {
    *rules.spec()["core"]["components"]["schemas"]["IntegrationDTO"]["properties"],
    "company_id",
}


def add_faults(state: SimState, given: list[Any]) -> list[FaultRule]:
    """Validate fault rules (JSON form or FaultRule) and activate them.

    An ``expire_tokens`` rule without method/path/path_regex acts at once instead of waiting
    for a matching request.
    """
    built = [rule if isinstance(rule, FaultRule) else build_fault_rule(rule) for rule in given]
    waiting = []
    for rule in built:
        unmatched = rule.method is None and rule.path is None and rule.path_regex is None
        if rule.expire_tokens and unmatched:
            state.expire_tokens()
        else:
            waiting.append(rule)
    state.faults.add(waiting)
    return built


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    state = app[api.STATE]

    async def run() -> None:
        # Operations advance even when nobody calls: /_sim/state and Python readers see it.
        while True:
            state.tick()
            await asyncio.sleep(state.settings.tick_seconds)

    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: SimulatorSettings | None = None,
    *,
    state: SimState | None = None,
    on_response: Observer | None = None,
) -> web.Application:
    """The simulator as an aiohttp application (serve it with a runner or ``aiohttp_server``)."""
    settings = settings or SimulatorSettings()
    # UNDOCUMENTED: the request byte limit. 10,000 items are ~3 MB of JSON; aiohttp's default
    # (1 MB) would refuse full batches with 413.
    app = web.Application(middlewares=[_middleware], client_max_size=64 * 1024 * 1024)
    app[api.STATE] = state or SimState(settings)
    app[ON_RESPONSE] = [on_response] if on_response else []
    app.cleanup_ctx.append(_ticker)
    r = app.router
    r.add_post("/api/v2/oauth2/token", api.token)
    r.add_get("/api/v2/integrations", api.list_integrations, allow_head=False)
    r.add_post("/api/v2/integrations", api.create_integration)
    r.add_patch("/api/v2/integrations/{integrationId}", api.patch_integration)
    r.add_delete("/api/v2/integrations/{integrationId}", api.delete_integration)
    r.add_get("/api/v2/integrations/{integrationId}/courses/{externalId}", api.get_course, allow_head=False)
    r.add_get("/api/v2/courses", reads.list_courses, allow_head=False)
    r.add_get("/api/v2/courses/stats", reads.list_course_stats, allow_head=False)
    r.add_put("/api/v2/courses/{courseId}/archive", reads.archive_course)
    r.add_get("/api/v2/users", reads.list_users, allow_head=False)
    r.add_get("/api/v2/users/{userId}", reads.get_user, allow_head=False)
    r.add_get("/api/v2/groups/{groupId}", reads.get_group, allow_head=False)
    r.add_put("/api/v2/bulk/integrations/{integrationId}/courses", api.import_courses)
    r.add_delete("/api/v2/bulk/integrations/{integrationId}/courses", api.archive_courses)
    r.add_post("/api/v2/bulk/integrations/{integrationId}/stats", api.import_stats)
    r.add_get("/api/v2/bulk/operations", api.list_operations, allow_head=False)
    r.add_get("/api/v2/bulk/operations/{bulkOperationId}", api.get_operation, allow_head=False)
    r.add_get("/api/v2/bulk/operations/{bulkOperationId}/results", api.get_results, allow_head=False)
    r.add_route("*", "/_sim/{action}", _control)
    return app
