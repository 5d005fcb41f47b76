"""Render a Plan as text, markdown (pull-request comments) or JSON. No logic beyond layout."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from syncer.ledger import Ledger
from syncer.models import (
    Change,
    ChangeAction,
    FieldChange,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    UnsafeStat,
)
from syncer.plan import Plan

if TYPE_CHECKING:  # the engine pulls in aiohttp: `syncer plan` does not need it
    from syncer.apply import RunReport

__all__ = [
    "FORMATS",
    "MARKDOWN_LIMIT",
    "plan_data",
    "render_json",
    "render_markdown",
    "render_plan",
    "render_rejected",
    "render_run",
    "render_status",
    "render_text",
    "status_data",
]

FORMATS = ("text", "json", "markdown")
FORMAT_VERSION = 2
MARKDOWN_LIMIT = 60_000
"""GitHub refuses comments over 65,536 characters: stay well under."""
_VALUE_WIDTH = 120
_SIGN = {
    ChangeAction.NEW: "+",
    ChangeAction.CHANGED: "~",
    ChangeAction.RESEND: "~",
    ChangeAction.RETRY: "~",
    ChangeAction.ARCHIVE: "-",
}


def render_plan(plan: Plan, fmt: str) -> str:
    """The plan in one of ``FORMATS``."""
    if fmt == "json":
        return render_json(plan)
    if fmt == "markdown":
        return render_markdown(plan)
    return render_text(plan)


# -- pieces -------------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _statistics(count: int) -> str:
    return f"{_n(count)} statistic" + ("" if count == 1 else "s")


def _sent_again(c: KindCounts) -> int:
    return c.changed + c.resend + c.retry


def _summary_parts(s: IntegrationSummary) -> tuple[str, str, str]:
    courses = f"courses +{_n(s.courses.new)} ~{_n(_sent_again(s.courses))} -{_n(s.archives)}"
    stats = f"stats +{_n(s.stats.new)} ~{_n(_sent_again(s.stats))} ={_n(s.stats.unchanged)}"
    if s.stats.held:
        stats += f" held {_n(s.stats.held)}"
    skipped = s.courses.skipped + s.stats.skipped
    extra = f"invalid {_n(s.invalid)}" + (f" | rejected, not resent {_n(skipped)}" if skipped else "")
    return courses, stats, extra


def summary_line(s: IntegrationSummary) -> str:
    """``acme: courses +12 ~3 -2 | stats +1,204 ~311 =48,992 held 7 | invalid 5`` (held when any)."""
    return f"{s.name}: " + " | ".join(_summary_parts(s))


def _value(value: Any) -> str:
    text = "(none)" if value is None else orjson.dumps(value).decode()
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _field_text(f: FieldChange) -> str:
    return f"{f.field}: {_value(f.old)} -> {_value(f.new)}"


def _change_head(c: Change) -> str:
    what = f"{c.action.value}" if c.action in (ChangeAction.RESEND, ChangeAction.RETRY) else ""
    tail = f" [{what}]" if what else ""
    return f"{_SIGN[c.action]} {c.integration} {c.kind.value} {c.key} ({c.origin}){tail}"


def _invalid_text(row: InvalidRow) -> str:
    field = row.field or "-"
    return f"{row.origin}  {row.integration} {row.kind.value}  {field}: {row.reason}"


def _unsafe_text(stat: UnsafeStat) -> str:
    return f"! {stat.integration} stat {stat.key} ({stat.origin}): {stat.effect.label}: {stat.reason}"


def _held(plan: Plan) -> list[UnsafeStat]:
    return [u for u in plan.unsafe if u.held]


def _sent_unsafe(plan: Plan) -> list[UnsafeStat]:
    return [u for u in plan.unsafe if not u.held]


_HELD_WHY = "not sent: the predicted effect on the platform's attempts is unsafe"
_SENT_UNSAFE_TITLE = "Sent despite an unsafe effect (on_unsafe_change: send)"


# -- text -----------------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    """One summary line per integration, then capped detail."""
    lines = [summary_line(s) for s in plan.integrations]
    for s in plan.integrations:
        if s.guard:
            lines.append(f"guard: {s.guard}")
    if plan.held_total:
        lines.append(f"held: {_statistics(plan.held_total)} {_HELD_WHY}; apply exits 3 (listed below)")
    if not plan.has_changes:
        lines.append("No changes.")
    if plan.changes:
        lines += ["", f"Changes (showing {_n(len(plan.changes))} of {_n(plan.changes_total)}):"]
        for change in plan.changes:
            lines.append(f"  {_change_head(change)}")
            lines.extend(f"      {_field_text(f)}" for f in change.fields)
    sent_unsafe, sent_unsafe_total = _sent_unsafe(plan), plan.unsafe_total - plan.held_total
    if sent_unsafe_total:
        lines += ["", f"{_SENT_UNSAFE_TITLE} (showing {_n(len(sent_unsafe))} of {_n(sent_unsafe_total)}):"]
        lines.extend(f"  {_unsafe_text(u)}" for u in sent_unsafe)
    if plan.invalid_rows:
        lines += ["", f"Invalid rows (showing {_n(len(plan.invalid_rows))} of {_n(plan.invalid_total)}):"]
        lines.extend(f"  {_invalid_text(row)}" for row in plan.invalid_rows)
    if plan.held_total:
        held = _held(plan)
        # Last: on a terminal the end of the output is what stays in sight.
        lines += ["", f"Held statistics (showing {_n(len(held))} of {_n(plan.held_total)}):"]
        lines.extend(f"  {_unsafe_text(u)}" for u in held)
    return "\n".join(lines) + "\n"


# -- markdown -------------------------------------------------------------------------------------


def _md(text: str) -> str:
    # Keep table cells and list items intact: no pipes, no line breaks, no stray markup.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _md_change(c: Change) -> str:
    head = f"- `{_SIGN[c.action]}` **{_md(c.integration)}** {c.kind.value} `{_md(c.key)}` ({_md(c.origin)})"
    if c.action in (ChangeAction.RESEND, ChangeAction.RETRY):
        head += f" _{c.action.value}_"
    if c.fields:
        head += ": " + "; ".join(
            f"{_md(f.field)} `{_md(_value(f.old))}` → `{_md(_value(f.new))}`" for f in c.fields
        )
    return head


def _md_unsafe(stat: UnsafeStat) -> str:
    return (
        f"- `!` **{_md(stat.integration)}** stat `{_md(stat.key)}` ({_md(stat.origin)}): "
        f"_{stat.effect.label}_: {_md(stat.reason)}"
    )


def _md_invalid(row: InvalidRow) -> str:
    field = row.field or "-"
    return (
        f"- `{_md(row.origin)}` **{_md(row.integration)}** {row.kind.value} `{_md(field)}`: {_md(row.reason)}"
    )


def _bounded(lines: Iterable[str], budget: int, total: int, noun: str) -> tuple[list[str], int]:
    """Lines up to ``budget`` characters; then an "and N more" line counted against ``total``."""
    out: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        out.append(line)
        used += len(line) + 1
    if total > len(out):
        out.append(f"- … and {_n(total - len(out))} more {noun}")
        used += len(out[-1]) + 1
    return out, used


def render_markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment: summary table, then detail in <details>; never over ``limit``."""
    head = ["### syncer plan", ""]
    sent_unsafe_total = plan.unsafe_total - plan.held_total
    if plan.held_total:
        head += [
            f"> **Warning: {_statistics(plan.held_total)} held**, {_HELD_WHY}; "
            "`syncer apply` exits 3 until a person decides. The reason for each is below.",
            "",
        ]
    if sent_unsafe_total:
        head += [
            f"> **Note:** {_statistics(sent_unsafe_total)} sent despite an unsafe effect on the "
            "platform's attempts (`on_unsafe_change: send`).",
            "",
        ]
    head += [
        "| integration | courses | stats | held | archives | invalid |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in plan.integrations:
        c, st = s.courses, s.stats
        courses = f"+{_n(c.new)} ~{_n(_sent_again(c))} ={_n(c.unchanged)}"
        stats = f"+{_n(st.new)} ~{_n(_sent_again(st))} ={_n(st.unchanged)}"
        head.append(
            f"| {_md(s.name)} | {courses} | {stats} | {_n(st.held)} | {_n(s.archives)} | {_n(s.invalid)} |"
        )
    head.append("")
    head.extend(f"> **Guard:** {_md(s.guard)}" for s in plan.integrations if s.guard)
    head.append("**No changes.**" if not plan.has_changes else f"**{_n(plan.changes_total)} changes.**")
    text = "\n".join(head) + "\n"
    # Held statistics first: a person must decide on them. Each section may use its share of
    # what the sections before it left.
    held, sent_unsafe = _held(plan), _sent_unsafe(plan)
    sections: list[tuple[str, Iterable[str], int, str]] = []
    if plan.held_total:
        sections.append(
            (
                f"Held statistics ({_n(plan.held_total)})",
                map(_md_unsafe, held),
                plan.held_total,
                "held statistics",
            )
        )
    if plan.changes:
        sections.append(
            (
                f"Changes ({_n(plan.changes_total)})",
                map(_md_change, plan.changes),
                plan.changes_total,
                "changes",
            )
        )
    if sent_unsafe_total:
        sections.append(
            (
                f"{_SENT_UNSAFE_TITLE} ({_n(sent_unsafe_total)})",
                map(_md_unsafe, sent_unsafe),
                sent_unsafe_total,
                "statistics",
            )
        )
    if plan.invalid_rows:
        sections.append(
            (
                f"Invalid rows ({_n(plan.invalid_total)})",
                map(_md_invalid, plan.invalid_rows),
                plan.invalid_total,
                "rows",
            )
        )
    # Room for each <details> wrapper and its "and N more" line.
    budget = max(limit - len(text) - 300 * len(sections), 0)
    for i, (summary, lines, total, noun) in enumerate(sections):
        body, used = _bounded(lines, budget // (len(sections) - i), total, noun)
        budget -= used
        text += _details(summary, body)
    return text


def _details(summary: str, body: list[str]) -> str:
    return "\n<details><summary>" + summary + "</summary>\n\n" + "\n".join(body) + "\n\n</details>\n"


# -- json -----------------------------------------------------------------------------------------


def _counts(c: KindCounts) -> dict[str, int]:
    return {
        "new": c.new,
        "changed": c.changed,
        "resend": c.resend,
        "retry": c.retry,
        "unchanged": c.unchanged,
        "skipped": c.skipped,
        "held": c.held,
    }


def plan_data(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (``format_version: 2``; see schemas/plan.schema.json)."""
    return {
        "format_version": FORMAT_VERSION,
        "ledger_generation": plan.generation,
        "has_changes": plan.has_changes,
        "integrations": [
            {
                "name": s.name,
                "courses": _counts(s.courses),
                "stats": _counts(s.stats),
                "archives": s.archives,
                "live_courses": s.live_courses,
                "invalid": s.invalid,
                "batches": dict(s.batches),
                "guard": s.guard,
            }
            for s in plan.integrations
        ],
        "changes_total": plan.changes_total,
        "changes": [
            {
                "integration": c.integration,
                "kind": c.kind.value,
                "key": c.key,
                "action": c.action.value,
                "origin": c.origin,
                "fields": [{"field": f.field, "old": f.old, "new": f.new} for f in c.fields],
            }
            for c in plan.changes
        ],
        "invalid_total": plan.invalid_total,
        "invalid_rows": [
            {
                "integration": r.integration,
                "kind": r.kind.value,
                "origin": r.origin,
                "field": r.field,
                "reason": r.reason,
                "key": r.key,
            }
            for r in plan.invalid_rows
        ],
        "held_total": plan.held_total,
        "unsafe_total": plan.unsafe_total,
        "unsafe": [
            {
                "integration": u.integration,
                "key": u.key,
                "origin": u.origin,
                "action": u.action.value,
                "effect": u.effect.value,
                "reason": u.reason,
                "held": u.held,
            }
            for u in plan.unsafe
        ],
    }


def render_json(plan: Plan) -> str:
    """The plan as indented JSON."""
    return orjson.dumps(plan_data(plan), option=orjson.OPT_INDENT_2).decode() + "\n"


# -- runs, status and rejected records --------------------------------------------------------

RUN_DETAIL_LIMIT = 20


def render_run(report: RunReport) -> str:
    """The end-of-apply summary: per integration what was sent, synced, rejected, invalid, held."""
    lines: list[str] = []
    if report.resumed:
        lines.append(f"resumed {_n(report.resumed)} operation(s) left in flight by an earlier run")
    for name, o in report.integrations.items():
        tolerance = ""
        if o.invalid:
            tolerance = " (beyond tolerate_invalid)" if o.invalid_beyond_tolerance else " (tolerated)"
        lines.append(
            f"{name}: {_n(o.operations)} operation(s) | synced {_n(o.synced)} | "
            f"rejected {_n(o.rejected)} | invalid {_n(o.invalid)}{tolerance}"
            + (f" | held {_n(o.held)}" if o.held else "")
            + (f" | {o.failed_operations} operation(s) ended in error" if o.failed_operations else "")
        )
        lines.extend(f"  {message}" for message in o.messages[:RUN_DETAIL_LIMIT])
    plan = report.plan
    if plan is not None and plan.invalid_rows:
        lines.append("invalid rows (never sent):")
        lines.extend(f"  {_invalid_text(row)}" for row in plan.invalid_rows[:RUN_DETAIL_LIMIT])
        more = plan.invalid_total - min(len(plan.invalid_rows), RUN_DETAIL_LIMIT)
        if more > 0:
            lines.append(f"  and {_n(more)} more: see `syncer rejected CONFIG`")
    if plan is not None and report.held:
        held = _held(plan)[:RUN_DETAIL_LIMIT]
        lines.append(f"held statistics ({_HELD_WHY}):")
        lines.extend(f"  {_unsafe_text(u)}" for u in held)
        if report.held > len(held):
            lines.append(f"  and {_n(report.held - len(held))} more")
    if report.rejected:
        lines.append("rejected records: see `syncer rejected CONFIG`")
    if report.held:
        lines.append("held statistics: see `syncer rejected CONFIG`")
    if not report.submissions and not report.resumed:
        if report.held:
            lines.append("nothing else to send")
        else:
            lines.append("nothing to send: the platform is in step with the sources")
    return "\n".join(lines) + "\n"


def _when(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes that were written in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def status_data(ledger: Ledger) -> dict[str, Any]:
    """What ``syncer status`` shows, as JSON-ready data."""
    from syncer.ledger.lock import read_holders

    counts: dict[str, dict[str, dict[str, int]]] = {}
    for c in ledger.record_counts():
        counts.setdefault(c.integration, {}).setdefault(c.kind.value, {})[c.status.value] = c.count
    invalid = ledger.invalid_row_counts()
    held = ledger.held_counts()
    for name in [*invalid, *held]:
        counts.setdefault(name, {})
    return {
        "runs": [
            {
                "id": r.id,
                "command": r.command,
                "host": r.host,
                "pid": r.pid,
                "status": r.status.value,
                "started_at": _when(r.started_at),
                "ended_at": _when(r.ended_at),
            }
            for r in ledger.last_runs()
        ],
        "in_flight": [
            {
                "id": op.id,
                "integration": op.integration,
                "type": op.type.value,
                "status": op.status.value,
                "items": op.item_count,
                "operation": op.api_id,
                "created_at": _when(op.created_at),
            }
            for op in ledger.unfinished_operations()
        ],
        "locks": [
            {"name": h.name, "host": h.host, "pid": h.pid, "since": _when(h.started_at)}
            for h in read_holders(ledger)
        ],
        "integrations": {
            name: {"records": kinds, "invalid": invalid.get(name, 0), "held": held.get(name, 0)}
            for name, kinds in sorted(counts.items())
        },
    }


def render_status(ledger: Ledger, fmt: str = "text") -> str:
    """``syncer status`` as text or JSON."""
    data = status_data(ledger)
    if fmt == "json":
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    lines = ["Integrations:"]
    for name, info in data["integrations"].items():
        parts = []
        for kind, statuses in sorted(info["records"].items()):
            inner = ", ".join(f"{status} {_n(count)}" for status, count in sorted(statuses.items()))
            parts.append(f"{kind}s {inner}")
        parts.append(f"invalid {_n(info['invalid'])}")
        parts.append(f"held {_n(info['held'])}")
        lines.append(f"  {name}: " + " | ".join(parts))
    if not data["integrations"]:
        lines.append("  none recorded yet")
    lines.append("Operations in flight:" + ("" if data["in_flight"] else " none"))
    lines.extend(
        f"  #{op['id']} {op['integration']} {op['type']} {op['status']} ({_n(op['items'])} items)"
        + (f" operation {op['operation']}" if op["operation"] else "")
        for op in data["in_flight"]
    )
    lines.append("Locks:" + ("" if data["locks"] else " none held"))
    lines.extend(f"  {h['name']}: {h['host']} pid {h['pid']} since {h['since']}" for h in data["locks"])
    lines.append("Last runs:" + ("" if data["runs"] else " none"))
    lines.extend(
        f"  #{r['id']} {r['command']} {r['status']} started {r['started_at']} on {r['host']} pid {r['pid']}"
        for r in data["runs"]
    )
    return "\n".join(lines) + "\n"


def render_rejected(ledger: Ledger, fmt: str = "text", *, integration: str | None = None) -> str:
    """``syncer rejected``: records the API refused, invalid rows and held statistics, as text or JSON."""
    refused = ledger.rejected_records(integration)
    invalid = ledger.invalid_rows(integration)
    held = ledger.held_records(integration)
    counts = ledger.held_counts()
    held_total = counts.get(integration, 0) if integration is not None else sum(counts.values())
    if fmt == "json":
        data = {
            "rejected": [
                {
                    "integration": r.integration,
                    "kind": r.kind.value,
                    "key": r.key,
                    "origin": r.origin,
                    "message": r.message,
                    "updated_at": _when(r.updated_at),
                }
                for r in refused
            ],
            "invalid": [
                {
                    "integration": r.integration,
                    "kind": r.kind.value,
                    "origin": r.origin,
                    "field": r.field,
                    "reason": r.reason,
                }
                for r in invalid
            ],
            "held_total": held_total,
            "held": [
                {
                    "integration": h.integration,
                    "key": h.key,
                    "origin": h.origin,
                    "effect": h.effect.value,
                    "reason": h.reason,
                }
                for h in held
            ],
        }
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    lines = [f"Rejected by the API: {_n(len(refused))}"]
    lines.extend(f"  {r.integration} {r.kind.value} {r.key} ({r.origin}): {r.message}" for r in refused)
    lines.append(f"Invalid rows (never sent): {_n(len(invalid))}")
    lines.extend(f"  {_invalid_text(r)}" for r in invalid)
    lines.append(f"Held (not sent: unsafe effect on the platform's attempts): {_n(held_total)}")
    lines.extend(f"  {h.integration} stat {h.key} ({h.origin}): {h.effect.label}: {h.reason}" for h in held)
    if held_total > len(held):
        lines.append(f"  and {_n(held_total - len(held))} more (the first {_n(len(held))} are listed)")
    return "\n".join(lines) + "\n"
