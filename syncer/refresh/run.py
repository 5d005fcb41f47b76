"""A refresh: what the platform holds for each integration, read back and recorded in the ledger.

For each selected integration (docs/refresh.md):

1. **Identity.** A config key with no records whose platform and group (or ``id``) are those of
   an integration the ledger knows under another name, absent from the config, is that one
   renamed: its records move to the new name (``settle_renames``, also run by ``plan``). The
   platform's integration is then looked up: gone, or with another ``_id`` than the ledger's
   (deleted, recreated), the ledger forgets what it sent there: everything is sent again.
2. **Courses.** Every course the source, the ledger or a statistic names is read
   (``GET /integrations/{id}/courses/{externalId}``), with the group's course statuses
   (``GET /courses``). A source course the platform holds unknown to the ledger is adopted
   (recorded as synced; with other content, as synced with that content, so the plan shows
   the change); a course the ledger holds as live but the platform archived, lost or edited
   by hand is drift, restored by the next apply unless ``courses.on_drift: report``.
3. **Attempts.** The attempts on those courses (``GET /courses/stats``, pages of 500) are matched
   to the statistics of the source and of the ledger by course, learner and firstActivityAt
   (learners by e-mail through ``GET /users``). A matched statistic unknown to the ledger is
   adopted with the attempt as confirmed; an attempt no statistic made (a launch, another tool)
   is recorded as foreign, for the attempt prediction; an attempt the ledger confirmed and the
   platform no longer has is drift (reported only: syncer never touches attempts it did not make).

Learners: ``users=True`` (``syncer refresh --users``) lists every learner of the platform and
turns the plan's learner check on; otherwise only the learners of the statistics at hand are
looked up, and the check stays as it was. Nothing is ever written to the platform.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    and_,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    union,
)
from sqlalchemy.engine import Connection

from syncer.api.client import ApiClient
from syncer.config import Config, OnDrift
from syncer.errors import ApiError, ApiUnavailable
from syncer.ledger import DriftInfo, Ledger, records
from syncer.ledger.identity import settle_renames
from syncer.ledger.planning import adopt_statistics
from syncer.ledger.schema import platform_courses_table, platform_users_table
from syncer.models import RecordKind, RecordStatus
from syncer.plan import build_plan
from syncer.plan.tables import OK, json_of
from syncer.progress import NullProgress, Progress, event
from syncer.refresh.reads import (
    LOOKUP_LIMIT,
    attempt_pages,
    course_details,
    course_statuses,
    find_integration,
    normalise_time,
    user_pages,
)

__all__ = [
    "READ_SCOPES",
    "IntegrationRefresh",
    "RefreshReport",
    "list_learners",
    "refresh_integrations",
    "run_refresh",
]

READ_SCOPES = ("integrations:read", "courses:read", "courseStats:read", "users:read")
"""The OAuth scopes a refresh reads with (docs/refresh.md)."""
_STAT, _COURSE = RecordKind.STAT.value, RecordKind.COURSE.value
_CHUNK = 2000


@dataclass
class IntegrationRefresh:
    """What one integration's refresh found and recorded."""

    name: str
    api_id: str | None = None
    previous_id: str | None = None
    state: str = "found"  # found, not on the platform, recreated
    renamed_from: str | None = None
    forgotten: int = 0  # records forgotten (the platform _id changed or the integration is gone)
    courses_read: int = 0
    courses_adopted: int = 0
    attempts_read: int = 0
    stats_adopted: int = 0
    foreign_attempts: int = 0
    drift: list[DriftInfo] = field(default_factory=list)


@dataclass
class RefreshReport:
    """A refresh run: per integration, and the learners read."""

    integrations: list[IntegrationRefresh] = field(default_factory=list)
    users_read: int = 0
    users_listed: bool = False
    reads: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Numbers for logs and the run's record."""
        return {
            "integrations": len(self.integrations),
            "courses_adopted": sum(i.courses_adopted for i in self.integrations),
            "stats_adopted": sum(i.stats_adopted for i in self.integrations),
            "attempts_read": sum(i.attempts_read for i in self.integrations),
            "foreign_attempts": sum(i.foreign_attempts for i in self.integrations),
            "drift": sum(len(i.drift) for i in self.integrations),
            "users_read": self.users_read,
            "reads": self.reads,
        }


# -- the refresh ------------------------------------------------------------------------------------


async def refresh_integrations(
    client: ApiClient,
    config: Config,
    ledger: Ledger,
    names: Sequence[str],
    *,
    users: bool = False,
    progress: Progress | None = None,
) -> RefreshReport:
    """Read back what the platform holds for ``names`` and record it in the ledger.

    Raises:
        ApiError: as the client does; a missing read scope (403) says which scopes a refresh needs.
    """
    try:
        return await _refresh(client, config, ledger, names, users=users, progress=progress)
    except ApiError as err:
        if err.status != 403 or isinstance(err, ApiUnavailable):
            raise
        raise ApiError(
            f"{err}; reading the platform back needs the scopes {', '.join(READ_SCOPES)}: grant them "
            "to the API credential and fetch a new token (docs/refresh.md)",
            status=err.status,
            code=err.code,
        ) from err


async def _refresh(
    client: ApiClient,
    config: Config,
    ledger: Ledger,
    names: Sequence[str],
    *,
    users: bool,
    progress: Progress | None,
) -> RefreshReport:
    progress = progress or NullProgress()
    started = time.monotonic()
    gets_before = client.requests_sent.get("GET", 0)
    report = RefreshReport(users_listed=users)
    renamed = settle_renames(config, ledger, names)
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        item = IntegrationRefresh(name, renamed_from=renamed.get(name))
        report.integrations.append(item)
        dto = await find_integration(client, config.integrations[name])
        known = ledger.get_integration_id(name)
        item.previous_id = known
        if dto is None:
            item.state = "not on the platform"
            # An ``id`` the platform does not have is a config mistake (apply refuses it, exit 1),
            # not a deleted integration: nothing is forgotten for it.
            if known is not None and config.integrations[name].id is None:
                item.forgotten = ledger.forget_integration(name)
                item.drift.append(DriftInfo(name, "integration", name, "missing", known, None, True))
                event(
                    f"integration {name}: {known} is no longer on the platform; apply creates it "
                    f"and sends its {item.forgotten:,} records again",
                    integration=name,
                )
            ledger.replace_drift(name, item.drift)
            continue
        api_id = str(dto["_id"])
        item.api_id = api_id
        if known is not None and known.lower() != api_id.lower():
            item.state = "recreated"
            item.forgotten = ledger.forget_integration(name)
            item.drift.append(DriftInfo(name, "integration", name, "recreated", known, api_id, True))
            event(
                f"integration {name}: its platform id changed ({known} -> {api_id}: deleted and "
                f"recreated); its {item.forgotten:,} records are sent again, courses first",
                integration=name,
            )
        ledger.record_integration(
            name, api_id, platform=dto.get("externalPlatform"), group_id=dto.get("groupId")
        )
        found[name] = dto
    if users:
        report.users_read = await list_learners(client, ledger, progress)
    if found:
        with build_plan(config, ledger, integrations=list(found)) as plan:
            conn, staged = plan.staging()
            tag = uuid.uuid4().hex[:12]
            for item in report.integrations:
                dto = found.get(item.name)
                if dto is None:
                    continue
                spec = config.integrations[item.name]
                on_drift = spec.courses.on_drift if spec.courses is not None else OnDrift.RESTORE
                work = _Refresh(
                    client, ledger, conn, staged, item, dto, on_drift, progress, f"{tag}_{len(item.name)}"
                )
                # The learners' list is a chain of pages, one round trip each: it is read while
                # the courses and then the attempts are.
                work.start_learners(listed=users)
                try:
                    await work.courses()
                    await work.attempts()
                finally:
                    await work.stop_learners()
                ledger.replace_drift(item.name, item.drift)
                ledger.mark_refreshed(item.name)
                event(
                    f"refreshed {item.name}: {item.courses_read:,} courses read, "
                    f"{item.courses_adopted:,} adopted; "
                    f"{item.attempts_read:,} attempts read, {item.stats_adopted:,} statistics adopted, "
                    f"{item.foreign_attempts:,} attempts made by others; {len(item.drift):,} drift",
                    integration=item.name,
                    courses_adopted=item.courses_adopted,
                    stats_adopted=item.stats_adopted,
                    attempts_read=item.attempts_read,
                    drift=len(item.drift),
                )
    report.reads = client.requests_sent.get("GET", 0) - gets_before
    report.seconds = time.monotonic() - started
    return report


async def list_learners(client: ApiClient, ledger: Ledger, progress: Progress | None = None) -> int:
    """List every learner of the platform into the ledger; the plan's learner check is on from then.

    ``syncer refresh --users``, and every apply with ``refresh: {users: true}``. Each page is
    recorded as it comes; learners not listed are forgotten once the list is complete. Returns
    how many.
    """
    started = ledger.now()
    count = await _record_learners(client, ledger, None, progress)
    ledger.finish_user_listing(started)
    event(f"learners listed: {count:,}", users=count)
    return count


async def _record_learners(
    client: ApiClient, ledger: Ledger, mails: Sequence[str] | None, progress: Progress | None
) -> int:
    """Read learners (all, or these e-mails) into the ledger a page at a time; how many."""
    progress = progress or NullProgress()
    handle = progress.task("reading learners")
    count = 0
    rows: list[tuple[str, str | None, str]] = []
    async for page in user_pages(client, mails):
        rows.extend(_user_row(u) for u in page)
        if len(rows) >= _CHUNK * 5:  # one transaction for ten pages: commits are the cost
            count += ledger.record_users(rows)
            rows = []
        progress.advance(handle, len(page))
    count += ledger.record_users(rows)
    progress.done(handle)
    return count


def _user_row(user: Mapping[str, Any]) -> tuple[str, str | None, str]:
    mail = user.get("mail")
    return (
        str(user.get("_id", "")),
        mail if isinstance(mail, str) else None,
        str(user.get("status", "active")),
    )


class _Refresh:
    """One integration's refresh, on the connection of a plan of it (its staged records)."""

    def __init__(
        self,
        client: ApiClient,
        ledger: Ledger,
        conn: Connection,
        staged: Table,
        item: IntegrationRefresh,
        dto: Mapping[str, Any],
        on_drift: OnDrift,
        progress: Progress,
        tag: str,
    ) -> None:
        self.client, self.ledger, self.conn, self.s = client, ledger, conn, staged
        self.item, self.dto, self.on_drift, self.progress = item, dto, on_drift, progress
        self.name = item.name
        self.api_id = str(dto["_id"])
        self.courses_found: dict[str, str] = {}  # externalId -> course id (published or archived)
        self._learners: asyncio.Future[None] | None = None
        metadata = MetaData()
        self.pairs = Table(
            f"syncer_rpair_{tag}",
            metadata,
            Column("grp", Text, nullable=False),
            Column("course_id", String(24), nullable=False),
            Column("user_id", String(24), nullable=False),
            prefixes=["TEMPORARY"],
        )
        self.found_attempts = Table(
            f"syncer_ratt_{tag}",
            metadata,
            Column("course_id", String(24), nullable=False),
            Column("user_id", String(24), nullable=False),
            Column("first_at", Text, nullable=False),
            Column("last_at", Text),
            Column("end_at", Text, nullable=False),
            Column("done", Boolean, nullable=False),
            Column("progress", Float),
            Column("time_spent", Float),
            Column("score", Float),
            Column("attempt_id", String(24)),
            prefixes=["TEMPORARY"],
        )

    # -- courses ----------------------------------------------------------------------------------

    async def courses(self) -> None:
        """Read every course in question; adopt, record drift, note the platform's courses."""
        s, r = self.s, records
        doc = json_of(self.conn, s.c.grp)
        wanted: set[str] = set()
        wanted.update(
            key
            for (key,) in self.conn.execute(
                select(s.c.key).where(s.c.integration == self.name, s.c.kind == _COURSE, s.c.state == OK)
            )
        )
        wanted.update(
            key
            for (key,) in self.conn.execute(
                select(r.c.key).where(r.c.integration == self.name, r.c.kind == _COURSE)
            )
        )
        named = select(doc[1].as_string()).where(
            s.c.integration == self.name,
            s.c.kind == _STAT,
            s.c.state == OK,
            doc[0].as_string() == "externalId",
        )
        rdoc = json_of(self.conn, r.c.grp)
        named_in_ledger = select(rdoc[1].as_string()).where(
            r.c.integration == self.name, r.c.kind == _STAT, rdoc[0].as_string() == "externalId"
        )
        wanted.update(v for (v,) in self.conn.execute(union(named, named_in_ledger)) if v)
        self.conn.rollback()  # no snapshot pinned while the platform is read
        handle = self.progress.task(f"reading {self.name}'s courses", total=len(wanted))
        details: dict[str, dict[str, Any] | None] = {}
        async for external_id, detail in course_details(self.client, self.api_id, sorted(wanted)):
            details[external_id] = detail
            self.progress.advance(handle)
        self.progress.done(handle)
        group = str(self.dto.get("groupId") or "")
        statuses = await course_statuses(self.client, group) if group and any(details.values()) else {}
        self.item.courses_read = sum(1 for d in details.values() if d is not None)
        found: list[tuple[str, str | None, str]] = []
        platform: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for external_id, detail in details.items():
            if detail is None:
                found.append((external_id, None, "missing"))
                platform[external_id] = ("missing", None)
                continue
            course_id = str(detail.get("courseId", "")).lower()
            # A course the group's list does not show is taken as published: the detail exists.
            status = "archived" if statuses.get(course_id) in ("archived", "deleted") else "published"
            found.append((external_id, course_id, status))
            platform[external_id] = (status, detail)
            self.courses_found[external_id] = course_id
        self.ledger.replace_platform_courses(self.name, found)
        self._compare_courses(platform)

    def _compare_courses(self, platform: Mapping[str, tuple[str, dict[str, Any] | None]]) -> None:
        s, r = self.s, records
        source = {
            row.key: row
            for row in self.conn.execute(
                select(s.c.key, s.c.hash, s.c.payload, s.c.origin, s.c.digest).where(
                    s.c.integration == self.name, s.c.kind == _COURSE, s.c.state == OK
                )
            )
        }
        ledger_rows = {
            row.key: row
            for row in self.conn.execute(
                select(r.c.key, r.c.status, r.c.live, r.c.payload).where(
                    r.c.integration == self.name, r.c.kind == _COURSE
                )
            )
        }
        self.conn.rollback()
        adopt: list[dict[str, Any]] = []
        reimport: list[str] = []
        resend: list[str] = []
        restore = self.on_drift is OnDrift.RESTORE
        for key in sorted(platform):
            status, detail = platform[key]
            mine = ledger_rows.get(key)
            wanted = source.get(key)
            synced = mine is not None and mine.status == RecordStatus.SYNCED
            if mine is None or not synced:
                if mine is None and wanted is not None and status == "published" and detail is not None:
                    adopt.append(self._course_row(key, None, detail, wanted))
            elif mine.live and status in ("missing", "archived"):
                self._drift("course", key, status, "published", status, restore)
                reimport.append(key)
            elif not mine.live and status == "published":
                # Archived by syncer, published again by hand: live again in the ledger, so that
                # the plan archives it again if the source still lacks it.
                self._drift("course", key, "published", "archived", "published", restore)
                if restore:
                    adopt.append(self._course_row(key, mine.payload, detail, wanted))
            elif mine.live and detail is not None:
                changes = _differences(mine.payload or {}, detail)
                if changes:
                    old = "; ".join(f"{f}: {_short(a)}" for f, a, _b in changes)
                    new = "; ".join(f"{f}: {_short(b)}" for f, _a, b in changes)
                    self._drift("course", key, "edited", old, new, restore)
                    resend.append(key)
        if restore and (reimport or resend):
            self.ledger.restore_courses(self.name, reimport=reimport, resend=resend)
        if adopt:
            self.item.courses_adopted += self.ledger.adopt_records(adopt)

    def _course_row(
        self,
        key: str,
        mine: Mapping[str, Any] | None,
        detail: Mapping[str, Any] | None,
        wanted: Any,
    ) -> dict[str, Any]:
        """A course record as the platform holds it: the source's when the content is the same."""
        payload = orjson.loads(wanted.payload) if wanted is not None else dict(mine or {})
        same = wanted is not None and detail is not None and not _differences(payload, detail)
        if not same and detail is not None:
            payload = {k: detail.get(k) for k in payload if k in detail}
        return {
            "integration": self.name,
            "kind": RecordKind.COURSE,
            "key": key,
            "hash": wanted.hash if same else "platform",
            "payload": payload,
            "origin": wanted.origin if wanted is not None else "platform",
            "live": True,
            "source_digest": wanted.digest if same else None,
        }

    def _drift(self, kind: str, key: str, what: str, old: str | None, new: str | None, restore: bool) -> None:
        self.item.drift.append(DriftInfo(self.name, kind, key, what, old, new, restore))

    # -- attempts ---------------------------------------------------------------------------------

    def start_learners(self, *, listed: bool) -> None:
        """Start reading the learners of the statistics at hand (unless all were just ``listed``)."""
        self.pairs.metadata.create_all(self.conn)
        self.conn.commit()  # PostgreSQL: the temporary tables outlive the rollbacks below
        mails = [] if listed else self._mails()
        self.conn.rollback()  # no snapshot pinned while the platform is read
        if mails is None or mails:
            self._learners = asyncio.ensure_future(self._read_learners(mails or []))

    async def stop_learners(self) -> None:
        """The learners' reading, awaited (or cancelled when the refresh failed before)."""
        task, self._learners = self._learners, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def attempts(self) -> None:
        """Read the attempts on the courses found; adopt, note foreign attempts and lost ones.

        The attempts (by course) are read while the learners of the statistics at hand (by
        e-mail) are; the (course, learner) pairs are then matched in SQL, nothing per row in memory.
        """
        conn = self.conn
        await self._read_attempts(sorted(set(self.courses_found.values())))
        if self._learners is not None:
            await self._learners  # raises what the learners' reading raised
        if not self.courses_found:
            return
        found = self.found_attempts.c
        Index(None, found.course_id, found.user_id, found.first_at).create(conn)
        self._pair()
        Index(None, self.pairs.c.course_id, self.pairs.c.user_id).create(conn)
        Index(None, self.pairs.c.grp).create(conn)
        Index(None, self.s.c.grp, self.s.c.ord).create(conn)
        conn.commit()
        self.item.stats_adopted = self._adopt_same() + self.ledger.adopt_records(self._differing())
        self.item.foreign_attempts = self.ledger.replace_foreign_attempts(self.name, self._foreign())
        for key, first_at in self._lost():
            self._drift("stat", key, "missing", f"attempt started {first_at}", "no such attempt", False)
        conn.rollback()

    def _grps(self) -> Any:
        """The (course, learner) pairs of the statistics at hand: the source's and the ledger's."""
        s, r = self.s, records
        return union(
            select(s.c.grp.label("grp")).where(
                s.c.integration == self.name, s.c.kind == _STAT, s.c.state == OK
            ),
            select(r.c.grp).where(r.c.integration == self.name, r.c.kind == _STAT, r.c.grp.is_not(None)),
        ).subquery()

    def _mails(self) -> list[str] | None:
        """The learners' e-mails to look up; None when there are more than ``LOOKUP_LIMIT``
        (listing every learner then reads less)."""
        g = self._grps()
        doc = json_of(self.conn, g.c.grp)
        query = (
            select(doc[3].as_string()).where(doc[2].as_string() == "mail").distinct().limit(LOOKUP_LIMIT + 1)
        )
        found = [mail for (mail,) in self.conn.execute(query) if mail]
        return None if len(found) > LOOKUP_LIMIT else found

    async def _read_attempts(self, courses: Sequence[str]) -> None:
        conn = self.conn
        handle = self.progress.task(f"reading {self.name}'s attempts")
        async for page in attempt_pages(self.client, courses):
            values = [v for v in (_attempt_row(a) for a in page) if v is not None]
            if values:
                conn.execute(insert(self.found_attempts), values)
            self.item.attempts_read += len(page)
            self.progress.advance(handle, len(page))
        conn.commit()
        self.progress.done(handle)

    async def _read_learners(self, mails: Sequence[str]) -> None:
        """The learners of the statistics at hand, by e-mail (all of them: ``mails`` empty)."""
        await _record_learners(self.client, self.ledger, mails or None, self.progress)

    def _pair(self) -> None:
        """Fill the pairs table: each (course, learner) pair with the platform's course and user ids.

        E-mails are compared as written: the mapper lower-cases them, the ledger records the
        platform's lower-cased.
        """
        g = self._grps()
        doc = json_of(self.conn, g.c.grp)
        ctype, course, utype, learner = (doc[i].as_string() for i in range(4))
        pc, pu = platform_courses_table, platform_users_table
        by_course = {
            "externalId": pc.c.external_id == course,
            "internalId": pc.c.course_id == func.lower(course),
        }
        for kind, course_match in by_course.items():
            of_course = and_(pc.c.integration == self.name, pc.c.course_id.is_not(None), course_match)
            by_mail = (
                select(g.c.grp, pc.c.course_id, pu.c.user_id)
                .select_from(g.join(pc, of_course).join(pu, pu.c.mail == learner))
                .where(ctype == kind, utype == "mail", pu.c.status != "deleted")
            )
            by_id = (
                select(g.c.grp, pc.c.course_id, func.lower(learner))
                .select_from(g.join(pc, of_course))
                .where(ctype == kind, utype == "internalId")
            )
            for query in (by_mail, by_id):
                self.conn.execute(insert(self.pairs).from_select(["grp", "course_id", "user_id"], query))

    def _matched(self, same: bool) -> Any:
        """The statistics of the source the platform holds and the ledger does not, with their
        attempt; ``same``: those whose content the platform holds as it is, else the others."""
        s, p, a, r = self.s, self.pairs, self.found_attempts, records
        doc = json_of(self.conn, s.c.payload)
        equal = and_(
            doc["progress"].as_float() == a.c.progress,
            doc["timeSpent"].as_float() == a.c.time_spent,
            func.coalesce(doc["score"].as_float(), -1.0) == func.coalesce(a.c.score, -1.0),
            doc["lastActivityAt"].as_string() == a.c.last_at,
        )
        return (
            s.join(p, p.c.grp == s.c.grp).join(
                a, and_(a.c.course_id == p.c.course_id, a.c.user_id == p.c.user_id, a.c.first_at == s.c.ord)
            ),
            and_(
                s.c.integration == self.name,
                s.c.kind == _STAT,
                s.c.state == OK,
                ~exists().where(r.c.integration == self.name, r.c.kind == _STAT, r.c.key == s.c.key),
                equal if same else ~equal,
            ),
        )

    def _adopt_same(self) -> int:
        """Adopt, in one statement, the statistics the platform holds with the same content."""
        s, a = self.s, self.found_attempts
        joined, where = self._matched(same=True)
        now = literal(self.ledger.now(), DateTime(timezone=True))
        payload = cast(s.c.payload, JSON) if self.conn.dialect.name == "postgresql" else s.c.payload
        rows = (
            select(
                s.c.integration, literal(_STAT), s.c.key, s.c.hash, payload,
                literal(RecordStatus.SYNCED.value), false(), s.c.origin, s.c.digest,
                s.c.grp, s.c.ord, a.c.end_at, a.c.done, now, now,
            )
            .select_from(joined)
            .where(where)
        )  # fmt: skip
        return adopt_statistics(self.conn, rows, [self.name])

    def _differing(self) -> Iterator[dict[str, Any]]:
        """Statistics the platform holds with other values: recorded with the platform's values,
        so that the plan sends the source's as a change (few: read into Python)."""
        s, a = self.s, self.found_attempts
        joined, where = self._matched(same=False)
        query = (
            select(
                s.c.key, s.c.payload, s.c.origin, s.c.grp, s.c.ord,
                a.c.last_at, a.c.end_at, a.c.done, a.c.progress, a.c.time_spent, a.c.score,
            )
            .select_from(joined)
            .where(where)
            .order_by(s.c.key)
        )  # fmt: skip
        seen: str | None = None
        for row in self.conn.execute(query, execution_options={"yield_per": _CHUNK}):
            key, payload, origin, grp, first_at, last_at, end_at, done, prog, spent, score = row
            if key == seen:
                continue  # two platform attempts started at the same moment: the first one
            seen = key
            held = {"progress": prog, "timeSpent": spent, "score": score, "lastActivityAt": last_at}
            platform = {**orjson.loads(payload), **{f: v for f, v in held.items() if v is not None}}
            yield {
                "integration": self.name,
                "kind": RecordKind.STAT,
                "key": key,
                "hash": "platform",
                "payload": platform,
                "origin": origin,
                "live": False,
                "source_digest": None,
                "grp": grp,
                "first_at": first_at,
                "att_end": end_at,
                "att_done": bool(done),
            }

    def _foreign(self) -> Iterator[dict[str, Any]]:
        """Attempts of the pairs at hand that no statistic of the source or the ledger made."""
        s, p, a, r = self.s, self.pairs, self.found_attempts, records
        query = (
            select(p.c.grp, a.c.first_at, a.c.end_at, a.c.done, a.c.attempt_id)
            .select_from(a.join(p, and_(p.c.course_id == a.c.course_id, p.c.user_id == a.c.user_id)))
            .where(
                ~exists().where(
                    s.c.grp == p.c.grp,
                    s.c.ord == a.c.first_at,
                    s.c.integration == self.name,
                    s.c.kind == _STAT,
                ),
                ~exists().where(
                    r.c.integration == self.name,
                    r.c.kind == _STAT,
                    r.c.grp == p.c.grp,
                    r.c.first_at == a.c.first_at,
                ),
            )
            .order_by(p.c.grp, a.c.first_at)
        )
        for grp, first_at, end_at, done, attempt_id in self.conn.execute(
            query, execution_options={"yield_per": _CHUNK}
        ):
            yield {
                "grp": grp,
                "first_at": first_at,
                "att_end": end_at,
                "att_done": bool(done),
                "attempt_id": attempt_id,
            }

    def _lost(self) -> list[tuple[str, str]]:
        """Statistics the platform confirmed that it no longer holds (attempts gone)."""
        p, a, r = self.pairs, self.found_attempts, records
        query = (
            select(r.c.key, r.c.first_at)
            .select_from(r.join(p, p.c.grp == r.c.grp))
            .where(
                r.c.integration == self.name,
                r.c.kind == _STAT,
                r.c.status == RecordStatus.SYNCED.value,
                r.c.att_end.is_not(None),
                ~exists().where(
                    a.c.course_id == p.c.course_id, a.c.user_id == p.c.user_id, a.c.first_at == r.c.first_at
                ),
            )
            .order_by(r.c.key)
        )
        return [(key, first_at) for key, first_at in self.conn.execute(query)]


def _attempt_row(attempt: Mapping[str, Any]) -> dict[str, Any] | None:
    first = normalise_time(attempt.get("firstActivityAt"))
    course, user = attempt.get("courseId"), attempt.get("userId")
    if first is None or not isinstance(course, str) or not isinstance(user, str):
        return None
    last = normalise_time(attempt.get("lastActivityAt"))
    completed = normalise_time(attempt.get("completedAt"))
    return {
        "course_id": course.lower(),
        "user_id": user.lower(),
        "first_at": first,
        "last_at": last,
        "end_at": completed or last or first,
        "done": completed is not None,
        "progress": _float(attempt.get("progress")),
        "time_spent": _float(attempt.get("timeSpent")),
        "score": _float(attempt.get("score")),
        "attempt_id": str(attempt.get("_id") or "")[:24] or None,
    }


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _differences(sent: Mapping[str, Any], held: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The fields of a course as sent that the platform holds otherwise: (field, sent, held)."""
    return [(k, v, held.get(k)) for k, v in sent.items() if held.get(k) != v]


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_refresh(
    config: Config,
    ledger: Ledger,
    names: Sequence[str],
    *,
    users: bool = False,
    progress: Progress | None = None,
) -> RefreshReport:
    """``refresh_integrations`` with its own API client, recorded in the ledger as a run."""
    import asyncio

    from syncer.errors import outcome_of
    from syncer.ledger import RunStatus

    run_id = ledger.start_run("refresh")

    async def main() -> RefreshReport:
        async with ApiClient(config.api) as client:
            return await refresh_integrations(client, config, ledger, names, users=users, progress=progress)

    try:
        report = asyncio.run(main())
    except KeyboardInterrupt:
        # Ctrl-C: click aborts the command with exit 1 (a refresh has no signal handler of its own).
        ledger.finish_run(run_id, RunStatus.INTERRUPTED, {}, exit_code=1, error="interrupted (SIGINT)")
        raise
    except Exception as exc:
        code, error = outcome_of(exc)
        ledger.finish_run(run_id, RunStatus.FAILED, {}, exit_code=code, error=error)
        raise
    ledger.finish_run(run_id, RunStatus.SUCCEEDED, report.summary(), exit_code=0)
    return report
