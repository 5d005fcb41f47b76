"""One-line pieces the plan, run and ledger reports share: counts, keys, invalid rows, held statistics."""

from __future__ import annotations

import orjson

from syncer.models import InvalidRow, RecordKind, UnsafeStat
from syncer.plan import Plan

HELD_WHY = "not sent: the platform would refuse them, or their predicted effect on its attempts is unsafe"


def number(value: int) -> str:
    """``1,204``: a count with thousands separators."""
    return f"{value:,}"


def short_time(value: str) -> str:
    """``2025-03-01T09:00:00.000Z`` as ``2025-03-01T09:00Z``: seconds and milliseconds only when
    not zero (as the attempt prediction's reasons write them)."""
    if len(value) == 24 and value.endswith(":00.000Z"):
        return value[:16] + "Z"
    if len(value) == 24 and value.endswith(".000Z"):
        return value[:19] + "Z"
    return value


def key_text(kind: RecordKind | str, key: str) -> str:
    """A record's key as a person reads it: a statistic's ``ACME-12 · learner@x · 2025-03-01T09:00Z``
    (course, learner, first activity; ``models.stat_key`` keeps them as a JSON array), a course's
    as it is."""
    if kind != RecordKind.STAT or not key.startswith("["):
        return key
    try:
        _ctype, course, _utype, learner, first = orjson.loads(key)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return key
    return f"{course} · {learner} · {short_time(str(first))}"


def invalid_text(row: InvalidRow) -> str:
    """``ORIGIN  INTEGRATION KIND  FIELD: REASON``: one invalid row."""
    field = row.field or "-"
    return f"{row.origin}  {row.integration} {row.kind.value}  {field}: {row.reason}"


def unsafe_text(stat: UnsafeStat) -> str:
    """``! INTEGRATION stat KEY (ORIGIN): EFFECT: REASON``: one statistic with an unsafe effect."""
    key = key_text(RecordKind.STAT, stat.key)
    return f"! {stat.integration} stat {key} ({stat.origin}): {stat.effect.label}: {stat.reason}"


def held_stats(plan: Plan) -> list[UnsafeStat]:
    """The plan's held statistics, as far as it keeps them in detail."""
    return [u for u in plan.unsafe if u.held]
