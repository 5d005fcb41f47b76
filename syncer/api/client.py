"""The 360Learning API v2 client: token, headers, rate limits, timeout, retries, error translation.

Everything goes through one funnel (``ApiClient._request``) wrapped by one retry loop
(``ApiClient._call``). aiohttp and timeout errors are translated here, at the seam:

- network errors, timeouts, 429 and 5xx -> ``ApiUnavailable`` (retried with jittered exponential
  backoff, honouring ``Retry-After``, within ``ApiConfig.retry_seconds``);
- other 4xx -> ``ApiError`` carrying the API's ``code`` and message (both error body shapes).

A submission (a bulk POST/PUT/DELETE, or creating an integration) is stricter, because sending it
twice performs it twice. Only its success status means accepted, and only a documented refusal
means not performed: 429, 503 with the ``bulkAPIDisabled`` body, or another 4xx with one of the two
documented error bodies. Every other answer (another 5xx, a proxy's HTML page, an unexpected 2xx, a
202 without ``Location``) and a timeout or reset after sending raise ``SubmissionLost``: never
retried blindly, the caller looks for it among recent operations first (docs/reliability.md).

The access token lives in memory only, is renewed ahead of expiry and once after a 401, and
never appears in any message or repr.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from yarl import URL

from syncer.api.pacing import Backoff, RateLimiter, retry_after
from syncer.config import ApiConfig
from syncer.errors import ApiError, ApiUnavailable, SubmissionLost, SyncerError
from syncer.models import OperationStatus, OperationType, Payloads

__all__ = ["ApiClient", "operation_id"]

log = logging.getLogger(__name__)

API_VERSION = "v2.0"
TOKEN_PATH = "/api/v2/oauth2/token"
INTEGRATIONS_PATH = "/api/v2/integrations"
OPERATIONS_PATH = "/api/v2/bulk/operations"
COURSES_PATH = "/api/v2/courses"
COURSE_STATS_PATH = "/api/v2/courses/stats"
USERS_PATH = "/api/v2/users"
Params = Mapping[str, str] | Sequence[tuple[str, str]]
"""Query parameters: a mapping, or pairs where a filter takes an array (``courseId[in]`` repeated)."""

# Method and path suffix of each bulk submission (bulk-api.json).
_BULK_ROUTES: Mapping[OperationType, tuple[str, str]] = {
    OperationType.IMPORT_COURSES: ("PUT", "courses"),
    OperationType.IMPORT_STATS: ("POST", "stats"),
    OperationType.ARCHIVE_COURSES: ("DELETE", "courses"),
}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Renew the token this long before it expires (capped at a tenth of its lifetime for short tokens).
_TOKEN_MARGIN_SECONDS = 60.0


def operation_id(location: str) -> str:
    """The bulk operation id at the end of a ``Location`` URL (or the id itself)."""
    path = urlsplit(location).path if "/" in location else location
    segments = [s for s in path.split("/") if s]
    if segments and segments[-1] == "results":
        segments.pop()
    if not segments:
        raise ApiError(f"not a bulk operation location: {location!r}")
    return segments[-1]


def _iso_seconds(moment: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss.000Z`` in UTC: the API forces filter milliseconds to 0."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error_of(data: Any, text: str) -> tuple[str | None, str]:
    """``(code, message)`` from either error shape: flat ``{"error": code}`` or structured."""
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping):
            code = error.get("code")
            message = error.get("message")
            return (str(code) if code is not None else None), str(message or code or "")
        if isinstance(error, str):
            message = data.get("message") or data.get("error_description") or error
            return error, str(message)
    return None, text.strip()[:200]


@dataclass(frozen=True)
class _Response:
    """What the funnel keeps of one HTTP answer."""

    status: int
    data: Any
    location: str | None
    next_url: str | None


class ApiClient:
    """Async client of the 360Learning API v2; use as ``async with ApiClient(api) as client``."""

    answers_429: ClassVar[int] = 0
    """429 answers received by every client of this process (a run's metrics take the difference)."""

    def __init__(
        self,
        api: ApiConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._api = api
        self._base = api.base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._backoff = backoff or Backoff()
        self._writes = RateLimiter(api.limits.requests_per_second)
        self._reads = RateLimiter(api.limits.reads_per_second)
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = asyncio.Lock()
        self._sent: Counter[str] = Counter()
        self._pacer: Callable[[], Awaitable[None]] | None = None
        self._concurrency_refusals = 0

    def __repr__(self) -> str:
        return f"ApiClient(base_url={_redacted(self._base)!r})"

    async def __aenter__(self) -> ApiClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            self._owns_session = True
        _no_hidden_retries(self._session)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def requests_sent(self) -> dict[str, int]:
        """HTTP requests sent so far (every attempt, token requests included), by method."""
        return dict(self._sent)

    @property
    def concurrency_refusals(self) -> int:
        """Submissions refused so far because the platform had its unfinished operations at its limit."""
        return self._concurrency_refusals

    def pace_writes(self, pacer: Callable[[], Awaitable[None]]) -> None:
        """Await ``pacer()`` before each authenticated write instead of this client's own write
        limiter: the platform's runners share one write clock (syncer/apply/governor.py)."""
        self._pacer = pacer

    def operation_url(self, location_or_id: str) -> str:
        """The status URL of a bulk operation on this client's host."""
        return f"{self._base}{OPERATIONS_PATH}/{quote(operation_id(location_or_id), safe='')}"

    # ----------------------------------------------------------------- public calls

    async def fetch_integrations(self, platform: str | None = None) -> list[dict[str, Any]]:
        """Every integration (all pages), optionally only those of one ``externalPlatform``."""
        params = {"externalPlatform[eq]": platform} if platform is not None else None
        return [item async for item in self._pages(f"{self._base}{INTEGRATIONS_PATH}", params)]

    async def fetch_external_course(self, integration_id: str, external_id: str) -> dict[str, Any] | None:
        """One external course of an integration (``ExternalCourseResponseDTO``), None when it has none.

        The answer for an externalId never imported is not documented (reference §6): both
        ``courseNotBelongToIntegration`` (400) and a 404 other than ``integrationNotFound`` read as none.
        """
        url = (
            f"{self._base}{INTEGRATIONS_PATH}/{quote(integration_id, safe='')}"
            f"/courses/{quote(external_id, safe='')}"
        )
        try:
            return _object(await self._call("GET", url), "GET external course")
        except ApiError as err:
            if isinstance(err, ApiUnavailable):
                raise
            if err.code == "courseNotBelongToIntegration" or (
                err.status == 404 and err.code != "integrationNotFound"
            ):
                return None
            raise

    async def fetch_courses(self, params: Params | None = None) -> AsyncIterator[dict[str, Any]]:
        """Courses of the platform (``CourseDTO``, pages of 500) matching bracket filters."""
        async for item in self._pages(f"{self._base}{COURSES_PATH}", params):
            yield item

    async def fetch_course_stats(self, params: Params | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Attempts (``CourseStatDTO``), one page (up to 500) at a time, matching bracket filters."""
        async for page in self._page_lists(f"{self._base}{COURSE_STATS_PATH}", params):
            yield page

    async def fetch_users(self, params: Params | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Users (``UserDTO``), one page (up to 500) at a time, matching bracket filters."""
        async for page in self._page_lists(f"{self._base}{USERS_PATH}", params):
            yield page

    async def create_integration(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an integration; returns it with its ``_id``."""
        url = f"{self._base}{INTEGRATIONS_PATH}"
        try:
            return _created(await self._call("POST", url, body=body, submission=True))
        except SubmissionLost:
            # The create may have happened: reuse it rather than hit duplicateExternalPlatform.
            platform = str(body.get("externalPlatform", ""))
            for found in await self.fetch_integrations(platform):
                if found.get("groupId") == body.get("groupId"):
                    return found
            return _created(await self._call("POST", url, body=body, submission=True))

    async def renew_token(self) -> None:
        """Drop the access token and request a new one now (``syncer doctor``'s credentials check)."""
        self._token = None
        await self._ensure_token()

    async def request(
        self, method: str, path: str, *, params: Params | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """One call to ``path`` under the base URL, never a submission; its status and JSON data.

        For ``syncer doctor``'s probes, which look at the answer themselves: a refusal is still
        raised as ApiError, and a failure to answer as ApiUnavailable.
        """
        resp = await self._call(method, f"{self._base}{path}", body=body, params=params)
        return resp.status, resp.data

    async def patch_integration(self, integration_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Change some fields of an integration; returns the updated integration."""
        url = f"{self._base}{INTEGRATIONS_PATH}/{quote(integration_id, safe='')}"
        return _object(await self._call("PATCH", url, body=body), "PATCH /api/v2/integrations")

    async def submit_bulk(
        self, op_type: OperationType, integration_id: str, items: Sequence[Mapping[str, Any]]
    ) -> str:
        """Submit one bulk batch; returns the operation's absolute ``Location``.

        Raises:
            SubmissionLost: the request was sent but the answer neither accepts nor documents a
                refusal (lost, a 5xx or a proxy's page, a 202 without ``Location``); it may
                have been accepted.
        """
        method, suffix = _BULK_ROUTES[op_type]
        url = f"{self._base}/api/v2/bulk/integrations/{quote(integration_id, safe='')}/{suffix}"
        # Payloads kept as canonical JSON text go into the body as they are, not decoded and re-encoded.
        body: bytes | dict[str, Any]
        if isinstance(items, Payloads):
            body = b'{"input":' + items.json_array() + b"}"
        else:
            body = {"input": list(items)}
        resp = await self._call(method, url, body=body, submission=True)
        if resp.status != 202:
            raise _lost(f"{method} {_path(url)} -> {resp.status} instead of 202", status=resp.status)
        if not resp.location:
            raise _lost(f"{method} {_path(url)} -> 202 without a Location header", status=resp.status)
        return resp.location

    async def fetch_operation(self, location_or_id: str) -> dict[str, Any]:
        """The current state of one bulk operation."""
        return _object(await self._call("GET", self.operation_url(location_or_id)), "GET operation")

    async def fetch_results(self, location_or_id: str) -> list[dict[str, Any]]:
        """The per-item results of a finished bulk operation (400 ``bulkOperationNotRun`` before)."""
        resp = await self._call("GET", self.operation_url(location_or_id) + "/results")
        if not isinstance(resp.data, list):
            raise ApiError("GET operation results: the answer is not a JSON array", status=resp.status)
        return [item for item in resp.data if isinstance(item, dict)]  # orjson's own dicts: no copy

    async def fetch_operations(
        self,
        *,
        op_type: OperationType | str | None = None,
        created_gte: datetime | None = None,
        created_lt: datetime | None = None,
        status: OperationStatus | str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Bulk operations matching the filters, following every page."""
        params: dict[str, str] = {}
        if op_type is not None:
            params["type[eq]"] = str(op_type)
        if created_gte is not None:
            params["createdAt[gte]"] = _iso_seconds(created_gte)
        if created_lt is not None:
            params["createdAt[lt]"] = _iso_seconds(created_lt)
        if status is not None:
            params["status[eq]"] = str(status)
        async for item in self._pages(f"{self._base}{OPERATIONS_PATH}", params or None):
            yield item

    # ----------------------------------------------------------------- machinery

    async def _pages(self, url: str, params: Params | None) -> AsyncIterator[dict[str, Any]]:
        """Items of a paginated list, following ``Link: <url>; rel="next"``."""
        async for page in self._page_lists(url, params):
            for item in page:
                yield item

    async def _page_lists(self, url: str, params: Params | None) -> AsyncIterator[list[dict[str, Any]]]:
        """The pages of a paginated list, each as its list of objects."""
        next_url: str | None = url
        while next_url is not None:
            resp = await self._call("GET", next_url, params=params)
            if not isinstance(resp.data, list):
                raise ApiError(f"GET {_path(next_url)}: the answer is not a JSON array", status=resp.status)
            yield [dict(item) for item in resp.data if isinstance(item, Mapping)]
            # The next URL carries the original filters in its cursor.
            next_url, params = resp.next_url, None

    async def _call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: Params | None = None,
        submission: bool = False,
    ) -> _Response:
        """The retry loop: repeat ``_request`` while the error is retryable and time remains."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._api.retry_seconds
        attempt = 0
        while True:
            try:
                return await self._request(method, url, body=body, params=params, submission=submission)
            except ApiUnavailable as err:
                if not err.retryable:  # SubmissionLost: the caller must look before resending
                    raise
                delay = self._backoff.delay(attempt, err.retry_after)
                attempt += 1
                if loop.time() + delay > deadline:
                    host = urlsplit(url).netloc
                    raise ApiUnavailable(
                        f"{err} (gave up after {attempt} attempts within api.retry_seconds "
                        f"{self._api.retry_seconds:g} s). {host} did not answer usefully: nothing "
                        "more was sent; safe to rerun, the next run resumes what is in flight",
                        status=err.status,
                        code=err.code,
                        retry_after=err.retry_after,
                    ) from err
                _log_retry(method, url, err, delay, attempt + 1, deadline - loop.time() - delay, self._api)
                await asyncio.sleep(delay)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: Params | None = None,
        submission: bool = False,
        auth: bool = True,
    ) -> _Response:
        """Send one request (renewing the token once on a 401); translate every failure."""
        for renewed in (False, True):
            token = await self._ensure_token() if auth else None
            status, data, text, resp_url, headers, links = await self._send(
                method, url, body=body, params=params, token=token, submission=submission
            )
            if submission and status >= 400 and not _documented_refusal(status, data):
                # Not the platform saying no: a proxy's page, or a failure that may have come
                # after the request was performed. Never resend it (nor renew and resend on 401).
                raise self._ambiguous(f"{method} {_path(url)}", status, data, text, headers)
            if status == 401 and auth and not renewed:
                # Expired or revoked early: drop it (unless a concurrent call already did) and retry once.
                if self._token == token:
                    self._token = None
                continue
            break
        where = f"{method} {_path(url)}"
        if status < 400:
            location = headers.get("Location")
            nxt = links.get("next")
            return _Response(
                status=status,
                data=data,
                location=str(resp_url.join(URL(location))) if location else None,
                next_url=str(nxt["url"]) if nxt and "url" in nxt else None,
            )
        code, message = _error_of(data, text)
        detail = self._scrub(f"{where} -> {status} {code or ''}: {message}".replace("  ", " "))
        if status == 429:
            ApiClient.answers_429 += 1
        if status == 429 and code == "bulkOperationsConcurrencyLimitReached":
            self._concurrency_refusals += 1
        if status == 429 or status >= 500:
            raise ApiUnavailable(
                detail, status=status, code=code, retry_after=retry_after(headers.get("Retry-After"))
            )
        raise ApiError(f"{detail}. {_advice(status, code)}", status=status, code=code)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        body: Any,
        params: Params | None,
        token: str | None,
        submission: bool,
    ) -> tuple[int, Any, str, URL, Mapping[str, str], Mapping[str, Any]]:
        """One HTTP exchange under the rate limiter and the per-request timeout."""
        if self._session is None:
            raise SyncerError("ApiClient used outside 'async with' and without a session")
        _no_hidden_retries(self._session)
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            headers["360-api-version"] = API_VERSION
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else orjson.dumps(body)  # bytes: already JSON
            headers["Content-Type"] = "application/json"
        if method in _WRITES and token is not None and self._pacer is not None:
            await self._pacer()  # token requests are not counted by the platform: local only
        else:
            await (self._writes if method in _WRITES else self._reads).acquire()
        self._sent[method] += 1
        where = f"{method} {_path(url)}"
        try:
            async with asyncio.timeout(self._api.timeout_seconds):
                async with self._session.request(
                    method, url, data=payload, params=params, headers=headers, allow_redirects=False
                ) as resp:
                    raw = await resp.read()
                    status, resp_url = resp.status, resp.url
                    resp_headers: Mapping[str, str] = resp.headers
                    links: Mapping[str, Any] = resp.links
        except aiohttp.InvalidURL as exc:
            # Nothing was sent and nothing will be until the config changes: a person must act.
            raise ApiError(
                f"{where}: {self._base} is not a usable URL ({exc}); fix `api.base_url` in the config"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            # The connection was never established: nothing reached the server, always safe to retry.
            raise ApiUnavailable(f"{where}: cannot connect ({type(exc).__name__})") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            kind = "timed out" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__})"
            if submission:
                raise _lost(f"{where}: {kind} after sending") from exc
            raise ApiUnavailable(f"{where}: {kind}") from exc
        # The text serves only the messages of error answers: a 10,000-result answer is not decoded twice.
        text = raw.decode("utf-8", errors="replace") if status >= 400 else ""
        try:
            data = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            data = None
        return status, data, text, resp_url, resp_headers, links

    async def _ensure_token(self) -> str:
        """A valid access token, requested when missing or close to expiry."""
        loop = asyncio.get_running_loop()
        async with self._token_lock:
            if self._token is not None and loop.time() < self._token_renew_at:
                return self._token
            body = {
                "grant_type": "client_credentials",
                "client_id": self._api.client_id,
                "client_secret": self._api.client_secret.reveal(),
            }
            if self._api.company_id:
                body["company_id"] = self._api.company_id
            resp = await self._request("POST", f"{self._base}{TOKEN_PATH}", body=body, auth=False)
            data = resp.data if isinstance(resp.data, Mapping) else {}
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise ApiError("POST /api/v2/oauth2/token: the answer holds no access_token")
            lifetime = _seconds(data.get("expires_in"))
            self._token = token
            self._token_renew_at = loop.time() + lifetime - min(_TOKEN_MARGIN_SECONDS, lifetime / 10)
            return token

    def _ambiguous(
        self, where: str, status: int, data: Any, text: str, headers: Mapping[str, str]
    ) -> SubmissionLost:
        """The SubmissionLost for an error answer that is not a documented refusal."""
        if isinstance(data, Mapping):
            code, message = _error_of(data, text)
        else:
            # A proxy's HTML page says nothing useful and is long: name its type, not its text.
            kind = headers.get("Content-Type", "").split(";", 1)[0].strip() or "untyped"
            code, message = None, f"a {kind} body" if text.strip() else "an empty body"
        said = f" {code}" if code else ""
        detail = self._scrub(f"{where} -> {status}{said}: {message}")
        return _lost(f"{detail}, not a documented refusal", status=status, code=code)

    def _scrub(self, message: str) -> str:
        """Remove the secret and the token from a message built from an answer."""
        for secret in (self._api.client_secret.reveal(), self._token):
            if secret:
                message = message.replace(secret, "***")
        return message


def _log_retry(
    method: str, url: str, err: ApiUnavailable, delay: float, attempt: int, left: float, api: ApiConfig
) -> None:
    """Log one retry: what failed (method, host and path, status or error), the wait, and which
    attempt comes next with how much of the time budget (``api.retry_seconds``) is left after it."""
    host, path = urlsplit(url).netloc.rsplit("@", 1)[-1], _path(url)
    where, text = f"{method} {path}", str(err)
    reason = next(
        (text[len(where) + len(sep) :] for sep in (": ", " -> ") if text.startswith(where + sep)), text
    )
    after = str(err.status) if err.status else reason.rsplit(": ", 1)[-1].split(" (", 1)[0]  # cannot connect
    log.warning(
        "%s %s%s: %s; retrying in %.1f s (attempt %d, %s s of the %g s retry budget left)",
        method,
        host,
        path,
        reason,
        delay,
        attempt,
        f"{max(0.0, left):.{0 if left >= 10 else 1}f}",
        api.retry_seconds,
        extra={
            "method": method,
            "api_host": host,
            "path": path,
            "status": err.status,
            "error": reason,
            "wait_seconds": round(delay, 3),
            "attempt": attempt,
            "retry_budget_left_seconds": round(max(0.0, left), 1),
            "retry_seconds": api.retry_seconds,
            # For the terminal's display: a countdown until the next attempt.
            "_wait": delay,
            "_wait_key": f"retry {method} {path}",
            "_status": f"retrying in {{left}} s after {after} ({method} {host}{path}, attempt {attempt})",
        },
    )


def _lost(what: str, *, status: int | None = None, code: str | None = None) -> SubmissionLost:
    """A SubmissionLost saying what happened and what the caller must do next."""
    return SubmissionLost(
        f"{what}; it may have been accepted, so look for it among recent operations before sending again",
        status=status,
        code=code,
    )


# What a person does about a refusal that no rerun fixes (360learning-api.md §2, §5, §7).
_ADVICE = {
    "invalid_client": "The platform refused the API credentials: check `client_id` and `client_secret` "
    "under `api:` (and the variables they name), and that the credential was not revoked",
    "invalid_grant": "The platform refused the API credentials: check `client_id`, `client_secret` "
    "and `company_id` under `api:`",
    "invalid_token": "The platform refused a fresh access token: check that the credential was not "
    "revoked and that `company_id` is right",
    "invalid_scope": "The API credential lacks a scope this call needs: grant it in the platform's "
    "API settings (README, 'Scopes'), then run again; `syncer doctor CONFIG` lists what is missing",
    "reservedPlatformName": "The integration's `platform:` name is reserved by 360Learning: choose "
    "another one in the config",
    "duplicateExternalPlatform": "Another integration with this `platform:` exists in this group: "
    "put its id in the integration's `id:`, or choose another `platform:` name",
    "integrationsLimitReached": "The platform holds as many integrations as it allows: delete an "
    "unused one, or ask 360Learning to raise the limit",
    "groupNotFound": "The integration's `group:` is not a group of this platform: fix its id",
    "userNotFound": "The integration's `author:` is not a user of this platform: fix its id",
    "integrationNotFound": "The integration does not exist on the platform (deleted?): fix or "
    "remove its `id:` in the config, or run `syncer refresh CONFIG`",
    "bulkOperationNotFound": "The platform no longer knows this operation: run `syncer refresh "
    "CONFIG` to read back what it holds",
}


def _advice(status: int, code: str | None) -> str:
    """What to do about a refusal: the documented code's fix, else by status."""
    if code in _ADVICE:
        return _ADVICE[code]
    if status == 401:
        return _ADVICE["invalid_client"]
    if status == 403:
        return _ADVICE["invalid_scope"]
    return (
        "No rerun gets past this refusal: check the config against the message; if it names "
        "nothing you set, report it with the output of `syncer --debug`"
    )


def _documented_refusal(status: int, data: Any) -> bool:
    """True when an error answer to a submission documents that nothing was performed.

    The documented refusals (360learning-api.md §2, the bulk endpoints' responses): any 429, 503
    with the structured ``bulkAPIDisabled`` body, and a 4xx whose body has one of the two error
    shapes, flat ``{"error": code}`` or structured ``{"error": {"code", "message"}}``.
    """
    if status == 429:
        return True
    error = data.get("error") if isinstance(data, Mapping) else None
    code = None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        code = error.get("code") if isinstance(error.get("code"), str) else None
    if status == 503:
        return code == "bulkAPIDisabled"
    return 400 <= status < 500 and (code is not None or isinstance(error, str))


def _created(resp: _Response) -> dict[str, Any]:
    """A created integration: only a 201 with a JSON object accepts the submission."""
    where = "POST /api/v2/integrations"
    if resp.status != 201:
        raise _lost(f"{where} -> {resp.status} instead of 201", status=resp.status)
    if not isinstance(resp.data, Mapping):
        raise _lost(f"{where} -> 201 without the integration in its body", status=resp.status)
    return dict(resp.data)


def _no_hidden_retries(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from silently resending a PUT/DELETE whose connection dropped.

    aiohttp retries "idempotent" methods once on a dropped connection (RFC 9112 §9.3.1), but a
    bulk PUT or DELETE creates a new operation each time: resending it would break exactly-once.
    aiohttp exposes no public switch; its own test client flips this same attribute.
    """
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False


def _seconds(value: Any) -> float:
    """``expires_in`` as seconds: the spec types it number, its examples show a string."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    # An unreadable lifetime is treated as short, so a bad guess costs one extra token request.
    return seconds if math.isfinite(seconds) and seconds > 0 else 60.0


def _object(resp: _Response, where: str) -> dict[str, Any]:
    """The answer as a JSON object, or an ApiError saying it was not one."""
    if not isinstance(resp.data, Mapping):
        raise ApiError(f"{where}: the answer is not a JSON object", status=resp.status)
    return dict(resp.data)


def _path(url: str) -> str:
    """The path of a URL, for messages (never its credentials or query)."""
    return urlsplit(url).path or "/"


def _redacted(url: str) -> str:
    """A base URL without any user info."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"
