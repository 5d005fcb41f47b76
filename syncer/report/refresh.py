"""``syncer refresh``: what was read back from the platform and recorded, as text or JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from syncer.refresh import RefreshReport
from syncer.report.pieces import number
from syncer.report.plan import DRIFT_LIMIT, drift_text


def refresh_data(report: RefreshReport) -> dict[str, Any]:
    """The refresh as JSON-ready data."""
    return {
        "integrations": [
            {
                "name": i.name,
                "state": i.state,
                "api_id": i.api_id,
                "previous_id": i.previous_id,
                "renamed_from": i.renamed_from,
                "records_forgotten": i.forgotten,
                "courses_read": i.courses_read,
                "courses_adopted": i.courses_adopted,
                "attempts_read": i.attempts_read,
                "stats_adopted": i.stats_adopted,
                "foreign_attempts": i.foreign_attempts,
                "drift_total": len(i.drift),
                "drift": [
                    {k: v for k, v in asdict(d).items() if k != "integration"} for d in i.drift[:DRIFT_LIMIT]
                ],
            }
            for i in report.integrations
        ],
        "users_listed": report.users_listed,
        "users_read": report.users_read,
        "reads": report.reads,
        "seconds": round(report.seconds, 3),
    }


def render_refresh(report: RefreshReport, fmt: str = "text") -> str:
    """One paragraph per integration, then the learners; JSON with ``fmt="json"``."""
    if fmt == "json":
        return orjson.dumps(refresh_data(report), option=orjson.OPT_INDENT_2).decode() + "\n"
    lines: list[str] = []
    for i in report.integrations:
        head = f"{i.name}: "
        if i.state == "not on the platform":
            head += "not on the platform (apply creates it"
            head += f" and sends its {number(i.forgotten)} records again)" if i.forgotten else ")"
            lines.append(head)
        else:
            if i.state == "recreated":
                head += f"recreated on the platform ({i.previous_id} -> {i.api_id}): "
                head += f"{number(i.forgotten)} records will be sent again, courses first; "
            else:
                head += f"{i.api_id}; "
            head += (
                f"courses {number(i.courses_read)} read, {number(i.courses_adopted)} adopted; "
                f"attempts {number(i.attempts_read)} read, {number(i.stats_adopted)} statistics adopted, "
                f"{number(i.foreign_attempts)} made by others"
            )
            lines.append(head)
        if i.renamed_from:
            lines.append(f"  renamed from {i.renamed_from} in the config: its records are kept")
        shown = i.drift[:DRIFT_LIMIT]
        if shown:
            lines.append(f"  drift (showing {number(len(shown))} of {number(len(i.drift))}):")
            lines.extend(f"    {drift_text(d)}" for d in shown)
    if report.users_listed:
        lines.append(
            f"learners: {number(report.users_read)} listed; the plan now holds statistics of learners "
            "the platform does not have"
        )
    lines.append(
        f"{number(report.reads)} reads in {report.seconds:.1f} s; nothing was written to the platform"
    )
    return "\n".join(lines) + "\n"
