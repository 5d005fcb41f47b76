"""The simulator's pure rules: request validation against the official schemas, and attempts.

``openapi.json`` beside this module is a copy of ``tests/openapi/facts.json`` (the facts-only
extract of the official OpenAPI documents); a test keeps the two identical.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_SPEC = Path(__file__).with_name("openapi.json")


@cache
def spec() -> dict[str, Any]:
    """The official documents' facts (``bulk`` and ``core``), as data."""
    return json.loads(_SPEC.read_text("utf-8"))  # type: ignore[no-any-return]


def _closed(node: Any) -> Any:
    # UNDOCUMENTED: the official schemas do not forbid unknown properties; the simulator does,
    # so that a typo in a client's field name is an error here instead of being silently ignored.
    if isinstance(node, dict):
        out = {key: _closed(value) for key, value in node.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_closed(value) for value in node]
    return node


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (f"urn:sim:{name}", Resource.from_contents(_closed(copy.deepcopy(doc)), DRAFT202012))
        for name, doc in spec().items()
    )


@cache
def validator(doc: str, component: str) -> Draft202012Validator:
    """A strict validator (unknown properties refused) for one component of ``bulk``/``core``."""
    schema = {"$ref": f"urn:sim:{doc}#/components/schemas/{component}"}
    return Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())


def problem(doc: str, component: str, value: Any) -> str | None:
    """The most relevant schema violation of ``value`` as ``field: message``, or None."""
    error = best_match(validator(doc, component).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def is_object_id(value: Any) -> bool:
    """True for a 24-hex ObjectId string."""
    return isinstance(value, str) and len(value) == 24 and all(c in "0123456789abcdefABCDEF" for c in value)


def parse_time(value: str) -> datetime:
    """An ISO 8601 date-time with a zone, as an aware UTC datetime (ValueError otherwise)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is UTC:  # the usual "...Z": already UTC (this runs twice per statistic)
        return parsed
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC ``YYYY-MM-DDThh:mm:ss.sssZ``, the API's timestamp format."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Attempt:
    """One attempt of a learner at a course."""

    attempt_id: str
    first_activity_at: datetime
    last_activity_at: datetime
    completed_at: datetime | None
    progress: float
    time_spent: float
    score: float | None = None
    result: str | None = None
    lang: str | None = None

    @property
    def end(self) -> datetime:
        """Where the attempt ends: its completion, else its last activity."""
        return self.completed_at or self.last_activity_at

    def as_json(self) -> dict[str, Any]:
        """The attempt as JSON data for ``/_sim/state``."""
        return {
            "_id": self.attempt_id,
            "firstActivityAt": format_time(self.first_activity_at),
            "lastActivityAt": format_time(self.last_activity_at),
            "completedAt": format_time(self.completed_at) if self.completed_at else None,
            "progress": self.progress,
            "timeSpent": self.time_spent,
            "score": self.score,
            "result": self.result,
            "lang": self.lang,
        }


@dataclass(frozen=True)
class Statistic:
    """The parts of one imported statistic that the attempt rules use."""

    first_activity_at: datetime
    last_activity_at: datetime
    progress: float
    time_spent: float
    force_new: bool = False
    score: float | None = None
    result: str | None = None
    lang: str | None = None


def build_statistic(item: dict[str, Any]) -> Statistic:
    """A Statistic from a schema-valid ``ImportExternalStatisticsDTO`` item."""
    return Statistic(
        first_activity_at=parse_time(item["firstActivityAt"]),
        last_activity_at=parse_time(item["lastActivityAt"]),
        progress=float(item["progress"]),
        time_spent=float(item["timeSpent"]),
        force_new=bool(item.get("forceNew", False)),
        score=item.get("score"),
        result=item.get("result"),
        lang=item.get("lang"),
    )


def target_attempt(attempts: tuple[Attempt, ...], stat: Statistic) -> int | None:
    """The index of the attempt a statistic updates, or None when it creates a new one.

    New attempt: ``forceNew``, no attempt yet, or ``firstActivityAt`` later than the end of every
    attempt (documented). Else the latest non-completed attempt whose end is not before
    ``firstActivityAt`` is updated, or a new attempt is appended when there is none.
    """
    if stat.force_new or not attempts:
        return None
    if all(stat.first_activity_at > attempt.end for attempt in attempts):
        return None
    for index in range(len(attempts) - 1, -1, -1):
        attempt = attempts[index]
        # UNDOCUMENTED: an end equal to firstActivityAt counts as overlap (>=, not >), and "latest"
        # means the most recently created attempt.
        if attempt.completed_at is None and attempt.end >= stat.first_activity_at:
            return index
    # UNDOCUMENTED: overlapping only completed attempts appends a new attempt.
    return None


def apply_statistic(
    attempts: tuple[Attempt, ...], stat: Statistic, new_id: str
) -> tuple[tuple[Attempt, ...], Attempt]:
    """The attempts after one statistic, and the attempt it created or updated."""
    completed_at = stat.last_activity_at if stat.progress >= 100 else None
    index = target_attempt(attempts, stat)
    if index is None:
        created = Attempt(
            attempt_id=new_id,
            first_activity_at=stat.first_activity_at,
            last_activity_at=stat.last_activity_at,
            completed_at=completed_at,
            progress=stat.progress,
            time_spent=stat.time_spent,
            score=stat.score,
            result=stat.result,
            lang=stat.lang,
        )
        return (*attempts, created), created
    old = attempts[index]
    # UNDOCUMENTED: an update overwrites progress, timeSpent, lastActivityAt and the optional
    # fields it carries (no merge, progress may go down); firstActivityAt keeps the earlier one.
    updated = Attempt(  # every field given: dataclasses.replace() costs twice as much
        attempt_id=old.attempt_id,
        first_activity_at=min(old.first_activity_at, stat.first_activity_at),
        last_activity_at=stat.last_activity_at,
        completed_at=completed_at,
        progress=stat.progress,
        time_spent=stat.time_spent,
        score=stat.score if stat.score is not None else old.score,
        result=stat.result if stat.result is not None else old.result,
        lang=stat.lang if stat.lang is not None else old.lang,
    )
    return (*attempts[:index], updated, *attempts[index + 1 :]), updated


def launch(
    attempts: tuple[Attempt, ...],
    moment: datetime,
    new_id: str,
    *,
    default_progress: float,
    default_completion: bool,
) -> tuple[tuple[Attempt, ...], Attempt]:
    """The attempts after a learner launches the course at ``moment``, and the launched attempt.

    Reference §7: a launch opens an attempt initialised from the integration's
    ``defaultProgress``/``defaultCompletion``.
    """
    for attempt in reversed(attempts):
        if attempt.completed_at is None:
            # UNDOCUMENTED: with an open (not completed) attempt, from a launch or a statistic,
            # the launch resumes it unchanged: no new attempt.
            return attempts, attempt
    # UNDOCUMENTED: a launch spends 1 ms (the least a statistic may report) and has no lang;
    # defaultCompletion completes it at once with progress 100.
    opened = Attempt(
        attempt_id=new_id,
        first_activity_at=moment,
        last_activity_at=moment,
        completed_at=moment if default_completion else None,
        progress=100.0 if default_completion else default_progress,
        time_spent=1.0,
    )
    return (*attempts, opened), opened
