"""Frozen dataclasses and statuses shared by the pipeline's stages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, overload

import orjson


class RecordKind(StrEnum):
    """What a record describes."""

    COURSE = "course"
    STAT = "stat"
    ARCHIVE = "archive"


class RecordStatus(StrEnum):
    """Where a record stands in the ledger."""

    PENDING = "pending"  # recorded in a batch, not (yet) known to be applied
    SYNCED = "synced"  # an operation carrying it completed with a `success` item
    REJECTED = "rejected"  # the API answered an `error` item for it


class OperationType(StrEnum):
    """Bulk operation types syncer submits (the API's own names)."""

    IMPORT_COURSES = "importExternalCourses"
    IMPORT_STATS = "importExternalStatistics"
    ARCHIVE_COURSES = "archiveExternalCourses"


class OperationStatus(StrEnum):
    """An operation's status: the API's five, plus ``prepared``."""

    PREPARED = "prepared"
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        """True for the terminal statuses."""
        return self in (OperationStatus.COMPLETED, OperationStatus.ERROR)


@dataclass(frozen=True, slots=True)
class Row:
    """One source row with its origin (``courses.csv:17``, ``events.jsonl:3``, ``lms row 42``)."""

    origin: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """One desired API object with its key and a stable content hash.

    ``group`` and ``order`` serve batching: all statistics of one (course, user) pair share a
    ``group`` and are sent in ``order`` (their ``firstActivityAt``). ``activity`` is the
    ``lastActivityAt`` used to pick the winner among duplicate keys.
    """

    integration: str
    kind: RecordKind
    key: str
    payload: Mapping[str, Any]
    hash: str
    origin: str
    group: str = ""
    order: str = ""
    activity: str = ""
    digest: int | None = None  # of the source row (file sources): see syncer/sources/digest.py


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A source row that cannot become a valid API object, and why."""

    integration: str
    kind: RecordKind
    origin: str
    field: str | None
    reason: str
    key: str | None = None


StagedRow = tuple[str, str, str, str, str, str, str, int | None]
"""A valid record as the planner stages it, without a Record object per row (millions of rows):
(key, hash, payload as canonical JSON text, origin, group, order, activity, source digest)."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item of a bulk operation's results."""

    position: int
    success: bool
    resource_id: str | None
    message: str | None
    input: Mapping[str, Any]


class CanonicalJson(Mapping[str, Any]):
    """A payload kept as its canonical JSON text (``dumps_canonical``), decoded on first use.

    The plan stages each payload as that text; a first sync reads a million of them back and
    sends them, stores them and hashes them without needing the values: kept as text, a record
    holds one string instead of three dicts, and the text goes to the request, the ledger and
    the request hash as it is (``payload_json``). Equal to a dict of the same values.
    """

    __slots__ = ("_value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._value: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._value is None:
            self._value = orjson.loads(self.text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"CanonicalJson({self.text!r})"


def payload_json(payload: Mapping[str, Any]) -> bytes:
    """A payload's canonical JSON bytes (its own text when it is kept as text)."""
    if type(payload) is CanonicalJson:
        return payload.text.encode()
    return dumps_canonical(payload if type(payload) is dict else dict(payload))


class Payloads(Sequence[Mapping[str, Any]]):
    """A batch's payloads as canonical JSON texts: the request body is their join, and each item
    is decoded only where its values are needed (matching the results), one at a time."""

    __slots__ = ("_texts",)

    def __init__(self, texts: Sequence[str]) -> None:
        self._texts = texts

    @classmethod
    def of(cls, payloads: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """``payloads`` as texts when every one is kept as text; otherwise as plain dicts."""
        if payloads and all(type(p) is CanonicalJson for p in payloads):
            return cls([p.text for p in payloads])  # type: ignore[attr-defined]
        return [p if type(p) is dict else dict(p) for p in payloads]

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | Sequence[Mapping[str, Any]]:
        if isinstance(index, slice):
            return Payloads(self._texts[index])
        decoded: dict[str, Any] = orjson.loads(self._texts[index])
        return decoded

    @property
    def texts(self) -> Sequence[str]:
        """The canonical JSON texts, in order."""
        return self._texts

    def json_array(self) -> bytes:
        """The JSON array of the payloads, as the request body holds it."""
        return ("[" + ",".join(self._texts) + "]").encode()


def dumps_canonical(value: Any) -> bytes:
    """JSON bytes with sorted keys: the same value gives the same bytes in every process."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_hash(payload: Mapping[str, Any]) -> str:
    """A content hash stable across processes, runs and key order (hex, 32 chars)."""
    return hashlib.blake2b(dumps_canonical(payload), digest_size=16).hexdigest()


def course_key(external_id: str) -> str:
    """The ledger key of a course (and of its archive)."""
    return external_id


def stat_group(course: Mapping[str, Any], user: Mapping[str, Any]) -> str:
    """The (course, user) pair of a statistic, as a string key."""
    return orjson.dumps([course["type"], course["value"], user["type"], user["value"]]).decode()


def stat_key(course: Mapping[str, Any], user: Mapping[str, Any], first_activity_at: str) -> str:
    """The ledger key of a statistic: course, user and firstActivityAt."""
    return orjson.dumps(
        [course["type"], course["value"], user["type"], user["value"], first_activity_at]
    ).decode()


class ChangeAction(StrEnum):
    """Why a record is in a plan."""

    NEW = "new"  # never sent, or a course archived earlier and back in the source
    CHANGED = "changed"  # its content differs from what the ledger last sent
    RESEND = "resend"  # sent before but never confirmed (pending)
    RETRY = "retry"  # rejected before, unchanged, sent again on request (--retry-rejected)
    ARCHIVE = "archive"  # a live course gone from the source
    HELD = "held"  # a statistic whose predicted effect on the platform's attempts is unsafe


class Effect(StrEnum):
    """What the platform will do with a statistic, predicted from the attempts syncer knows.

    docs/attempts.md explains each with an example. ``NEW_ATTEMPT`` and ``UPDATE`` are safe;
    the others are held unless the integration says ``stats.on_unsafe_change: send``.
    """

    NEW_ATTEMPT = "new_attempt"  # opens an attempt of its own
    UPDATE = "update"  # lands on its own attempt and on no other
    DUPLICATE = "duplicate"  # its own attempt exists, but the platform would open a second one
    OVERWRITES = "overwrites_another"  # another open attempt of the pair would take its values
    UNDEFINED = "undefined"  # no documented branch applies (equal times, completed overlap)
    # Preflight (docs/refresh.md): the platform would refuse it; held whatever on_unsafe_change says.
    UNKNOWN_LEARNER = "unknown_learner"  # not a learner of the platform (after refresh --users)
    COURSE_MISSING = "course_missing"  # the course is neither live on the platform nor imported now

    @property
    def safe(self) -> bool:
        """True for the effects that are sent without asking."""
        return self in (Effect.NEW_ATTEMPT, Effect.UPDATE)

    @property
    def label(self) -> str:
        """The effect in words, as plans print it."""
        return _EFFECT_LABELS[self]


_EFFECT_LABELS = {
    Effect.NEW_ATTEMPT: "new attempt",
    Effect.UPDATE: "update",
    Effect.DUPLICATE: "duplicate",
    Effect.OVERWRITES: "overwrites another attempt",
    Effect.UNDEFINED: "undefined",
    Effect.UNKNOWN_LEARNER: "unknown learner",
    Effect.COURSE_MISSING: "course not on the platform",
}


@dataclass(frozen=True, slots=True)
class UnsafeStat:
    """A statistic whose predicted effect is unsafe: held (not sent), or sent by the integration's choice.

    ``action`` is what the plan would otherwise do with it (new, changed, resend, retry).
    """

    integration: str
    key: str
    origin: str
    action: ChangeAction
    effect: Effect
    reason: str
    held: bool = True


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of a changed record: what the ledger last sent and what would be sent now."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Change:
    """One record of a plan, with field-level detail when it changed."""

    integration: str
    kind: RecordKind
    key: str
    action: ChangeAction
    origin: str
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True, slots=True)
class KindCounts:
    """How the desired records of one kind compare with the ledger."""

    new: int = 0
    changed: int = 0
    resend: int = 0
    retry: int = 0
    unchanged: int = 0
    skipped: int = 0  # rejected before and unchanged: not sent again
    held: int = 0  # statistics whose predicted effect is unsafe: not sent (not in to_send)

    @property
    def to_send(self) -> int:
        """Records that the plan sends."""
        return self.new + self.changed + self.resend + self.retry


@dataclass(frozen=True, slots=True)
class IntegrationSummary:
    """The plan of one integration, in numbers."""

    name: str
    courses: KindCounts
    stats: KindCounts
    archives: int
    live_courses: int
    invalid: int
    batches: Mapping[str, int]  # OperationType value -> number of bulk calls
    guard: str | None = None  # mass-archive guard violation, if any
    # What a person should know, though nothing stops: a source that gave no rows.
    warnings: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        """True when this integration has anything to send."""
        return self.courses.to_send + self.stats.to_send + self.archives > 0
