"""``syncer doctor``'s lines: one per check, marked ✓ ✗ ⚠ or -, each fix on the lines below it.

Plain text, readable without colour; the last line sums up (the CLI sets the exit code).
"""

from __future__ import annotations

from syncer.doctor import CheckStatus, DoctorReport

__all__ = ["MARKS", "render_doctor"]

MARKS = {CheckStatus.OK: "✓", CheckStatus.FAIL: "✗", CheckStatus.WARN: "⚠", CheckStatus.SKIP: "-"}
"""The mark of each status: plain characters, readable without colour."""


def render_doctor(report: DoctorReport) -> str:
    """The report as text: ``✓ name: detail``, ``- name: skipped (why)``, fixes indented below."""
    lines = []
    for check in report.checks:
        if check.status is CheckStatus.SKIP:
            lines.append(f"{MARKS[check.status]} {check.name}: skipped ({check.detail})")
            continue
        lines.append(f"{MARKS[check.status]} {check.name}: {check.detail}")
        # A failure's fix is introduced by "fix:" and its lines aligned after it.
        lead = "    fix: " if check.status is CheckStatus.FAIL else "    "
        for index, fix in enumerate(check.fix):
            lines.append(f"{lead if index == 0 else ' ' * len(lead)}{fix}")
    failed = sum(1 for check in report.checks if check.status is CheckStatus.FAIL)
    warned = sum(1 for check in report.checks if check.status is CheckStatus.WARN)
    if failed:
        them = "them" if failed > 1 else "it"
        lines.append(f"{failed} check{'s' * (failed != 1)} failed: fix {them} and run syncer doctor again")
    else:
        lines.append("all checks passed" + (f" ({warned} warning{'s' * (warned != 1)})" if warned else ""))
    return "\n".join(lines) + "\n"
