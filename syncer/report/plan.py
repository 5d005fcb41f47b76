"""The plan as text (a terminal), markdown (a pull-request comment) or JSON. Layout only.

The JSON form is versioned (``FORMAT_VERSION``, schemas/plan.schema.json) and is also what a
saved plan keeps; markdown stays under ``MARKDOWN_LIMIT`` whatever the plan's size. Text and
markdown carry a one-line legend of their signs and show a statistic's key as a person reads it
(``ACME-12 · learner@x · 2025-03-01T09:00Z``); JSON keeps the key as the ledger has it and adds
that reading as ``display_key``. With ``redact`` every e-mail address becomes its token
(syncer/redaction.py), in every format, before markdown's size budget is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

import orjson

from syncer.ledger import DriftInfo
from syncer.models import (
    Change,
    ChangeAction,
    FieldChange,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    UnsafeStat,
)
from syncer.plan import Blocker, Plan
from syncer.redaction import redact_data, redact_text
from syncer.report.pieces import HELD_WHY, held_stats, invalid_text, key_text, number, unsafe_text
from syncer.sources.incremental import shown

FORMATS = ("text", "json", "markdown")
FORMAT_VERSION = 2
DRIFT_LIMIT = 100
"""Drift shown in detail by a plan (all of it is in the ledger's ``drift`` table)."""
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


def render_plan(
    plan: Plan, fmt: str, *, blockers: Sequence[Blocker] = (), would_exit: int = 0, redact: bool = False
) -> str:
    """The plan in one of ``FORMATS``.

    ``blockers`` (``Plan.blockers``) and ``would_exit``, the exit code apply would end with, are
    the CLI's verdict: shown first in text and markdown, as fields in JSON. ``redact``: learner
    e-mails replaced by their tokens (``--redact``).
    """
    if fmt == "json":
        return render_json(plan, blockers=blockers, would_exit=would_exit, redact=redact)
    if fmt == "markdown":
        return render_markdown(plan, blockers=blockers, would_exit=would_exit, redact=redact)
    return render_text(plan, blockers=blockers, would_exit=would_exit, redact=redact)


# -- pieces -------------------------------------------------------------------------------------


def _same(text: str) -> str:
    return text


def _cleaner(redact: bool) -> Callable[[str], str]:
    return redact_text if redact else _same


def _legend(plan: Plan, sign: Callable[[str], str], word: Callable[[str], str]) -> str:
    """The signs and words the plan uses, in one line (held and unsafe ones only when present)."""
    parts = [
        f"{sign('+')} new",
        f"{sign('~')} sent again (changed, unconfirmed or retried)",
        f"{sign('-')} archived",
        f"{sign('=')} unchanged",
    ]
    if plan.unsafe_total:
        parts.append(f"{sign('!')} unsafe effect on the platform's attempts")
    if plan.held_total:
        parts.append(f"{word('held')} not sent until a person decides")
    parts.append(f"{word('invalid')} source rows never sent")
    if any(s.courses.skipped + s.stats.skipped for s in plan.integrations):
        parts.append(f"{word('rejected, not resent')} refused before and unchanged (--retry-rejected)")
    return "; ".join(parts)


def legend_text(plan: Plan) -> str:
    """``legend: + new; ~ sent again (...); - archived; = unchanged; invalid: source rows never sent``."""
    return "legend: " + _legend(plan, _same, lambda word: f"{word}:")


def _statistics(count: int) -> str:
    return f"{number(count)} statistic" + ("" if count == 1 else "s")


def _sent_again(c: KindCounts) -> int:
    return c.changed + c.resend + c.retry


def _summary_parts(s: IntegrationSummary) -> tuple[str, str, str]:
    courses = f"courses +{number(s.courses.new)} ~{number(_sent_again(s.courses))} -{number(s.archives)}"
    stats = f"stats +{number(s.stats.new)} ~{number(_sent_again(s.stats))} ={number(s.stats.unchanged)}"
    if s.stats.held:
        stats += f" held {number(s.stats.held)}"
    skipped = s.courses.skipped + s.stats.skipped
    extra = f"invalid {number(s.invalid)}" + (f" | rejected, not resent {number(skipped)}" if skipped else "")
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
    return f"{_SIGN[c.action]} {c.integration} {c.kind.value} {key_text(c.kind, c.key)} ({c.origin}){tail}"


def drift_text(d: DriftInfo) -> str:
    """``acme course C0003: archived on the platform: "published" -> "archived" (apply restores it)``."""
    what = {
        "archived": "archived on the platform",
        "missing": "not on the platform",
        "edited": "edited on the platform",
        "published": "published again on the platform",
        "recreated": "deleted and recreated on the platform (a new id)",
    }.get(d.what, d.what)
    if d.kind == "stat":
        what = "attempt no longer on the platform"
    outcome = "apply restores it" if d.restore else "reported only"
    if d.kind == "integration":
        outcome = "its records are sent again, courses first"
    change = f": {d.old or '(none)'} -> {d.new or '(none)'}" if d.old or d.new else ""
    return f"{d.integration} {d.kind} {key_text(d.kind, d.key)}: {what}{change} ({outcome})"


def identity_lines(plan: Plan) -> list[str]:
    """Renamed keys and orphaned integrations, one line each."""
    lines = [
        f"renamed: {old} -> {new} in the config: its records are kept, nothing is sent again"
        for new, old in plan.renamed.items()
    ]
    lines += [
        f"orphaned: {name} is in the ledger but no longer in the config: its records are kept, "
        "nothing is archived or deleted on the platform"
        for name in plan.orphans
    ]
    return lines


def read_lines(plan: Plan) -> list[str]:
    """How each incremental SQL source was read (docs/incremental.md), one line each."""
    return [f"read: {read.describe()}" for read in plan.reads]


def _reads_data(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "integration": r.integration,
            "kind": r.kind.value,
            "source": r.source,
            "cursor": r.column,
            "full": r.full,
            "reason": r.reason or None,
            "recorded": None if r.stored is None else shown(r.stored),
            "since": None if r.since is None else shown(r.since),
            "upto": None if r.high is None else shown(r.high),
            "null_cursors": r.nulls,
        }
        for r in plan.reads
    ]


def _sent_unsafe(plan: Plan) -> list[UnsafeStat]:
    return [u for u in plan.unsafe if not u.held]


_SENT_UNSAFE_TITLE = "Sent despite an unsafe effect (on_unsafe_change: send)"


# -- text -----------------------------------------------------------------------------------------


def render_text(
    plan: Plan, *, blockers: Sequence[Blocker] = (), would_exit: int = 0, redact: bool = False
) -> str:
    """What stops apply first, one summary line per integration, the legend, then capped detail."""
    lines = []
    if blockers:
        lines.append(f"warning: apply would exit {would_exit} with this plan, and so does plan:")
        lines.extend(f"warning: {b.message}" for b in blockers)
    lines += [summary_line(s) for s in plan.integrations]
    lines += [f"warning: {w}" for s in plan.integrations for w in s.warnings]
    lines += identity_lines(plan)
    lines += read_lines(plan)
    for s in plan.integrations:
        if s.guard:
            lines.append(f"guard: {s.guard}")
    if plan.held_total:
        lines.append(f"held: {_statistics(plan.held_total)} {HELD_WHY}; apply exits 3 (listed below)")
    if not plan.has_changes:
        lines.append("No changes.")
    lines.append(legend_text(plan))
    if plan.changes:
        lines += ["", f"Changes (showing {number(len(plan.changes))} of {number(plan.changes_total)}):"]
        for change in plan.changes:
            lines.append(f"  {_change_head(change)}")
            lines.extend(f"      {_field_text(f)}" for f in change.fields)
    sent_unsafe, sent_unsafe_total = _sent_unsafe(plan), plan.unsafe_total - plan.held_total
    if sent_unsafe_total:
        lines += [
            "",
            f"{_SENT_UNSAFE_TITLE} (showing {number(len(sent_unsafe))} of {number(sent_unsafe_total)}):",
        ]
        lines.extend(f"  {unsafe_text(u)}" for u in sent_unsafe)
    if plan.invalid_rows:
        lines += [
            "",
            f"Invalid rows (showing {number(len(plan.invalid_rows))} of {number(plan.invalid_total)}):",
        ]
        lines.extend(f"  {invalid_text(row)}" for row in plan.invalid_rows)
    if plan.drift:
        shown = plan.drift[:DRIFT_LIMIT]
        lines += [
            "",
            f"Drift found by the last refresh (showing {number(len(shown))} of {number(len(plan.drift))}):",
        ]
        lines.extend(f"  {drift_text(d)}" for d in shown)
    if plan.held_total:
        held = held_stats(plan)
        # Last: on a terminal the end of the output is what stays in sight.
        lines += ["", f"Held statistics (showing {number(len(held))} of {number(plan.held_total)}):"]
        lines.extend(f"  {unsafe_text(u)}" for u in held)
    return _cleaner(redact)("\n".join(lines) + "\n")


# -- markdown -------------------------------------------------------------------------------------


def legend_markdown(plan: Plan) -> str:
    """The legend as one small line under the summary table."""
    return "<sub>Legend: " + _legend(plan, lambda sign: f"`{sign}`", lambda word: f"**{word}**:") + "</sub>"


def _md(text: str) -> str:
    # Keep table cells and list items intact: no pipes, no line breaks, no stray markup.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _md_change(c: Change) -> str:
    key = _md(key_text(c.kind, c.key))
    head = f"- `{_SIGN[c.action]}` **{_md(c.integration)}** {c.kind.value} `{key}` ({_md(c.origin)})"
    if c.action in (ChangeAction.RESEND, ChangeAction.RETRY):
        head += f" _{c.action.value}_"
    if c.fields:
        head += ": " + "; ".join(
            f"{_md(f.field)} `{_md(_value(f.old))}` → `{_md(_value(f.new))}`" for f in c.fields
        )
    return head


def _md_unsafe(stat: UnsafeStat) -> str:
    return (
        f"- `!` **{_md(stat.integration)}** stat `{_md(key_text('stat', stat.key))}` ({_md(stat.origin)}): "
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
        out.append(f"- … and {number(total - len(out))} more {noun}")
        used += len(out[-1]) + 1
    return out, used


def render_markdown(
    plan: Plan,
    *,
    limit: int = MARKDOWN_LIMIT,
    blockers: Sequence[Blocker] = (),
    would_exit: int = 0,
    redact: bool = False,
) -> str:
    """A pull-request comment: warnings first (what apply would stop at or end in failure for,
    held statistics, the mass-archive guard, sources without rows), the summary table and its
    legend, then detail in <details>; never over ``limit``."""
    clean = _cleaner(redact)
    head = ["### syncer plan", ""]
    if blockers:
        head.append(
            f"> **Warning: `syncer apply` would exit {would_exit} with this plan** "
            "(and so does `syncer plan`):"
        )
        head.extend(f"> - {_md(b.message)}" for b in blockers)
        head.append("")
    sent_unsafe_total = plan.unsafe_total - plan.held_total
    if plan.held_total:
        head += [
            f"> **Warning: {_statistics(plan.held_total)} held**, {HELD_WHY}; "
            "`syncer apply` exits 3 until a person decides. The reason for each is below.",
            "",
        ]
    if sent_unsafe_total:
        head += [
            f"> **Note:** {_statistics(sent_unsafe_total)} sent despite an unsafe effect on the "
            "platform's attempts (`on_unsafe_change: send`).",
            "",
        ]
    # The guard, when no blocker says it already (--allow-mass-archive), and sources without rows.
    blocked = {b.integration for b in blockers if b.reason.value == "mass_archive"}
    notes = [f"> **Guard:** {_md(s.guard)}" for s in plan.integrations if s.guard and s.name not in blocked]
    notes += [f"> **Warning:** {_md(w)}" for s in plan.integrations for w in s.warnings]
    if notes:
        head += [*notes, ""]
    head += [
        "| integration | courses | stats | held | archives | invalid |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in plan.integrations:
        c, st = s.courses, s.stats
        courses = f"+{number(c.new)} ~{number(_sent_again(c))} ={number(c.unchanged)}"
        stats = f"+{number(st.new)} ~{number(_sent_again(st))} ={number(st.unchanged)}"
        counts = f"{number(st.held)} | {number(s.archives)} | {number(s.invalid)}"
        head.append(f"| {_md(s.name)} | {courses} | {stats} | {counts} |")
    head += ["", legend_markdown(plan), ""]
    head.extend(f"> {_md(line)}" for line in identity_lines(plan))
    head.extend(f"> {_md(line)}" for line in read_lines(plan))
    head.append("**No changes.**" if not plan.has_changes else f"**{number(plan.changes_total)} changes.**")
    text = clean("\n".join(head) + "\n")
    # Held statistics first: a person must decide on them. Each section may use its share of
    # what the sections before it left.
    held, sent_unsafe = held_stats(plan), _sent_unsafe(plan)
    sections: list[tuple[str, Iterable[str], int, str]] = []
    if plan.held_total:
        sections.append(
            (
                f"Held statistics ({number(plan.held_total)})",
                map(clean, map(_md_unsafe, held)),
                plan.held_total,
                "held statistics",
            )
        )
    if plan.changes:
        sections.append(
            (
                f"Changes ({number(plan.changes_total)})",
                map(clean, map(_md_change, plan.changes)),
                plan.changes_total,
                "changes",
            )
        )
    if sent_unsafe_total:
        sections.append(
            (
                f"{_SENT_UNSAFE_TITLE} ({number(sent_unsafe_total)})",
                map(clean, map(_md_unsafe, sent_unsafe)),
                sent_unsafe_total,
                "statistics",
            )
        )
    if plan.invalid_rows:
        sections.append(
            (
                f"Invalid rows ({number(plan.invalid_total)})",
                map(clean, map(_md_invalid, plan.invalid_rows)),
                plan.invalid_total,
                "rows",
            )
        )
    if plan.drift:
        sections.append(
            (
                f"Drift found by the last refresh ({number(len(plan.drift))})",
                (clean(f"- {_md(drift_text(d))}") for d in plan.drift),
                len(plan.drift),
                "differences",
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


def plan_data(
    plan: Plan, *, blockers: Sequence[Blocker] = (), would_exit: int = 0, redact: bool = False
) -> dict[str, Any]:
    """The plan as JSON-ready data (``format_version: 2``; see schemas/plan.schema.json).

    Each key comes as the ledger has it (``key``) and as a person reads it (``display_key``).
    ``redact``: every e-mail address in it replaced by its token, keys included (``redacted``).
    """
    data = {
        "format_version": FORMAT_VERSION,
        "redacted": redact,
        "ledger_generation": plan.generation,
        "ledger_generations": dict(plan.generations),
        "has_changes": plan.has_changes,
        "would_exit": would_exit,
        "blocking": [
            {"integration": b.integration, "reason": b.reason.value, "message": b.message} for b in blockers
        ],
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
                "warnings": list(s.warnings),
            }
            for s in plan.integrations
        ],
        "changes_total": plan.changes_total,
        "changes": [
            {
                "integration": c.integration,
                "kind": c.kind.value,
                "key": c.key,
                "display_key": key_text(c.kind, c.key),
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
                "display_key": None if r.key is None else key_text(r.kind, r.key),
            }
            for r in plan.invalid_rows
        ],
        "held_total": plan.held_total,
        "unsafe_total": plan.unsafe_total,
        "unsafe": [
            {
                "integration": u.integration,
                "key": u.key,
                "display_key": key_text("stat", u.key),
                "origin": u.origin,
                "action": u.action.value,
                "effect": u.effect.value,
                "reason": u.reason,
                "held": u.held,
            }
            for u in plan.unsafe
        ],
        "renamed": [{"from": old, "to": new} for new, old in plan.renamed.items()],
        "orphans": list(plan.orphans),
        "reads": _reads_data(plan),
        "drift_total": len(plan.drift),
        "drift": [{**asdict(d), "display_key": key_text(d.kind, d.key)} for d in plan.drift[:DRIFT_LIMIT]],
    }
    return redact_data(data) if redact else data


def render_json(
    plan: Plan, *, blockers: Sequence[Blocker] = (), would_exit: int = 0, redact: bool = False
) -> str:
    """The plan as indented JSON."""
    data = plan_data(plan, blockers=blockers, would_exit=would_exit, redact=redact)
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
