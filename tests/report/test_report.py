"""Plan rendering: text summary lines, bounded markdown, JSON valid against the published schema."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from syncer.apply import IntegrationOutcome, RunReport
from syncer.ledger import Ledger
from syncer.models import (
    Change,
    ChangeAction,
    Effect,
    FieldChange,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    RecordKind,
    UnsafeStat,
)
from syncer.plan import Plan
from syncer.report import (
    MARKDOWN_LIMIT,
    plan_data,
    render_json,
    render_markdown,
    render_rejected,
    render_run,
    render_status,
    render_text,
    status_data,
)
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
    assert data["format_version"] == 2 and data["changes_total"] == 1204 + 311 + 15 + 2
    assert (data["held_total"], data["unsafe_total"], data["unsafe"]) == (0, 0, [])
    assert data["integrations"][0]["stats"]["held"] == 0
    broken = {**data, "format_version": 1}
    assert list(Draft202012Validator(schema).iter_errors(broken))


def test_markdown_has_table_then_details() -> None:
    text = render_markdown(small_plan())
    assert text.index("| integration | courses | stats | held | archives | invalid |") < text.index(
        "<details>"
    )
    assert "| acme | +12 ~3 =0 | +1,204 ~311 =48,992 | 0 | 2 | 5 |" in text
    assert "Warning" not in text and "Held statistics" not in text
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


# -- held statistics (an unsafe effect on the platform's attempts) --------------------------------

ANN = '["externalId","ACME-12","mail","ann@acme.example","2025-03-01T09:00:00.000Z"]'
BOB = '["externalId","ACME-12","mail","bob@acme.example","2025-03-01T09:00:00.000Z"]'
CAT = '["externalId","GLO-1","mail","cat@globex.example","2025-04-02T10:00:00.000Z"]'
# As text and markdown show them (JSON: display_key).
ANN_SHOWN = "ACME-12 · ann@acme.example · 2025-03-01T09:00Z"
BOB_SHOWN = "ACME-12 · bob@acme.example · 2025-03-01T09:00Z"
CAT_SHOWN = "GLO-1 · cat@globex.example · 2025-04-02T10:00Z"
DUPLICATE = (
    "the attempt of ann@acme.example on ACME-12 started 2025-03-01T09:00Z is completed on the platform; "
    "sending the change would open a second attempt"
)
OVERWRITES = (
    "the open attempt of bob@acme.example on ACME-12 started 2025-02-27T08:00Z ends after "
    "2025-03-01T09:00Z: the platform would overwrite that attempt with this statistic's values"
)
UNDEFINED = "the documented rules give neither a new attempt nor an update"
HELD_ANN = UnsafeStat("acme", ANN, "stats.csv:43", ChangeAction.CHANGED, Effect.DUPLICATE, DUPLICATE)
HELD_BOB = UnsafeStat("acme", BOB, "stats.csv:44", ChangeAction.NEW, Effect.OVERWRITES, OVERWRITES)
SENT_CAT = UnsafeStat("globex", CAT, "g.csv:2", ChangeAction.CHANGED, Effect.UNDEFINED, UNDEFINED, held=False)


def unsafe_plan() -> Plan:
    """acme holds 3 statistics (2 in detail); globex sends 1 despite its unsafe effect."""
    return Plan(
        plan_id="p",
        generation=7,
        summaries=[
            summary(stats=KindCounts(new=1204, changed=311, unchanged=48992, held=3)),
            summary(name="globex", courses=KindCounts(), stats=KindCounts(changed=1), archives=0, invalid=0),
        ],
        changes=[changed("ACME-1"), Change("globex", RecordKind.STAT, CAT, ChangeAction.CHANGED, "g.csv:2")],
        invalid_rows=[INVALID],
        invalid_total=5,
        unsafe=[HELD_ANN, SENT_CAT, HELD_BOB],
        unsafe_total=4,
        held_total=3,
    )


def test_text_shows_held_statistics_with_their_reason() -> None:
    lines = render_text(unsafe_plan()).splitlines()
    assert lines[:3] == [
        "acme: courses +12 ~3 -2 | stats +1,204 ~311 =48,992 held 3 | invalid 5",
        "globex: courses +0 ~0 -0 | stats +0 ~1 =0 | invalid 0",
        "held: 3 statistics not sent: the platform would refuse them, or their predicted effect on "
        "its attempts is unsafe; apply exits 3 (listed below)",
    ]
    sent = lines.index("Sent despite an unsafe effect (on_unsafe_change: send) (showing 1 of 1):")
    assert lines[sent + 1] == f"  ! globex stat {CAT_SHOWN} (g.csv:2): undefined: {UNDEFINED}"
    # Last, where a terminal leaves the eye.
    assert lines[-4:] == [
        "",
        "Held statistics (showing 2 of 3):",
        f"  ! acme stat {ANN_SHOWN} (stats.csv:43): duplicate: {DUPLICATE}",
        f"  ! acme stat {BOB_SHOWN} (stats.csv:44): overwrites another attempt: {OVERWRITES}",
    ]


def test_text_without_unsafe_statistics_says_nothing_of_them() -> None:
    text = render_text(small_plan())
    assert "held" not in text.lower() and "unsafe" not in text


def test_markdown_warns_first_and_lists_held_statistics() -> None:
    text = render_markdown(unsafe_plan())
    assert text.startswith(
        "### syncer plan\n\n"
        "> **Warning: 3 statistics held**, not sent: the platform would refuse them, or their "
        "predicted effect on its attempts is unsafe; `syncer apply` exits 3 until a person decides. "
        "The reason for each is below.\n\n"
        "> **Note:** 1 statistic sent despite an unsafe effect on the platform's attempts "
        "(`on_unsafe_change: send`).\n\n"
        "| integration | courses | stats | held | archives | invalid |\n"
    )
    assert "| acme | +12 ~3 =0 | +1,204 ~311 =48,992 | 3 | 2 | 5 |" in text
    assert "| globex | +0 ~0 =0 | +0 ~1 =0 | 0 | 0 | 0 |" in text
    held = text.index("<details><summary>Held statistics (3)</summary>")
    assert held < text.index("<details><summary>Changes (")
    ann = f"- `!` **acme** stat `{ANN_SHOWN}` (stats.csv:43): _duplicate_: {DUPLICATE}"
    assert text.index(ann) > held
    assert "- … and 1 more held statistics" in text
    assert "<details><summary>Sent despite an unsafe effect (on_unsafe_change: send) (1)</summary>" in text
    assert f"- `!` **globex** stat `{CAT_SHOWN}` (g.csv:2): _undefined_: {UNDEFINED}" in text


def test_markdown_of_a_million_held_statistics_stays_bounded() -> None:
    many = [HELD_ANN] * 20_000
    plan = Plan(
        plan_id="p",
        generation=1,
        summaries=[
            summary(stats=KindCounts(new=1_000_000, held=1_000_000), courses=KindCounts(), archives=0)
        ],
        changes=[changed(f"K{i}") for i in range(20_000)],
        invalid_rows=[INVALID] * 20_000,
        invalid_total=20_000,
        unsafe=many,
        unsafe_total=1_000_000,
        held_total=1_000_000,
    )
    text = render_markdown(plan)
    assert len(text) < MARKDOWN_LIMIT
    shown = text.count("\n- `!`")
    assert 0 < shown < 20_000
    assert f"… and {1_000_000 - shown:,} more held statistics" in text
    assert "more changes" in text and "more rows" in text  # the other sections keep their share


def test_json_lists_unsafe_statistics_and_validates() -> None:
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    data = json.loads(render_json(unsafe_plan()))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    assert data["format_version"] == 2
    assert (data["held_total"], data["unsafe_total"]) == (3, 4)
    acme, globex = data["integrations"]
    assert (acme["stats"]["held"], acme["courses"]["held"], globex["stats"]["held"]) == (3, 0, 0)
    assert data["unsafe"][:2] == [
        {
            "integration": "acme",
            "key": ANN,
            "display_key": ANN_SHOWN,
            "origin": "stats.csv:43",
            "action": "changed",
            "effect": "duplicate",
            "reason": DUPLICATE,
            "held": True,
        },
        {
            "integration": "globex",
            "key": CAT,
            "display_key": CAT_SHOWN,
            "origin": "g.csv:2",
            "action": "changed",
            "effect": "undefined",
            "reason": UNDEFINED,
            "held": False,
        },
    ]
    assert data["unsafe"][2]["effect"] == "overwrites_another"
    # The schema says what an unsafe statistic is: never a safe effect, always its held flag.
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors({**data, "unsafe": [{**data["unsafe"][0], "effect": "update"}]}))
    no_flag = {k: v for k, v in data["unsafe"][0].items() if k != "held"}
    assert list(validator.iter_errors({**data, "unsafe": [no_flag]}))
    assert list(validator.iter_errors({k: v for k, v in data.items() if k != "held_total"}))


def test_saved_plan_carries_the_held_numbers(tmp_path: Path) -> None:
    from syncer.config import load_config
    from syncer.plan.saved import load_saved_plan, save_plan

    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "configs" / "demo.yaml", tmp_path / "demo.yaml")
    shutil.copytree(root / "configs" / "demo", tmp_path / "demo")
    plan = unsafe_plan()
    save_plan(tmp_path / "plan.json", plan, load_config(tmp_path / "demo.yaml"), plan_data(plan))
    saved = load_saved_plan(tmp_path / "plan.json").summary
    assert saved == json.loads(json.dumps(plan_data(plan)))
    assert (saved["held_total"], saved["integrations"][0]["stats"]["held"]) == (3, 3)


def test_run_summary_shows_held_and_points_to_rejected() -> None:
    report = RunReport(
        1,
        {
            "acme": IntegrationOutcome("acme", operations=2, synced=10, invalid=5, held=3),
            "globex": IntegrationOutcome("globex", operations=1, synced=1),
        },
        submissions=3,
        plan=unsafe_plan(),
    )
    assert report.held == 3 and report.summary()["integrations"]["acme"]["held"] == 3
    lines = render_run(report).splitlines()
    assert lines[0] == "acme: 2 operation(s) | synced 10 | rejected 0 | invalid 5 (tolerated) | held 3"
    assert lines[1] == "globex: 1 operation(s) | synced 1 | rejected 0 | invalid 0"
    start = lines.index(
        "held statistics (not sent: the platform would refuse them, or their predicted effect "
        "on its attempts is unsafe):"
    )
    assert lines[start + 1 : start + 4] == [
        f"  ! acme stat {ANN_SHOWN} (stats.csv:43): duplicate: {DUPLICATE}",
        f"  ! acme stat {BOB_SHOWN} (stats.csv:44): overwrites another attempt: {OVERWRITES}",
        "  and 1 more",
    ]
    assert lines[-1] == "held statistics: see `syncer rejected CONFIG`"


def test_run_with_only_held_statistics_is_not_in_step() -> None:
    plan = unsafe_plan()
    report = RunReport(1, {"acme": IntegrationOutcome("acme", held=3)}, plan=plan)
    text = render_run(report)
    assert "in step" not in text and text.endswith("nothing else to send\n")
    assert render_run(RunReport(1, {"acme": IntegrationOutcome("acme")})).endswith(
        "nothing to send: the platform is in step with the sources\n"
    )


def test_apply_log_warns_of_held_and_of_each_statistic_sent_despite_an_unsafe_effect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from syncer.apply.run import _log_unsafe

    with caplog.at_level(logging.INFO, logger="syncer"):
        _log_unsafe(unsafe_plan())
    warnings = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert warnings == [
        (
            "WARNING",
            "acme: 3 statistics held: not sent, the platform would refuse them or their predicted "
            "effect on its attempts is unsafe (see `syncer rejected CONFIG`)",
        ),
        (
            "WARNING",
            f"globex: statistic {CAT} (g.csv:2) sent despite an unsafe effect (on_unsafe_change: send): "
            f"undefined: {UNDEFINED}",
        ),
    ]
    assert caplog.records[1].effect == "undefined"  # type: ignore[attr-defined]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def test_status_counts_held_statistics(ledger: Ledger) -> None:
    ledger.replace_invalid_rows(["acme"], [INVALID])
    ledger.replace_held_records(["acme"], [HELD_ANN, HELD_BOB])
    data = status_data(ledger)
    assert data["integrations"] == {
        "acme": {
            "records": {},
            "invalid": 1,
            "held": 2,
            "api_id": None,
            "refreshed_at": None,
            "drift": 0,
            "orphaned": False,
        }
    }
    assert "  acme: invalid 1 | held 2" in render_status(ledger).splitlines()
    assert json.loads(render_status(ledger, "json"))["integrations"]["acme"]["held"] == 2
    ledger.replace_held_records(["acme"], [])  # the next plan held nothing
    assert status_data(ledger)["integrations"]["acme"]["held"] == 0


def test_rejected_lists_held_statistics(ledger: Ledger) -> None:
    ledger.replace_invalid_rows(["acme"], [INVALID])
    ledger.replace_held_records(["acme"], [HELD_ANN, HELD_BOB])
    lines = render_rejected(ledger).splitlines()
    assert lines == [
        "Rejected by the API: 0",
        "Invalid rows (never sent): 1",
        "  stats.csv:43  acme stat  progress: 150 is greater than the maximum of 100",
        "Held (not sent: the platform would refuse them, or unsafe effect on its attempts): 2",
        f"  acme stat {ANN_SHOWN} (stats.csv:43): duplicate: {DUPLICATE}",
        f"  acme stat {BOB_SHOWN} (stats.csv:44): overwrites another attempt: {OVERWRITES}",
    ]
    data = json.loads(render_rejected(ledger, "json"))
    assert data["held_total"] == 2
    assert data["held"] == [
        {
            "integration": "acme",
            "key": ANN,
            "display_key": ANN_SHOWN,
            "origin": "stats.csv:43",
            "effect": "duplicate",
            "reason": DUPLICATE,
        },
        {
            "integration": "acme",
            "key": BOB,
            "display_key": BOB_SHOWN,
            "origin": "stats.csv:44",
            "effect": "overwrites_another",
            "reason": OVERWRITES,
        },
    ]
    other = json.loads(render_rejected(ledger, "json", integration="globex"))
    assert (other["held"], other["held_total"]) == ([], 0)


def test_rejected_says_how_many_held_statistics_are_not_listed(ledger: Ledger) -> None:
    ledger.replace_held_records(["acme"], [HELD_ANN] * 1002)
    lines = render_rejected(ledger).splitlines()
    assert "Held (not sent: the platform would refuse them, or unsafe effect on its attempts): 1,002" in lines
    assert lines[-1] == "  and 2 more (the first 1,000 are listed)"
    assert len(json.loads(render_rejected(ledger, "json"))["held"]) == 1000
