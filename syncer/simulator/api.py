"""The simulated /api/v2 endpoints: token, integrations, bulk submissions and operations.

Check order of every call (reference §9, UNDOCUMENTED where the documents are silent):
bearer (401) -> ``360-api-version`` (400) -> scope (403) -> rate (429 flat) -> body (400)
-> ``integrationNotFound`` (404) -> concurrency (429 structured) -> 202.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import orjson
from aiohttp import web

from syncer.models import OperationStatus, OperationType
from syncer.simulator import rules
from syncer.simulator.state import Principal, SimState

STATE = web.AppKey("sim_state", SimState)
UNDOCUMENTED = web.ResponseKey("sim_undocumented", str)

READ, WRITE, BULK, OPS = "integrations:read", "integrations:write", "integrations:bulk", "bulkOperations:read"
# UNDOCUMENTED: the reserved platform names are not published; the simulator reserves these.
RESERVED_PLATFORMS = frozenset({"360learning"})
SUBMIT_ROUTES = ("/api/v2/bulk/integrations/",)


class Reply(Exception):
    """A finished response raised from deep inside a handler (an error answer)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(
    status: int,
    body: Any,
    *,
    undocumented: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON response; ``undocumented`` labels a status or shape the official documents lack."""
    response = web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
    if undocumented:
        response[UNDOCUMENTED] = undocumented
    return response


def error(status: int, code: str, message: str, *, undocumented: str | None = None) -> Reply:
    """A structured error ``{"error": {"code", "message"}}`` ready to raise."""
    body = {"error": {"code": code, "message": message}}
    return Reply(json_response(status, body, undocumented=undocumented))


def flat(status: int, code: str, *, undocumented: str | None = None) -> Reply:
    """A flat error ``{"error": code}`` ready to raise."""
    return Reply(json_response(status, {"error": code}, undocumented=undocumented))


def state_of(request: web.Request) -> SimState:
    """The simulator state behind a request."""
    return request.app[STATE]


def guard(request: web.Request, scope: str, *, write: bool) -> Principal:
    """Check token, version header, scope and rate; return who is calling."""
    state = state_of(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    principal = state.principal(token.strip()) if scheme.lower() == "bearer" else None
    if principal is None:
        raise flat(401, "invalid_token")
    if request.headers.get("360-api-version") != "v2.0":
        # UNDOCUMENTED: a missing or wrong 360-api-version header gets 400 invalidApiVersion.
        raise error(
            400,
            "invalidApiVersion",
            "Header 360-api-version must be v2.0",
            undocumented="missing or wrong 360-api-version header",
        )
    if scope not in principal.scopes:
        raise error(403, "invalid_scope", f"This call needs the scope {scope}")
    if not state.count_request(principal.company_id, write):
        submit = request.path.startswith(SUBMIT_ROUTES)
        # UNDOCUMENTED: the write rate also applies to bulk submissions (stats guide), where the
        # specification declares no tooManyRequests.
        raise flat(429, "tooManyRequests", undocumented="write rate on a bulk submit" if submit else None)
    return principal


async def json_body(request: web.Request, bad: Callable[[str], Reply]) -> Any:
    """The request's JSON body; ``bad(message)`` is raised when it is not JSON."""
    # UNDOCUMENTED: a body without Content-Type application/json is refused like malformed JSON.
    if request.content_type != "application/json":
        raise bad("the body must be JSON (Content-Type: application/json)")
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise bad("the body is not valid JSON") from exc


def invalid(message: str) -> Reply:
    """The labelled 400 ``invalidInput`` of a core endpoint, ready to raise."""
    # UNDOCUMENTED: core endpoints declare no code for a body or query that violates the schema.
    return error(400, "invalidInput", message, undocumented="schema violation on a core endpoint")


# -- token ---------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate property")
    return dict(pairs)


async def token(request: web.Request) -> web.Response:
    """POST /api/v2/oauth2/token: client credentials for an opaque bearer token."""
    state = state_of(request)
    if request.content_type != "application/json":
        raise flat(400, "invalid_request")
    try:
        body = json.loads(await request.read(), object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # also UnicodeDecodeError and JSONDecodeError
        raise flat(400, "invalid_request") from exc
    if not isinstance(body, dict):
        raise flat(400, "invalid_request")
    grant = body.get("grant_type")
    if rules.problem("core", "GenerateTokenBody", {**body, "grant_type": "client_credentials"}):
        raise flat(400, "invalid_request")
    if grant != "client_credentials":
        raise flat(400, "unsupported_grant_type")
    client = state.client(body["client_id"])
    secret_ok = client is not None and hmac.compare_digest(
        client.client_secret.encode(), str(body["client_secret"]).encode()
    )
    if client is None or not secret_ok:
        raise flat(401, "invalid_client")
    if "company_id" in body and body["company_id"].lower() != client.company_id.lower():
        # UNDOCUMENTED: a company_id other than the credential's own is refused as invalid_client.
        raise flat(401, "invalid_client")
    # UNDOCUMENTED: any well-formed user_id is accepted (tokens act for the company; not checked
    # against the users).
    lifetime = state.settings.token_lifetime
    return json_response(
        200,
        {
            "token_type": "Bearer",
            "access_token": state.issue_token(client),
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
        },
    )


# -- pagination ----------------------------------------------------------------------------


def _encode_cursor(kind: str, filters: dict[str, Any], after: int) -> str:
    raw = orjson.dumps({"k": kind, "f": filters, "a": after})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(kind: str, value: str) -> tuple[dict[str, Any], int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if data["k"] != kind or not isinstance(data["f"], dict) or not isinstance(data["a"], int):
            raise ValueError(kind)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise invalid("the next token is not valid") from exc
    return data["f"], data["a"]


def page(
    request: web.Request,
    kind: str,
    rows: list[tuple[int, dict[str, Any]]],
    filters: dict[str, Any],
    after: int,
    size: int,
) -> web.Response:
    """One page of (sequence, DTO) rows past the cursor ``after``, by ascending sequence."""
    ordered = sorted((row for row in rows if row[0] > after), key=lambda row: row[0])
    return page_of(request, kind, iter(ordered), filters, size)


def page_of(
    request: web.Request,
    kind: str,
    rows: Iterator[tuple[int, dict[str, Any]]],
    filters: dict[str, Any],
    size: int,
) -> web.Response:
    """One page from (sequence, DTO) rows already past the cursor and in order; reads
    ``size + 1`` of them at most (to know whether a next page exists), so they may be lazy."""
    taken = list(islice(rows, size + 1))
    headers = {}
    if len(taken) > size:
        cursor = _encode_cursor(kind, filters, taken[size - 1][0])
        url = request.url.origin().with_path(request.path).with_query({"next": cursor})
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(200, [dto for _, dto in taken[:size]], headers=headers)


def query(request: web.Request, allowed: dict[str, set[str]]) -> tuple[dict[str, Any], int]:
    """Filters from ``name[op]`` query keys (or the ``next`` token) and the cursor position."""
    query = request.query
    if "next" in query:
        if len(query) > 1:
            # UNDOCUMENTED: `next` carries the filters; other parameters beside it are refused.
            raise invalid("next cannot be combined with other query parameters")
        return _decode_cursor(request.path, query["next"])
    filters: dict[str, Any] = {}
    for key in query:
        name, _, rest = key.partition("[")
        op = rest.split("]", 1)[0]
        if name not in allowed or op not in allowed[name] or not key.startswith(f"{name}[{op}]"):
            raise invalid(f"unknown query parameter {key!r}")
        values = query.getall(key)
        if op in ("in", "nin"):
            # UNDOCUMENTED: arrays are read from repeated keys: k[in]=a&k[in]=b (also k[in][]=a).
            filters.setdefault(f"{name}[{op}]", []).extend(values)
        elif len(values) != 1 or key != f"{name}[{op}]":
            raise invalid(f"query parameter {key!r} must be given once")
        else:
            filters[key] = values[0]
    return filters, 0


# -- integrations --------------------------------------------------------------------------


async def list_integrations(request: web.Request) -> web.Response:
    """GET /api/v2/integrations: 100 per page, externalPlatform[eq|ne|in|nin] filters."""
    principal = guard(request, READ, write=False)
    filters, after = query(request, {"externalPlatform": {"eq", "ne", "in", "nin"}})
    rows = []
    for seq, dto in state_of(request).company_integrations(principal.company_id):
        platform = dto["externalPlatform"]
        if "externalPlatform[eq]" in filters and platform != filters["externalPlatform[eq]"]:
            continue
        if "externalPlatform[ne]" in filters and platform == filters["externalPlatform[ne]"]:
            continue
        if "externalPlatform[in]" in filters and platform not in filters["externalPlatform[in]"]:
            continue
        if "externalPlatform[nin]" in filters and platform in filters["externalPlatform[nin]"]:
            continue
        rows.append((seq, dto))
    # UNDOCUMENTED: integrations are listed oldest first.
    return page(request, request.path, rows, filters, after, 100)


def _check_group_and_author(state: SimState, integration: dict[str, Any]) -> None:
    # UNDOCUMENTED: checked after the body and before the platform name; the group first. While
    # groups or authors are not modelled (settings), every well-formed id exists.
    if "groupId" in integration and not state.group_exists(integration["groupId"]):
        raise error(404, "groupNotFound", "Group not found")
    if "authorId" in integration and state.user_of_id(integration["authorId"]) is None:
        raise error(404, "userNotFound", "User not found")


def _check_platform(
    state: SimState, company_id: str, integration: dict[str, Any], own_id: str | None
) -> None:
    if integration["externalPlatform"].strip().lower() in RESERVED_PLATFORMS:
        raise error(400, "reservedPlatformName", "This platform name is reserved")
    for _seq, other in state.company_integrations(company_id):
        same = (other["groupId"].lower(), other["externalPlatform"]) == (
            integration["groupId"].lower(),
            integration["externalPlatform"],
        )
        if same and other["_id"] != own_id:
            raise error(400, "duplicateExternalPlatform", "This platform is already integrated in this group")


async def create_integration(request: web.Request) -> web.Response:
    """POST /api/v2/integrations: 201 with the new IntegrationDTO."""
    principal = guard(request, WRITE, write=True)
    state = state_of(request)
    body = await json_body(request, invalid)
    problem = rules.problem("core", "BaseIntegrationDTO", body)
    if problem:
        raise invalid(problem)
    with state.locked():
        _check_platform(state, principal.company_id, body, None)
        if len(state.company_integrations(principal.company_id)) >= state.settings.integrations_limit:
            raise error(400, "integrationsLimitReached", "The company has too many integrations")
        _check_group_and_author(state, body)
        integration = {"_id": state.new_id(), **body}
        state.store_integration(integration, principal.company_id)
    return json_response(201, integration)


def _own_integration(request: web.Request, principal: Principal) -> dict[str, Any]:
    found = state_of(request).integration(principal.company_id, request.match_info["integrationId"])
    if found is None:
        # UNDOCUMENTED: a malformed id, or another company's integration, is integrationNotFound.
        raise error(404, "integrationNotFound", "Integration not found")
    return found


async def patch_integration(request: web.Request) -> web.Response:
    """PATCH /api/v2/integrations/{integrationId}: 200 with the updated integration."""
    principal = guard(request, WRITE, write=True)
    state = state_of(request)
    current = _own_integration(request, principal)
    body = await json_body(request, invalid)
    problem = rules.problem("core", "PatchIntegrationDTO", body)
    if problem:
        raise invalid(problem)
    with state.locked():
        updated = {**current, **body}
        _check_group_and_author(state, body)
        _check_platform(state, principal.company_id, updated, current["_id"])
        state.store_integration(updated, principal.company_id)
    return json_response(200, updated)


async def delete_integration(request: web.Request) -> web.Response:
    """DELETE /api/v2/integrations/{integrationId}: 204; its courses are archived."""
    principal = guard(request, WRITE, write=True)
    current = _own_integration(request, principal)
    if current["externalPlatform"].strip().lower() in RESERVED_PLATFORMS:
        raise error(400, "reservedPlatformName", "This platform name is reserved")
    state_of(request).delete_integration(current["_id"])
    return web.Response(status=204)


async def get_course(request: web.Request) -> web.Response:
    """GET /api/v2/integrations/{integrationId}/courses/{externalId}: ExternalCourseResponseDTO."""
    principal = guard(request, READ, write=False)
    integration = _own_integration(request, principal)
    course = state_of(request).courses.get((integration["_id"], request.match_info["externalId"]))
    if course is None:
        # UNDOCUMENTED: a never-imported externalId answers 400 courseNotBelongToIntegration.
        raise error(400, "courseNotBelongToIntegration", "This course does not belong to the integration")
    # UNDOCUMENTED: an archived course is still returned.
    body = {
        **course["course"],
        "authorId": course["course"].get("authorId", integration["authorId"]),
        "courseId": course["courseId"],
        "translations": course["course"].get("translations", []),
    }
    return json_response(200, body)


# -- bulk submissions ----------------------------------------------------------------------


def _submitter(op_type: OperationType, limit: Callable[[SimState], int]) -> Any:
    async def submit(request: web.Request) -> web.Response:
        principal = guard(request, BULK, write=True)
        state = state_of(request)

        def bad(message: str) -> Reply:
            return error(400, "invalidInput", message)

        body = await json_body(request, bad)
        if not isinstance(body, dict) or not isinstance(body.get("input"), list):
            raise bad("input must be an array")
        if set(body) != {"input"}:
            # UNDOCUMENTED: properties beside `input` are refused as invalidInput.
            raise bad(f"unknown body properties: {sorted(set(body) - {'input'})}")
        items: list[Any] = body["input"]
        if len(items) > limit(state):
            raise error(400, "inputTooLong", f"input must not have more than {limit(state)} items")
        # UNDOCUMENTED: an empty input is accepted (no minItems) and completes with no results.
        integration = _own_integration(request, principal)
        if integration["externalPlatform"].strip().lower() in RESERVED_PLATFORMS:
            raise error(400, "reservedPlatformName", "This platform name is reserved")
        with state.locked():
            # UNDOCUMENTED: every unfinished operation (pending, queued, running) counts.
            if state.unfinished(principal.company_id) >= state.settings.concurrent_operations:
                raise error(
                    429,
                    "bulkOperationsConcurrencyLimitReached",
                    f"At most {state.settings.concurrent_operations} bulk operations may run at once",
                )
            taken = state.faults.take(request.method, request.path, submission=True)
            fail = taken[0].message if taken else None
            op = state.submit(principal.company_id, integration["_id"], op_type, items, fail)
        location = request.url.origin().with_path(f"/api/v2/bulk/operations/{op.op_id}")
        return web.Response(status=202, headers={"Location": str(location)})

    return submit


import_courses = _submitter(OperationType.IMPORT_COURSES, lambda s: s.settings.max_course_items)
archive_courses = _submitter(OperationType.ARCHIVE_COURSES, lambda s: s.settings.max_archive_items)
import_stats = _submitter(OperationType.IMPORT_STATS, lambda s: s.settings.max_stat_items)


# -- operations ----------------------------------------------------------------------------


def _own_operation(request: web.Request, principal: Principal) -> Any:
    op = state_of(request).operation(principal.company_id, request.match_info["bulkOperationId"])
    if op is None:
        raise error(404, "bulkOperationNotFound", "Bulk operation not found")
    return op


async def get_operation(request: web.Request) -> web.Response:
    """GET /api/v2/bulk/operations/{bulkOperationId}: one of the five status DTOs."""
    principal = guard(request, OPS, write=False)
    op = _own_operation(request, principal)
    return json_response(200, op.dto(state_of(request).clock.now()))


async def get_results(request: web.Request) -> web.Response:
    """GET /api/v2/bulk/operations/{bulkOperationId}/results: per-item results once ended."""
    principal = guard(request, OPS, write=False)
    state = state_of(request)
    with state.locked():
        op = _own_operation(request, principal)
        if op.status(state.clock.now()) not in (OperationStatus.COMPLETED, OperationStatus.ERROR):
            raise error(400, "bulkOperationNotRun", "The bulk operation has not run yet")
        # UNDOCUMENTED: results come in input order, one per item.
        return json_response(200, list(op.results))


_OP_TYPES = set(
    rules.spec()["bulk"]["components"]["schemas"]["PendingOperationDTO"]["properties"]["type"]["enum"]
)


def filter_time(value: str) -> float:
    """A date-time filter value as epoch seconds, its milliseconds forced to 0 (documented)."""
    try:
        moment = rules.parse_time(value)
    except ValueError as exc:
        raise invalid(f"{value!r} is not an ISO 8601 date-time with a zone") from exc
    return moment.replace(microsecond=0).timestamp()  # documented: milliseconds forced to 0


async def list_operations(request: web.Request) -> web.Response:
    """GET /api/v2/bulk/operations: 20 per page, createdAt/status/type filters, oldest first."""
    principal = guard(request, OPS, write=False)
    state = state_of(request)
    filters, after = query(request, {"createdAt": {"gte", "lt"}, "status": {"eq"}, "type": {"eq"}})
    gte = filter_time(filters["createdAt[gte]"]) if "createdAt[gte]" in filters else None
    lt = filter_time(filters["createdAt[lt]"]) if "createdAt[lt]" in filters else None
    status = filters.get("status[eq]")
    if status is not None and status not in {str(s) for s in OperationStatus} - {"prepared"}:
        raise invalid(f"unknown status {status!r}")
    op_type = filters.get("type[eq]")
    if op_type is not None and op_type not in _OP_TYPES:
        raise invalid(f"unknown type {op_type!r}")
    rows = []
    with state.locked():
        now = state.clock.now()
        for op in state.operations.values():
            created = int(op.created * 1000) / 1000  # the reported createdAt (ms precision)
            if op.company_id != principal.company_id:
                continue
            if (gte is not None and created < gte) or (lt is not None and created >= lt):
                continue
            if status is not None and str(op.status(now)) != status:
                continue
            if op_type is not None and str(op.type) != op_type:
                continue
            rows.append((op.seq, op.dto(now)))
    # UNDOCUMENTED: operations are listed by createdAt ascending (oldest first).
    return page(request, request.path, rows, filters, after, 20)
