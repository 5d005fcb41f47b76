"""The simulated platform's live state: tokens, integrations, courses, users, attempts, operations.

Time is a ``SimClock`` that tests may advance. Operations move through their statuses as a
function of time; ``tick()`` (run before every request and by a background task) applies the
items that are due, in submission order, then input order.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncer.models import OperationType
from syncer.simulator import rules
from syncer.simulator.faults import FaultBook
from syncer.simulator.learners import AttemptBook, AttemptKey, Directory, User, attempt_dto
from syncer.simulator.operation import Operation, SimClock, iso
from syncer.simulator.settings import SimClient, SimulatorSettings


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for."""

    client_id: str
    company_id: str
    scopes: frozenset[str]
    expires_at: float


class SimState:
    """The whole simulated platform. Every public method is safe to call from any thread."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.clock = SimClock()
        self.faults = FaultBook()
        self._lock = threading.RLock()
        self._rng = random.Random(settings.seed)
        self._clients = {client.client_id: client for client in settings.clients}
        self._tokens: dict[str, Principal] = {}
        self._reset_data()

    def _reset_data(self) -> None:
        self.integrations: dict[str, dict[str, Any]] = {}
        self.integration_company: dict[str, str] = {}
        # Deleted integrations: their courses still list with the integration's group and platform.
        self.retired: dict[str, dict[str, Any]] = {}
        # (integration id, externalId) -> courseId, archived, course (the item), createdAt,
        # modifiedAt (epoch seconds), seq; and courseId -> that key.
        self.courses: dict[tuple[str, str], dict[str, Any]] = {}
        self.course_keys: dict[str, tuple[str, str]] = {}
        self.users = Directory()
        self.attempts = AttemptBook()
        self.operations: dict[str, Operation] = {}
        self.journal: deque[dict[str, Any]] = deque(maxlen=self.settings.journal_limit)
        self.peak_operations: dict[str, int] = {}
        self.peak_writes: dict[str, int] = {}
        self.peak_reads: dict[str, int] = {}
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._active: list[Operation] = []
        self._seq = 0
        # None: not modelled, every well-formed id exists (settings.groups / settings.authors).
        self.groups: set[str] | None = (
            None if self.settings.groups is None else {g.lower() for g in self.settings.groups}
        )
        self.authors: set[str] | None = (
            None if self.settings.authors is None else {a.lower() for a in self.settings.authors}
        )
        # The learners of `settings.users` exist from the start (sorted: ids follow the seed).
        for mail in sorted(self.settings.users or ()):
            if self.users.with_mail(mail) is None:
                self.users.add(self.new_id(), mail=mail)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state's lock (for a caller doing several steps at once)."""
        with self._lock:
            yield

    def new_id(self) -> str:
        """A fresh 24-hex ObjectId (deterministic for a given seed)."""
        with self._lock:
            return f"{self._rng.getrandbits(96):024x}"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- control ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all data, journal, peaks and fault rules; issued tokens stay valid."""
        with self._lock:
            self._reset_data()
            self.faults.clear()

    def expire_tokens(self) -> None:
        """Invalidate every issued token now."""
        with self._lock:
            self._tokens.clear()

    def add_integration(
        self,
        *,
        _id: str | None = None,
        externalPlatform: str = "Simulated Platform",
        groupId: str | None = None,
        authorId: str | None = None,
        company_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create an integration directly (no request, no checks) and return its DTO."""
        with self._lock:
            integration = {
                "_id": _id or self.new_id(),
                "externalPlatform": externalPlatform,
                "groupId": groupId or self.new_id(),
                "authorId": authorId or self.new_id(),
                **extra,
            }
            self.store_integration(integration, company_id or self.settings.clients[0].company_id)
            return dict(integration)

    def store_integration(self, integration: dict[str, Any], company_id: str) -> None:
        """Insert or replace an integration of a company."""
        with self._lock:
            self.integrations[integration["_id"]] = {"_seq": self._next_seq(), **integration}
            self.integration_company[integration["_id"]] = company_id

    def integration(self, company_id: str, integration_id: str) -> dict[str, Any] | None:
        """The integration's DTO when it exists and belongs to the company."""
        with self._lock:
            found = self.integrations.get(integration_id)
            if found is None or self.integration_company.get(integration_id) != company_id:
                return None
            return {k: v for k, v in found.items() if k != "_seq"}

    def company_integrations(self, company_id: str) -> list[tuple[int, dict[str, Any]]]:
        """The company's integrations as (sequence, DTO), oldest first."""
        with self._lock:
            return [
                (data["_seq"], {k: v for k, v in data.items() if k != "_seq"})
                for key, data in self.integrations.items()
                if self.integration_company.get(key) == company_id
            ]

    def delete_integration(self, integration_id: str) -> None:
        """Remove an integration; its courses are archived (and keep their ids)."""
        with self._lock:
            gone = self.integrations.pop(integration_id, None)
            if gone is not None:
                self.retired[integration_id] = gone
            now = self.clock.now()
            for (owner, _external), course in self.courses.items():
                if owner == integration_id:
                    self._set_archived(course, True, now)

    def integration_record(self, integration_id: str) -> dict[str, Any] | None:
        """An integration's data, also after it was deleted (its courses still name it)."""
        with self._lock:
            return self.integrations.get(integration_id) or self.retired.get(integration_id)

    @staticmethod
    def _set_archived(course: dict[str, Any], archived: bool, now: float) -> None:
        # UNDOCUMENTED: modifiedAt moves when the status changes; archiving an archived course
        # (or restoring a live one) leaves it.
        if course["archived"] != archived:
            course["archived"] = archived
            course["modifiedAt"] = now

    def set_archived(
        self, company_id: str, course_id: str, archived: bool
    ) -> tuple[tuple[str, str], dict[str, Any]] | str:
        """Archive or restore a course by its id: its key and record, or the error code."""
        with self._lock:
            key = self.course_keys.get(course_id.lower())
            if key is None or self.integration_company.get(key[0]) != company_id:
                # UNDOCUMENTED: a malformed id, or another company's course, is courseNotFound.
                return "courseNotFound"
            if key[0] not in self.integrations:
                # Documented: the external course is linked to an inactive (here: deleted)
                # integration; UNDOCUMENTED: refused both ways, archive and restore.
                return "integrationInactive"
            self._set_archived(self.courses[key], archived, self.clock.now())
            return key, self.courses[key]

    # -- groups and authors ----------------------------------------------------------------

    def declare(self, groups: Iterable[str] = (), authors: Iterable[str] = ()) -> None:
        """Make groups and authors exist; declaring the first one models that kind from then on."""
        with self._lock:
            if groups:
                self.groups = (self.groups or set()) | {g.lower() for g in groups}
            if authors:
                self.authors = (self.authors or set()) | {a.lower() for a in authors}

    def group_exists(self, group_id: str) -> bool:
        """Whether the group exists (UNDOCUMENTED: any well-formed id while groups are not modelled)."""
        with self._lock:
            known = self.groups is None or group_id.lower() in self.groups
            return rules.is_object_id(group_id) and known

    def user_of_id(self, user_id: str) -> User | None:
        """The user (learner or author) of an id; while authors are not modelled (UNDOCUMENTED)
        any well-formed id is an active user without a mail."""
        with self._lock:
            if not rules.is_object_id(user_id):
                return None
            found = self.users.by_id.get(user_id.lower())
            if found is None and (self.authors is None or user_id.lower() in self.authors):
                return User(user_id=user_id.lower(), seq=0)
            return found

    # -- users -----------------------------------------------------------------------------

    def add_user(self, mail: str, status: str | None = None, username: str | None = None) -> User:
        """Create a user (or give a known mail a new status/username); the simulator's control."""
        with self._lock:
            existing = self.users.with_mail(mail)
            if existing is None:
                return self.users.add(self.new_id(), mail=mail, status=status or "active", username=username)
            changes = {"status": status, "username": username}
            return self.users.update(existing, **{k: v for k, v in changes.items() if v is not None})

    def _learner(self, ref: dict[str, Any]) -> User | str:
        """The known learner a ``userIdentifier`` names, or the item's error message."""
        value = ref["value"]
        if ref["type"] == "mail":
            user_id = self.users.mail_ids.get(value.strip().lower())  # mail_key(), inlined
            user = self.users.by_id[user_id] if user_id is not None else None
            if user is None and self.settings.users is None:
                # UNDOCUMENTED: with `users` None every mail is a learner; the simulator does not
                # model user creation, so the user appears when a statistic first names it.
                user = self.users.add(self.new_id(), mail=value)
        else:
            if not rules.is_object_id(value):
                return f"User internalId {value!r} is not a valid id"
            # UNDOCUMENTED: every well-formed internalId is a learner: the user of that _id
            # (lowercased), created without a mail when first named.
            user = self.users.by_id.get(value.lower()) or self.users.add(value)
        # UNDOCUMENTED: a deleted user is not a known learner.
        if user is None or user.status == "deleted":
            return f"User with {ref['type']} {value!r} not found"
        return user

    def launch(self, integration_id: str, external_id: str, mail: str) -> tuple[dict[str, Any], bool] | str:
        """A learner launches a course from 360Learning: (CourseStatDTO, opened) or an error.

        Reference §7: the launch opens an attempt initialised from the integration's
        ``defaultProgress``/``defaultCompletion``.
        """
        with self._lock:
            integration = self.integrations.get(integration_id)
            course = self.courses.get((integration_id, external_id))
            if integration is None or course is None:
                return f"no course {external_id!r} in a live integration {integration_id!r}"
            if course["archived"]:
                return f"course {external_id!r} is archived"
            user = self._learner({"type": "mail", "value": mail})
            if isinstance(user, str):
                return user
            key: AttemptKey = (integration_id, course["courseId"], user.user_id)
            before = self.attempts.pairs.get(key, ())
            attempts, attempt = rules.launch(
                before,
                datetime.fromtimestamp(self.clock.now(), UTC),
                self.new_id(),
                default_progress=float(integration.get("defaultProgress", 0)),
                default_completion=bool(integration.get("defaultCompletion", False)),
            )
            self.attempts.put(key, attempts, len(before))
            return attempt_dto(key, attempt, course["course"]["defaultLang"]), len(attempts) > len(before)

    # -- tokens and limits -----------------------------------------------------------------

    def client(self, client_id: str) -> SimClient | None:
        """The configured client of that id."""
        return self._clients.get(client_id)

    def issue_token(self, client: SimClient) -> str:
        """A new opaque token for the client."""
        with self._lock:
            token = f"{self._rng.getrandbits(192):048x}"
            self._tokens[token] = Principal(
                client_id=client.client_id,
                company_id=client.company_id,
                scopes=client.scopes,
                expires_at=self.clock.now() + self.settings.token_lifetime,
            )
            return token

    def principal(self, token: str) -> Principal | None:
        """Who the token speaks for, unless it is unknown, revoked or expired."""
        with self._lock:
            found = self._tokens.get(token)
            if found is None or found.expires_at <= self.clock.now():
                return None
            return found

    def count_request(self, company_id: str, write: bool) -> bool:
        """Record one request in the company's 1 s window; False when it is over the rate."""
        kind = "write" if write else "read"
        rate = self.settings.write_rate if write else self.settings.read_rate
        with self._lock:
            now = self.clock.now()
            window = self._windows.setdefault((company_id, kind), deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            # UNDOCUMENTED: every request counts, refused ones included.
            window.append(now)
            peaks = self.peak_writes if write else self.peak_reads
            peaks[company_id] = max(peaks.get(company_id, 0), len(window))
            return rate is None or len(window) <= rate

    def unfinished(self, company_id: str) -> int:
        """How many of the company's operations are not finished."""
        with self._lock:
            now = self.clock.now()
            return sum(1 for op in self.operations.values() if op.company_id == company_id and now < op.ended)

    def record(self, method: str, path: str, status: int | None) -> None:
        """Append one request to the journal (no headers, no bodies: they may hold secrets)."""
        with self._lock:
            self.journal.append(
                {"method": method, "path": path, "status": status, "time": iso(self.clock.now())}
            )

    # -- operations ------------------------------------------------------------------------

    def submit(
        self,
        company_id: str,
        integration_id: str,
        op_type: OperationType,
        items: list[Any],
        fail_message: str | None = None,
    ) -> Operation:
        """Create an operation; it runs for ``op_seconds``."""
        with self._lock:
            op = Operation(
                op_id=self.new_id(),
                seq=self._next_seq(),
                op_type=op_type,
                company_id=company_id,
                integration_id=integration_id,
                items=items,
                created=self.clock.now(),
                duration=self.settings.op_seconds,
                fail_message=fail_message,
            )
            count = self.unfinished(company_id) + 1
            self.operations[op.op_id] = op
            self._active.append(op)
            self.peak_operations[company_id] = max(self.peak_operations.get(company_id, 0), count)
            self.tick()
            return op

    def operation(self, company_id: str, op_id: str) -> Operation | None:
        """The company's operation of that id."""
        with self._lock:
            op = self.operations.get(op_id)
            return op if op is not None and op.company_id == company_id else None

    def tick(self) -> None:
        """Apply every item that is due by now, operation by operation in submission order."""
        with self._lock:
            now = self.clock.now()
            for op in self._active:
                due = op.due(now)
                while len(op.results) < due:
                    item = op.items[len(op.results)]
                    op.results.append(self._apply(op, item))
                op.finished = now >= op.ended
            self._active = [op for op in self._active if not op.finished]

    def _apply(self, op: Operation, item: Any) -> dict[str, Any]:
        if op.type is OperationType.IMPORT_COURSES:
            outcome = self._import_course(op, item)
        elif op.type is OperationType.ARCHIVE_COURSES:
            outcome = self._archive_course(op, item)
        else:
            outcome = self._import_statistic(op, item)
        # UNDOCUMENTED: resourceId is the 360Learning course id (courses, archives) or the
        # attempt id (statistics).
        if outcome[0] == "success":
            return {"input": item, "status": "success", "resourceId": outcome[1]}
        return {"input": item, "status": "error", "errorMessage": outcome[1]}

    def _import_course(self, op: Operation, item: Any) -> tuple[str, str]:
        # UNDOCUMENTED: an item that violates the schema is an item error, not a 400 for the call.
        problem = rules.problem("bulk", "ExternalCourseDTO", item) if self.settings.check_items else None
        if problem:
            return "error", f"Invalid course: {problem}"
        key = (op.integration_id, item["externalId"])
        existing = self.courses.get(key)
        now = self.clock.now()
        if existing is None:
            course_id = self.new_id()
            self.course_keys[course_id] = key
            created, seq = now, self._next_seq()
        else:
            course_id, created, seq = existing["courseId"], existing["createdAt"], existing["seq"]
        # UNDOCUMENTED: re-importing an archived course makes it live again; every import
        # moves modifiedAt.
        self.courses[key] = {
            "courseId": course_id,
            "archived": False,
            "course": item,
            "createdAt": created,
            "modifiedAt": now,
            "seq": seq,
        }
        return "success", course_id

    def _archive_course(self, op: Operation, item: Any) -> tuple[str, str]:
        problem = (
            rules.problem("bulk", "ArchiveExternalCourseDTO", item) if self.settings.check_items else None
        )
        if problem:
            return "error", f"Invalid archive item: {problem}"
        existing = self.courses.get((op.integration_id, item["externalId"]))
        if existing is None:
            return "error", f"Course with externalId {item['externalId']!r} not found in this integration"
        # UNDOCUMENTED: archiving an already archived course succeeds again (idempotent).
        self._set_archived(existing, True, self.clock.now())
        return "success", str(existing["courseId"])

    def _find_course(self, integration_id: str, identifier: dict[str, Any]) -> dict[str, Any] | None:
        if identifier["type"] == "externalId":
            return self.courses.get((integration_id, identifier["value"]))
        # UNDOCUMENTED: an internalId course must belong to the same integration.
        key = self.course_keys.get(identifier["value"].lower())
        return self.courses[key] if key is not None and key[0] == integration_id else None

    def _import_statistic(self, op: Operation, item: Any) -> tuple[str, str]:
        problem = (
            rules.problem("bulk", "ImportExternalStatisticsDTO", item) if self.settings.check_items else None
        )
        if problem:
            return "error", f"Invalid statistic: {problem}"
        try:
            stat = rules.build_statistic(item)
        except ValueError as exc:
            return "error", f"Invalid statistic: {exc}"
        if stat.last_activity_at < stat.first_activity_at:
            # UNDOCUMENTED: lastActivityAt before firstActivityAt is an item error.
            return "error", "Invalid statistic: lastActivityAt is before firstActivityAt"
        course_ref, user_ref = item["courseIdentifier"], item["userIdentifier"]
        course = self._find_course(op.integration_id, course_ref)
        if course is None:
            return "error", f"Course {course_ref['type']} {course_ref['value']!r} not found"
        if course["archived"]:
            return "error", f"Course {course_ref['type']} {course_ref['value']!r} is archived"
        user = self._learner(user_ref)
        if isinstance(user, str):
            return "error", user
        key = (op.integration_id, course["courseId"], user.user_id)
        before = self.attempts.pairs.get(key, ())
        # (new_id() without its lock: tick() holds it; this runs for every imported statistic)
        new_id = f"{self._rng.getrandbits(96):024x}"
        attempts, touched = rules.apply_statistic(before, stat, new_id)
        if len(attempts) == len(before):
            self.attempts.pairs[key] = attempts  # an update: AttemptBook.put() without the call
        else:
            self.attempts.put(key, attempts, len(before))
        return "success", touched.attempt_id

    # -- views -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything, as the JSON data of ``GET /_sim/state``."""
        with self._lock:
            self.tick()
            now = self.clock.now()
            return {
                "now": iso(now),
                "integrations": [
                    {**dto, "companyId": self.integration_company[dto["_id"]]}
                    for company in sorted(set(self.integration_company.values()))
                    for _seq, dto in self.company_integrations(company)
                ],
                "courses": [
                    {
                        "integrationId": owner,
                        "externalId": external,
                        "courseId": course["courseId"],
                        "status": "archived" if course["archived"] else "live",
                        "createdAt": iso(course["createdAt"]),
                        "modifiedAt": iso(course["modifiedAt"]),
                        "course": course["course"],
                    }
                    for (owner, external), course in self.courses.items()
                ],
                "users": [user.dto() for user in self.users],
                "attempts": [
                    {
                        "integrationId": owner,
                        "courseId": course_id,
                        "user": self.users.by_id[user_id].label,
                        "userId": user_id,
                        "attempts": [attempt.as_json() for attempt in attempts],
                    }
                    for (owner, course_id, user_id), attempts in self.attempts.pairs.items()
                ],
                "operations": [
                    {
                        **op.dto(now),
                        "companyId": op.company_id,
                        "integrationId": op.integration_id,
                        "items": len(op.items),
                        "processed": len(op.results),
                        "successes": sum(1 for r in op.results if r["status"] == "success"),
                        "errors": sum(1 for r in op.results if r["status"] == "error"),
                    }
                    for op in self.operations.values()
                ],
                "journal": list(self.journal),
                "peaks": {
                    "unfinished_operations": dict(self.peak_operations),
                    "writes_per_second": dict(self.peak_writes),
                    "reads_per_second": dict(self.peak_reads),
                },
                "faults": self.faults.as_json(),
            }
