"""Plans for pull requests: the legend, readable statistic keys, warnings first in markdown."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from syncer.ledger import DriftInfo
from syncer.models import (
    Change,
    ChangeAction,
    Effect,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    RecordKind,
    UnsafeStat,
    stat_key,
)
from syncer.plan import Blocker, BlockReason, Plan
from syncer.report import render_json, render_markdown, render_text
from syncer.report.pieces import key_text
from syncer.resources import schema_path

ANN = stat_key(
    {"type": "externalId", "value": "ACME-12"}, {"type": "mail", "value": "ann@x"}, "2025-03-01T09:00:00.000Z"
)
ANN_SHOWN = "ACME-12 · ann@x · 2025-03-01T09:00Z"
GUARD = "acme: archiving 30 of 40 live courses (75%) exceeds the mass-archive guard"
NO_ROWS = "acme courses (source 'catalog'): the source has no rows; nothing is archived"


def summary(**overrides: object) -> IntegrationSummary:
    values: dict[str, object] = {
        "name": "acme",
        "courses": KindCounts(new=1),
        "stats": KindCounts(new=1, unchanged=3),
        "archives": 0,
        "live_courses": 40,
        "invalid": 0,
        "batches": {},
    }
    values.update(overrides)
    return IntegrationSummary(**values)  # type: ignore[arg-type]


def plan_of(*, held: bool = False, **overrides: object) -> Plan:
    unsafe = [UnsafeStat("acme", ANN, "s.csv:2", ChangeAction.CHANGED, Effect.DUPLICATE, "ann@x again")]
    return Plan(
        plan_id="p",
        generation=1,
        summaries=[summary(stats=KindCounts(new=1, unchanged=3, held=1 if held else 0), **overrides)],
        changes=[
            Change("acme", RecordKind.COURSE, "ACME-12", ChangeAction.NEW, "c.csv:2"),
            Change("acme", RecordKind.STAT, ANN, ChangeAction.NEW, "s.csv:2"),
        ],
        invalid_rows=[InvalidRow("acme", RecordKind.STAT, "s.csv:9", "score", "not a number", key=ANN)],
        invalid_total=1,
        unsafe=unsafe if held else [],
        unsafe_total=1 if held else 0,
        held_total=1 if held else 0,
    )


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        pytest.param(ANN, ANN_SHOWN, id="minutes"),
        pytest.param(
            ANN.replace(":00.000Z", ":07.000Z"), "ACME-12 · ann@x · 2025-03-01T09:00:07Z", id="seconds"
        ),
        pytest.param(
            ANN.replace(":00.000Z", ":00.250Z"), "ACME-12 · ann@x · 2025-03-01T09:00:00.250Z", id="ms"
        ),
        pytest.param(
            '["internalId","64b7f0c2a1e4d5f6a7b8c9d0","internalId","5f0c1a2b3c4d5e6f7a8b9c0d","2025-03-01T09:00:00.000Z"]',
            "64b7f0c2a1e4d5f6a7b8c9d0 · 5f0c1a2b3c4d5e6f7a8b9c0d · 2025-03-01T09:00Z",
            id="internal-ids",
        ),
        pytest.param('["not", "a key"]', '["not", "a key"]', id="unknown-shape-kept"),
        pytest.param("[broken", "[broken", id="not-json-kept"),
    ],
)
def test_a_statistic_key_reads_as_course_learner_and_start(key: str, shown: str) -> None:
    assert key_text(RecordKind.STAT, key) == shown
    assert key_text("stat", key) == shown


def test_a_course_key_is_shown_as_it_is() -> None:
    assert key_text(RecordKind.COURSE, '["ACME-12"]') == '["ACME-12"]'


def test_text_has_one_legend_line_and_readable_keys() -> None:
    lines = render_text(plan_of()).splitlines()
    assert lines[:2] == [
        "acme: courses +1 ~0 -0 | stats +1 ~0 =3 | invalid 0",
        "legend: + new; ~ sent again (changed, unconfirmed or retried); - archived; = unchanged; "
        "invalid: source rows never sent",
    ]
    assert f"  + acme stat {ANN_SHOWN} (s.csv:2)" in lines
    assert "  + acme course ACME-12 (c.csv:2)" in lines
    assert ANN not in "\n".join(lines)


def test_the_legend_names_held_and_unsafe_only_when_the_plan_has_them() -> None:
    legend = next(line for line in render_text(plan_of(held=True)).splitlines() if line.startswith("legend:"))
    assert legend.endswith(
        "; = unchanged; ! unsafe effect on the platform's attempts; held: not sent until a person decides; "
        "invalid: source rows never sent"
    )
    markdown = render_markdown(plan_of(held=True))
    assert (
        "<sub>Legend: `+` new; `~` sent again (changed, unconfirmed or retried); `-` archived; "
        "`=` unchanged; `!` unsafe effect on the platform's attempts; **held**: not sent until a person "
        "decides; **invalid**: source rows never sent</sub>"
    ) in markdown.splitlines()
    assert "Legend" not in render_json(plan_of(held=True))  # JSON says it in words: "action"


def test_markdown_shows_readable_keys_under_the_table_legend() -> None:
    text = render_markdown(plan_of(held=True))
    table, legend = text.index("| integration |"), text.index("<sub>Legend:")
    assert table < legend < text.index("<details>")
    assert f"- `+` **acme** stat `{ANN_SHOWN}` (s.csv:2)" in text
    assert f"- `!` **acme** stat `{ANN_SHOWN}` (s.csv:2): _duplicate_: ann@x again" in text
    assert ANN not in text


def test_markdown_puts_every_warning_before_the_table() -> None:
    plan = plan_of(held=True, guard=GUARD, warnings=(NO_ROWS,), invalid=30)
    blockers = [
        Blocker("acme", BlockReason.MASS_ARCHIVE, GUARD),
        Blocker("acme", BlockReason.INVALID, "acme: 30 invalid rows, more than tolerate_invalid allows"),
        Blocker("acme", BlockReason.HELD, "acme: 1 statistic is held, a person must decide"),
    ]
    text = render_markdown(plan, blockers=blockers, would_exit=6)
    head = text[: text.index("| integration |")]
    assert head == (
        "### syncer plan\n\n"
        "> **Warning: `syncer apply` would exit 6 with this plan** (and so does `syncer plan`):\n"
        f"> - {GUARD}\n"
        "> - acme: 30 invalid rows, more than tolerate_invalid allows\n"
        "> - acme: 1 statistic is held, a person must decide\n\n"
        "> **Warning: 1 statistic held**, not sent: the platform would refuse them, or their predicted "
        "effect on its attempts is unsafe; `syncer apply` exits 3 until a person decides. The reason "
        "for each is below.\n\n"
        f"> **Warning:** {NO_ROWS}\n\n"
    )
    assert text.count(GUARD) == 1  # said once, by the blocker


def test_markdown_shows_an_allowed_guard_before_the_table() -> None:
    # --allow-mass-archive: no blocker, the guard is still worth a look before merging.
    text = render_markdown(plan_of(guard=GUARD))
    assert text.index(f"> **Guard:** {GUARD}") < text.index("| integration |")


def test_json_adds_display_keys_and_keeps_the_keys() -> None:
    plan = plan_of(held=True)
    plan.drift = (DriftInfo("acme", "stat", ANN, "missing", "attempt started x", "no such attempt", False),)
    data = json.loads(render_json(plan))
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    assert data["redacted"] is False
    stat = data["changes"][1]
    assert (stat["key"], stat["display_key"]) == (ANN, ANN_SHOWN)
    assert (data["changes"][0]["key"], data["changes"][0]["display_key"]) == ("ACME-12", "ACME-12")
    assert (data["unsafe"][0]["key"], data["unsafe"][0]["display_key"]) == (ANN, ANN_SHOWN)
    assert data["invalid_rows"][0]["display_key"] == ANN_SHOWN
    assert (data["drift"][0]["key"], data["drift"][0]["display_key"]) == (ANN, ANN_SHOWN)
    # Plans written before display_key existed still validate: the field is optional.
    older = {**data, "changes": [{k: v for k, v in c.items() if k != "display_key"} for c in data["changes"]]}
    del older["redacted"]
    assert list(Draft202012Validator(schema).iter_errors(older)) == []
