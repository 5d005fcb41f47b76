"""The end-of-apply summary: per integration what was sent, synced, rejected, invalid, held."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncer.report.pieces import HELD_WHY, held_stats, invalid_text, number, unsafe_text

if TYPE_CHECKING:  # the apply package pulls in aiohttp: `syncer plan` does not need it
    from syncer.apply import RunReport

RUN_DETAIL_LIMIT = 20
IN_STEP = "nothing to send: the platform is in step with the sources"
"""The first line (alone, unless invalid rows follow) of a run that had nothing to send."""


def render_run(report: RunReport) -> str:
    """The end-of-apply summary: per integration what was sent, synced, rejected, invalid, held.

    A run that sent nothing and holds nothing back says so in its first line, alone unless there
    are invalid rows to list: ``nothing to send: the platform is in step with the sources``.
    """
    lines: list[str] = []
    if report.resumed:
        lines.append(f"resumed {number(report.resumed)} operation(s) left in flight by an earlier run")
    in_step = not report.submissions and not report.resumed and not report.held
    if in_step:
        lines.append(f"{IN_STEP}{_invalid_note(report)}")
    for name, o in report.integrations.items() if not in_step else ():
        tolerance = ""
        if o.invalid:
            tolerance = " (beyond tolerate_invalid)" if o.invalid_beyond_tolerance else " (tolerated)"
        lines.append(
            f"{name}: {number(o.operations)} operation(s) | synced {number(o.synced)} | "
            f"rejected {number(o.rejected)} | invalid {number(o.invalid)}{tolerance}"
            + (f" | held {number(o.held)}" if o.held else "")
            + (f" | {o.failed_operations} operation(s) ended in error" if o.failed_operations else "")
        )
        lines.extend(f"  {message}" for message in o.messages[:RUN_DETAIL_LIMIT])
    plan = report.plan
    if plan is not None and plan.invalid_rows:
        lines.append("invalid rows (never sent):")
        lines.extend(f"  {invalid_text(row)}" for row in plan.invalid_rows[:RUN_DETAIL_LIMIT])
        more = plan.invalid_total - min(len(plan.invalid_rows), RUN_DETAIL_LIMIT)
        if more > 0:
            lines.append(f"  and {number(more)} more: see `syncer rejected CONFIG`")
    if plan is not None and report.held:
        held = held_stats(plan)[:RUN_DETAIL_LIMIT]
        lines.append(f"held statistics ({HELD_WHY}):")
        lines.extend(f"  {unsafe_text(u)}" for u in held)
        if report.held > len(held):
            lines.append(f"  and {number(report.held - len(held))} more")
    if report.rejected:
        lines.append("rejected records: see `syncer rejected CONFIG`")
    if report.held:
        lines.append("held statistics: see `syncer rejected CONFIG`")
    if not report.submissions and not report.resumed and report.held:
        lines.append("nothing else to send")
    return "\n".join(lines) + "\n"


def _invalid_note(report: RunReport) -> str:
    """`` (5 invalid rows, tolerated)`` when a run in step still has invalid rows, else nothing."""
    invalid = sum(o.invalid for o in report.integrations.values())
    if not invalid:
        return ""
    beyond = any(o.invalid_beyond_tolerance for o in report.integrations.values() if o.invalid)
    verdict = "beyond tolerate_invalid" if beyond else "tolerated"
    return f" ({number(invalid)} invalid row{'s' * (invalid != 1)}, {verdict})"
