"""The platform checks: API host, credentials, scopes, integrations and limits, without a write.

Every call goes through ``ApiClient`` (the one funnel: token, headers, rate limits), with a short
timeout and no retries, so that an unreachable host answers in seconds. A scope is probed with a
request that cannot change anything: a read of an empty, filtered page, or a write whose body the
platform refuses once the scope check is passed. The documented check order is bearer (401) ->
scope (403) -> rate (429) -> body (400), so a 400 (or a 404 for an unknown integration) means
the scope is granted and a 403 means it is missing (docs/doctor.md, and its caveat: the order is
the documented one, not a promise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

from syncer.api import ApiClient
from syncer.config import Config, IntegrationConfig, Limits
from syncer.doctor.checks import Check, CheckStatus, skipped
from syncer.errors import ApiError
from syncer.models import OperationStatus

__all__ = ["APPLY_SCOPES", "SCOPES", "Answer", "Probe", "ProbeClient", "check_platform"]

TIMEOUT_SECONDS = 5.0
"""At most this long for one request of the doctor: a host that does not answer fails fast."""
HOST, CREDENTIALS, INTEGRATIONS, LIMITS = "API host", "credentials", "integrations", "limits"
_NO_ID = "0" * 24  # a well-formed id that names nothing
_PROBE_MAIL = "syncer-doctor@example.invalid"
_UNFINISHED = (OperationStatus.PENDING, OperationStatus.QUEUED, OperationStatus.RUNNING)


@dataclass(frozen=True)
class Probe:
    """How one scope is tried without changing anything, and what syncer needs it for."""

    scope: str
    purpose: str
    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: Any = None
    note: str = ""  # said in the fix when it is missing


SCOPES: tuple[Probe, ...] = (
    Probe(
        "integrations:read",
        "find the integrations (plan, apply, refresh)",
        "GET",
        "/api/v2/integrations",
        params={"externalPlatform[eq]": "syncer doctor probe"},
    ),
    Probe(
        "integrations:write",
        "create and edit integrations (apply)",
        "POST",
        "/api/v2/integrations",
        body={},  # no required field: refused on its body (400) once the scope is granted
    ),
    Probe(
        "integrations:bulk",
        "send courses and statistics (apply)",
        "POST",
        f"/api/v2/bulk/integrations/{_NO_ID}/stats",
        body={"input": "not an array"},  # refused as invalidInput (400) once the scope is granted
        note="a restricted scope: 360Learning grants it through your Customer Success Partner",
    ),
    Probe(
        "bulkOperations:read",
        "follow the bulk operations to their end and read their results (apply)",
        "GET",
        "/api/v2/bulk/operations",
        params={"status[eq]": "running"},
    ),
    Probe(
        "courses:read",
        "read the courses back (refresh, and apply when it reads an integration back)",
        "GET",
        "/api/v2/courses",
        params={"groupId[eq]": _NO_ID},
    ),
    Probe(
        "courseStats:read",
        "read the attempts back (refresh, and apply when it reads an integration back)",
        "GET",
        "/api/v2/courses/stats",
        params={"courseId[eq]": _NO_ID},
    ),
    Probe(
        "users:read",
        "list the learners (refresh --users, refresh.users)",
        "GET",
        "/api/v2/users",
        params={"mail[eq]": _PROBE_MAIL},
    ),
)
"""Every scope syncer needs (``APPLY_SCOPES``, refresh's ``READ_SCOPES``), in the order they are checked."""
APPLY_SCOPES = ("integrations:read", "integrations:write", "integrations:bulk", "bulkOperations:read")


@dataclass(frozen=True)
class Answer:
    """What the platform answered a probe: its status (None: no answer) and error code."""

    status: int | None
    code: str | None = None
    data: Any = None
    message: str = ""

    @property
    def label(self) -> str:
        """``403 invalid_scope``, or why there was no answer."""
        if self.status is None:
            return self.message or "no answer"
        return f"{self.status} {self.code}" if self.code else str(self.status)


class ProbeClient(ApiClient):
    """The API client with the two calls a doctor needs besides the usual ones."""

    async def check_token(self) -> Answer:
        """Request a new access token now."""
        try:
            await self.renew_token()
        except ApiError as err:
            return Answer(err.status, err.code, message=str(err))
        return Answer(200)

    async def probe(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> Answer:
        """One request (not a submission: a probe never performs anything), its status and code."""
        try:
            status, data = await self.request(method, path, params=params, body=body)
        except ApiError as err:
            return Answer(err.status, err.code, message=str(err))
        return Answer(status, data=data)


def _host(base_url: str) -> str:
    return urlsplit(base_url).netloc.rsplit("@", 1)[-1] or base_url


async def check_platform(
    config: Config, names: Sequence[str], variables: Mapping[str, list[str]]
) -> list[Check]:
    """The host, credentials, scopes, integrations and limits checks, in order."""
    api = replace(
        config.api, timeout_seconds=min(config.api.timeout_seconds, TIMEOUT_SECONDS), retry_seconds=0.0
    )
    base = api.base_url.rstrip("/")
    client = ProbeClient(api)
    async with client:
        token = await client.check_token()
        if token.status is None:
            detail = f"{_host(base)} does not answer at {base}: {token.message}"
            fix = (
                "check api.base_url (or api.region) in the config, and that this machine reaches the host "
                "(DNS, proxy, firewall)",
            )
            blocked = [CREDENTIALS, "scopes", INTEGRATIONS]
            return [
                Check(HOST, CheckStatus.FAIL, detail, fix),
                *skipped(blocked, "API host unreachable"),
                _limits(api.limits, None, "API host unreachable"),
            ]
        checks = [Check(HOST, CheckStatus.OK, f"{_host(base)} answers at {base}")]
        credentials = _credentials(token, config, variables)
        checks.append(credentials)
        if credentials.status is CheckStatus.FAIL:
            blocked = ["scopes", INTEGRATIONS]
            return [
                *checks,
                *skipped(blocked, "credentials refused"),
                _limits(api.limits, None, "credentials refused"),
            ]
        granted: set[str] = set()
        for probe in SCOPES:
            check = _scope(
                probe, await client.probe(probe.method, probe.path, params=probe.params, body=probe.body)
            )
            checks.append(check)
            if check.status is CheckStatus.OK:
                granted.add(probe.scope)
        checks.extend(await _integrations(client, config, names, granted))
        checks.append(await _unfinished(client, api.limits, granted))
    return checks


def _credentials(token: Answer, config: Config, variables: Mapping[str, list[str]]) -> Check:
    api = config.api
    if token.status == 200:
        return Check(CREDENTIALS, CheckStatus.OK, f"client_id {api.client_id} accepted (token issued)")
    if token.status == 401:
        named = [name for key in ("client_id", "client_secret") for name in variables.get(key, [])]
        where = (
            f"the variables named in the config: {', '.join(named)}"
            if named
            else f"under api: in {config.main_file}"
        )
        fix = [f"check client_id/client_secret ({where}): they must be an API v2 credential of this platform"]
        if api.company_id:
            fix.append(f"and company_id {api.company_id}: another company's id is refused too")
        fix.append("the credential may also have been revoked in the platform's API settings")
        fixes = tuple(fix)
        detail = f"the platform refused client_id {api.client_id} and its secret ({token.label})"
        return Check(CREDENTIALS, CheckStatus.FAIL, detail, fixes)
    if token.status == 400:
        fixes = (
            f"check the format of client_id and company_id (24 hex digits) under api: in {config.main_file}",
        )
        return Check(CREDENTIALS, CheckStatus.FAIL, f"the token request was refused ({token.label})", fixes)
    if token.status == 429 or (token.status or 0) >= 500:
        fixes = ("the platform is busy or failing: run syncer doctor again in a few minutes",)
        return Check(CREDENTIALS, CheckStatus.FAIL, f"the token request failed ({token.label})", fixes)
    fixes = (f"check api.base_url in {config.main_file}: it must be the 360Learning host, without a path",)
    return Check(CREDENTIALS, CheckStatus.FAIL, f"the token request answered {token.label}", fixes)


def _scope(probe: Probe, answer: Answer) -> Check:
    name = f"scope {probe.scope}"
    if answer.status is not None and (200 <= answer.status < 300 or answer.status in (400, 404)):
        return Check(name, CheckStatus.OK, f"granted, to {probe.purpose}")
    if answer.status == 403:
        grant = f"grant {probe.scope} to the API credential in the platform's API v2 settings"
        fix = (f"{grant} ({probe.note})" if probe.note else grant, "syncer fetches a new token on each run")
        return Check(name, CheckStatus.FAIL, f"missing ({answer.label}), needed to {probe.purpose}", fix)
    detail = f"could not tell: {probe.method} {probe.path} answered {answer.label}"
    return Check(name, CheckStatus.WARN, detail, ("run syncer doctor again",))


async def _integrations(
    client: ProbeClient, config: Config, names: Sequence[str], granted: set[str]
) -> list[Check]:
    known: list[dict[str, Any]] | None = None
    if "integrations:read" in granted:
        try:
            known = await client.fetch_integrations()
        except ApiError as err:
            return [
                Check(f"integration {n}", CheckStatus.WARN, f"cannot list the integrations: {err}")
                for n in names
            ]
    checks = []
    for name in names:
        integration = config.integrations[name]
        if integration.id is not None:
            checks.append(_by_id(config, integration, known))
        else:
            checks.extend(await _declared(client, config, integration, known))
    return checks


def _cannot(name: str, scope: str) -> Check:
    return Check(name, CheckStatus.WARN, f"cannot check: needs scope {scope}")


def _by_id(config: Config, integration: IntegrationConfig, known: list[dict[str, Any]] | None) -> Check:
    name = f"integration {integration.name}"
    if known is None:
        return _cannot(name, "integrations:read")
    wanted = str(integration.id).lower()
    found = next((item for item in known if str(item.get("_id", "")).lower() == wanted), None)
    if found is None:
        fix = (
            f"fix {integration.name}'s id: in {_file_of(config, integration)}; if it was deleted on the "
            "platform, remove the id and give platform, group and author so that the next apply creates "
            "it again",
        )
        return Check(name, CheckStatus.FAIL, f"no integration {integration.id} on the platform", fix)
    detail = f"found by id {integration.id} ({found.get('externalPlatform')} in group {found.get('groupId')})"
    return Check(name, CheckStatus.OK, detail)


def _file_of(config: Config, integration: IntegrationConfig) -> str:
    """The file that declares ``integration`` (a config directory has several)."""
    return integration.where.rsplit(":", 2)[0] if integration.where else str(config.path)


async def _declared(
    client: ProbeClient, config: Config, integration: IntegrationConfig, known: list[dict[str, Any]] | None
) -> list[Check]:
    label = integration.name
    checks = []
    group, author = str(integration.group), str(integration.author)
    answer = await client.probe("GET", f"/api/v2/groups/{quote(group, safe='')}")
    checks.append(
        _exists(
            f"integration {label}: group",
            f"group {group}",
            answer,
            "groups:read",
            f"fix {label}'s group: in {_file_of(config, integration)}: the id of the group whose catalog "
            "receives the courses",
        )
    )
    answer = await client.probe("GET", f"/api/v2/users/{quote(author, safe='')}")
    checks.append(
        _exists(
            f"integration {label}: author",
            f"author {author}",
            answer,
            "users:read",
            f"fix {label}'s author: in {_file_of(config, integration)}: the id of a user who edits or "
            "administers that group",
        )
    )
    name = f"integration {label}"
    if known is None:
        checks.append(_cannot(name, "integrations:read"))
        return checks
    same = [
        item
        for item in known
        if item.get("externalPlatform") == integration.platform
        and str(item.get("groupId", "")).lower() == group.lower()
    ]
    if same:
        detail = (
            f"{integration.platform!r} exists in group {group} ({same[0].get('_id')}): it will be adopted"
        )
    else:
        detail = f"no {integration.platform!r} in group {group} yet: the next apply creates it"
    checks.append(Check(name, CheckStatus.OK, detail))
    return checks


def _exists(name: str, what: str, answer: Answer, scope: str, fix: str) -> Check:
    if answer.status == 200:
        return Check(name, CheckStatus.OK, f"{what} exists")
    if answer.status == 404:
        return Check(name, CheckStatus.FAIL, f"{what} not found on the platform ({answer.label})", (fix,))
    if answer.status == 403:
        return _cannot(name, scope)
    return Check(name, CheckStatus.WARN, f"could not check {what}: {answer.label}")


def _limits(limits: Limits, unfinished: int | None, why: str) -> Check:
    configured = (
        f"concurrent_operations {limits.concurrent_operations}, requests_per_second "
        f"{limits.requests_per_second:g}, reads_per_second {limits.reads_per_second:g}"
    )
    if unfinished is None:
        return Check(LIMITS, CheckStatus.OK, f"{configured}; unfinished bulk operations not read ({why})")
    detail = (
        f"{configured}; {unfinished} bulk operation{'s' * (unfinished != 1)} unfinished on the platform now"
    )
    if unfinished >= limits.concurrent_operations:
        fix = (
            "another tool (or a run) is using the bulk API: the next apply waits for some to end; "
            "lower concurrent_operations if that tool runs often",
        )
        return Check(LIMITS, CheckStatus.WARN, detail, fix)
    return Check(LIMITS, CheckStatus.OK, detail)


async def _unfinished(client: ProbeClient, limits: Limits, granted: set[str]) -> Check:
    if "bulkOperations:read" not in granted:
        return _limits(limits, None, "needs scope bulkOperations:read")
    count = 0
    try:
        for status in _UNFINISHED:
            count += len([op async for op in client.fetch_operations(status=status)])
    except ApiError as err:
        return _limits(limits, None, str(err))
    return _limits(limits, count, "")
