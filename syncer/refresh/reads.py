"""The platform read back, through the core API's read endpoints only: never a write.

Each read goes through the client's read rate limiter (``api.limits.reads_per_second``, the
platform's 50 GETs/s per company by default); several lists are followed at once so that a
page is in flight while the previous one is recorded (``gather_limited``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from syncer.api.client import ApiClient
from syncer.config import IntegrationConfig

__all__ = [
    "IN_FILTER_SIZE",
    "LOOKUP_LIMIT",
    "MAILS_PER_READ",
    "PARALLEL_READS",
    "attempt_pages",
    "course_details",
    "course_statuses",
    "find_integration",
    "gather_limited",
    "normalise_time",
    "user_pages",
]

PARALLEL_READS = 8
"""Lists or details read at once (the rate limiter paces them; more only queue)."""
IN_FILTER_SIZE = 25
"""Course ids per ``[in]`` filter: short URLs, and lists of attempts that fill their pages."""
MAILS_PER_READ = 100
"""E-mails per ``mail[in]`` filter (about 3 KB of URL)."""
LOOKUP_LIMIT = 10_000
"""Learners looked up by e-mail at most: beyond, listing every learner (500 a page) reads less."""

T = TypeVar("T")


async def find_integration(client: ApiClient, spec: IntegrationConfig) -> dict[str, Any] | None:
    """The platform's integration for a config one: by ``id``, or by platform name and group."""
    if spec.id is not None:
        for found in await client.fetch_integrations():
            if str(found.get("_id", "")).lower() == spec.id.lower():
                return found
        return None
    for found in await client.fetch_integrations(spec.platform):
        if str(found.get("groupId", "")).lower() == str(spec.group).lower():
            return found
    return None


async def gather_limited(
    work: Iterable[Callable[[], Awaitable[T]]], limit: int = PARALLEL_READS
) -> AsyncIterator[T]:
    """Run the calls at most ``limit`` at once; yield their results as they finish."""
    pending: set[asyncio.Task[T]] = set()
    calls = iter(work)
    try:
        while True:
            while len(pending) < limit:
                call = next(calls, None)
                if call is None:
                    break
                pending.add(asyncio.ensure_future(call()))
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def course_details(
    client: ApiClient, integration_id: str, external_ids: Sequence[str]
) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
    """(externalId, ``ExternalCourseResponseDTO`` or None when the integration has no such course)."""

    def detail(external_id: str) -> Callable[[], Awaitable[tuple[str, dict[str, Any] | None]]]:
        async def call() -> tuple[str, dict[str, Any] | None]:
            return external_id, await client.fetch_external_course(integration_id, external_id)

        return call

    async for found in gather_limited(detail(e) for e in external_ids):
        yield found


async def course_statuses(client: ApiClient, group_id: str) -> dict[str, str]:
    """Course id -> status (``published``, ``archived``, ``deleted``) of the group's external courses."""
    params = {"type[eq]": "external", "groupId[eq]": group_id}
    return {
        str(course.get("_id", "")).lower(): str(course.get("status", ""))
        async for course in client.fetch_courses(params)
    }


def _in_chunks(name: str, values: Sequence[str], size: int = IN_FILTER_SIZE) -> list[list[tuple[str, str]]]:
    return [
        [(f"{name}[in]", value) for value in values[start : start + size]]
        for start in range(0, len(values), size)
    ]


async def attempt_pages(client: ApiClient, course_ids: Sequence[str]) -> AsyncIterator[list[dict[str, Any]]]:
    """Every attempt on these courses, a page (up to 500) at a time, several lists at once."""
    async for page in _pages_of(client.fetch_course_stats, _in_chunks("courseId", list(course_ids))):
        yield page


async def user_pages(client: ApiClient, mails: Sequence[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
    """The platform's learners: all of them (``mails`` None, or more than ``LOOKUP_LIMIT``), or
    those with these e-mails."""
    if mails is None or len(mails) > LOOKUP_LIMIT:
        # One chain of pages: followed by a task of its own, so that the next page is on its
        # way while this one is recorded.
        async for page in _pages_of(client.fetch_users, [[]]):
            yield page
        return
    async for page in _pages_of(client.fetch_users, _in_chunks("mail", list(mails), MAILS_PER_READ)):
        yield page


async def _pages_of(
    lister: Callable[[Any], AsyncIterator[list[dict[str, Any]]]], queries: list[list[tuple[str, str]]]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The pages of several filtered lists, followed ``PARALLEL_READS`` at once."""
    queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=PARALLEL_READS * 2)
    todo = iter(queries)

    async def follow() -> None:
        for query in todo:  # shared iterator: each worker takes the next list
            async for page in lister(query):
                await queue.put(page)

    async def workers() -> None:
        try:
            await asyncio.gather(*(follow() for _ in range(min(PARALLEL_READS, len(queries)))))
        finally:
            await queue.put(None)

    runner = asyncio.ensure_future(workers())
    try:
        while (page := await queue.get()) is not None:
            yield page
        await runner  # raise what a worker raised
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


def normalise_time(value: Any) -> str | None:
    """A platform date-time as the mapper writes them (UTC ``YYYY-MM-DDThh:mm:ss.sssZ``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
