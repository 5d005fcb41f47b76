"""Plan rendering: text summary lines, bounded markdown, JSON valid against the published schema."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from syncer.models import (
    Change,
    ChangeAction,
    FieldChange,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    RecordKind,
)
from syncer.planner import Plan
from syncer.report import MARKDOWN_LIMIT, plan_data, render_json, render_markdown, render_text
from syncer.resources import schema_path

BATCHES = {"importExternalCourses": 1, "importExternalStatistics": 2, "archiveExternalCourses": 1}


def summary(**overrides: object) -> IntegrationSummary:
    values: dict[str, object] = {
        "name": "acme",
        "courses": KindCounts(new=12, changed=2, resend=1),
        "stats": KindCounts(new=1204, changed=311, unchanged=48992),
        "archives": 2,
        "live_courses": 40,
        "invalid": 5,
        "batches": BATCHES,
    }
    values.update(overrides)
    return IntegrationSummary(**values)  # type: ignore[arg-type]


def changed(key: str, old: object = "Old", new: object = "New") -> Change:
    return Change(
        "acme",
        RecordKind.COURSE,
        key,
        ChangeAction.CHANGED,
        "courses.csv:3",
        (FieldChange("name", old, new),),
    )


INVALID = InvalidRow(
    "acme", RecordKind.STAT, "stats.csv:43", "progress", "150 is greater than the maximum of 100"
)


def small_plan() -> Plan:
    return Plan(
        plan_id="p",
        generation=7,
        summaries=[summary(), summary(name="globex", courses=KindCounts(), stats=KindCounts(unchanged=3),
                                      archives=0, invalid=0)],
        changes=[changed("ACME-1"),
                 Change("acme", RecordKind.COURSE, "ACME-9", ChangeAction.ARCHIVE, "ledger")],
        invalid_rows=[INVALID],
        invalid_total=5,
    )  # fmt: skip


def test_text_summary_and_detail() -> None:
    text = render_text(small_plan())
    lines = text.splitlines()
    assert lines[0] == "acme: courses +12 ~3 -2 | stats +1,204 ~311 =48,992 | invalid 5"
    assert lines[1] == "globex: courses +0 ~0 -0 | stats +0 ~0 =3 | invalid 0"
    assert "  ~ acme course ACME-1 (courses.csv:3)" in lines
    assert '      name: "Old" -> "New"' in lines
    assert "  - acme course ACME-9 (ledger)" in lines
    assert "  stats.csv:43  acme stat  progress: 150 is greater than the maximum of 100" in lines


def test_text_says_no_changes() -> None:
    plan = Plan(
        plan_id="p", generation=0, summaries=[summary(courses=KindCounts(), stats=KindCounts(), archives=0)]
    )
    assert "No changes." in render_text(plan)
    assert not plan.has_changes


def test_json_validates_against_the_published_schema() -> None:
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    data = json.loads(render_json(small_plan()))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    assert data["format_version"] == 1 and data["changes_total"] == 1204 + 311 + 15 + 2
    broken = {**data, "format_version": 2}
    assert list(Draft202012Validator(schema).iter_errors(broken))


def test_markdown_has_table_then_details() -> None:
    text = render_markdown(small_plan())
    assert text.index("| integration | courses | stats | archives | invalid |") < text.index("<details>")
    assert "| acme | +12 ~3 =0 | +1,204 ~311 =48,992 | 2 | 5 |" in text
    assert '- `~` **acme** course `ACME-1` (courses.csv:3): name `"Old"` → `"New"`' in text
    assert "… and 4 more rows" in text


@pytest.mark.parametrize("value_size", [10, 5000], ids=["short-values", "huge-values"])
def test_markdown_of_a_million_changes_stays_bounded(value_size: int) -> None:
    # Cheap: the counts say a million, the detail holds 20,000 long lines (far beyond the budget).
    detail = [changed(f"K{i}", "x" * value_size, "y|`" * value_size) for i in range(20_000)]
    plan = Plan(
        plan_id="p",
        generation=1,
        summaries=[summary(stats=KindCounts(new=1_000_000), courses=KindCounts(), archives=0)],
        changes=detail,
        invalid_rows=[INVALID] * 20_000,
        invalid_total=20_000,
    )
    text = render_markdown(plan)
    assert len(text) < MARKDOWN_LIMIT
    assert "more changes" in text and "more rows" in text
    shown = text.count("\n- `~`")
    assert f"… and {1_000_000 - shown:,} more changes" in text


def test_plan_data_is_plain_json() -> None:
    data = plan_data(small_plan())
    assert json.loads(json.dumps(data)) == data
    assert data["integrations"][0]["guard"] is None
