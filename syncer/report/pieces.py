"""One-line pieces the plan, run and ledger reports share: counts, invalid rows, held statistics."""

from __future__ import annotations

from syncer.models import InvalidRow, UnsafeStat
from syncer.plan import Plan

HELD_WHY = "not sent: the platform would refuse them, or their predicted effect on its attempts is unsafe"


def number(value: int) -> str:
    """``1,204``: a count with thousands separators."""
    return f"{value:,}"


def invalid_text(row: InvalidRow) -> str:
    """``ORIGIN  INTEGRATION KIND  FIELD: REASON``: one invalid row."""
    field = row.field or "-"
    return f"{row.origin}  {row.integration} {row.kind.value}  {field}: {row.reason}"


def unsafe_text(stat: UnsafeStat) -> str:
    """``! INTEGRATION stat KEY (ORIGIN): EFFECT: REASON``: one statistic with an unsafe effect."""
    return f"! {stat.integration} stat {stat.key} ({stat.origin}): {stat.effect.label}: {stat.reason}"


def held_stats(plan: Plan) -> list[UnsafeStat]:
    """The plan's held statistics, as far as it keeps them in detail."""
    return [u for u in plan.unsafe if u.held]
