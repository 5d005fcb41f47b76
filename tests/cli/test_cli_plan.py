"""`syncer plan` end to end on the demo config: fresh ledger, synced ledger, one edit, saved plans."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from syncer.cli import cli
from syncer.config import load_config
from syncer.errors import PlanError
from syncer.ledger import Ledger
from syncer.models import ItemResult, OperationStatus, OperationType
from syncer.plan import build_plan
from syncer.plan.saved import check_saved_plan, load_saved_plan
from syncer.resources import schema_path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "very-secret-value-42"


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of configs/demo.yaml and its data; its ledger (syncer.db) lands beside it."""
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "demo.yaml")
    shutil.copytree(ROOT / "configs" / "demo", tmp_path / "demo")
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    return tmp_path / "demo.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def sync_everything(config_path: Path) -> None:
    """Record every planned batch as sent and accepted, as a successful apply would."""
    config = load_config(config_path)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        with build_plan(config, ledger) as plan:
            for name in config.integrations:
                for op_type, batch in plan.batches(name):
                    op_id = ledger.prepare_operation(None, name, op_type, batch)
                    ledger.mark_submitted(op_id, f"https://x/{op_id}", f"{op_id:024x}")
                    results = [ItemResult(i, True, None, None, {}) for i in range(len(batch))]
                    ledger.record_results(op_id, OperationStatus.COMPLETED, results)
    finally:
        ledger.close()


def published_courses(demo: Path) -> int:
    with open(demo.parent / "demo" / "courses.csv", newline="") as handle:
        return sum(1 for row in csv.DictReader(handle) if row["status"] == "published")


def test_fresh_ledger_plans_everything(demo: Path) -> None:
    code, out, err = run("plan", str(demo), "--detailed-exitcode")
    assert (code, err) == (2, "")
    first = out.splitlines()[0]
    assert re.fullmatch(
        # held: the demo's own pairs with overlapping attempts (see test_held_... below)
        rf"acme: courses \+{published_courses(demo)} ~0 -0 \| stats \+\d+ ~0 =0( held \d+)? \| invalid 5",
        first,
    )
    assert "Invalid rows (showing 5 of 5):" in out
    assert re.search(r"stats\.csv:\d+  acme stat  progress: ", out)
    code, out, _ = run("plan", str(demo))
    assert code == 0  # without --detailed-exitcode changes are not an exit status


def edit_seconds(demo: Path, line: int, more: int = 60) -> int:
    """Add ``more`` seconds to the time spent of one row of stats.csv; the old value."""
    stats = demo.parent / "demo" / "stats.csv"
    lines = stats.read_text("utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(";")
    row = lines[line - 1].rstrip("\n").split(";")
    old_seconds = int(row[header.index("seconds")])
    row[header.index("seconds")] = str(old_seconds + more)
    lines[line - 1] = ";".join(row) + "\n"
    stats.write_text("".join(lines), "utf-8")
    return old_seconds


def held_now(demo: Path) -> tuple[int, list[str]]:
    """The plan's held total and the origins of its held statistics (JSON format)."""
    data = json.loads(run("plan", str(demo), "--format", "json")[1])
    return data["held_total"], [u["origin"] for u in data["unsafe"] if u["held"]]


def test_synced_ledger_plans_nothing_then_one_edit_shows_one_change(demo: Path) -> None:
    sync_everything(demo)
    code, out, _ = run("plan", str(demo), "--detailed-exitcode")
    assert code == 0
    assert "No changes." in out and "stats +0 ~0 =" in out
    held_before = held_now(demo)

    old_seconds = edit_seconds(demo, 4)  # an open attempt (25 %): the change updates it
    code, out, _ = run("plan", str(demo), "--detailed-exitcode")
    assert code == 2
    assert " ~1 =" in out.splitlines()[0]
    changes = [line for line in out.splitlines() if line.startswith("  ~ ")]
    assert len(changes) == 1 and changes[0].endswith("(stats.csv:4)")
    assert f"      timeSpent: {old_seconds * 1000} -> {(old_seconds + 60) * 1000}" in out
    assert held_now(demo) == held_before  # a safe edit: sent, not held


def test_an_edit_of_a_completed_attempt_is_held_in_every_format(demo: Path) -> None:
    sync_everything(demo)
    held, origins = held_now(demo)  # the demo's own overlapping attempts, never sent
    edit_seconds(demo, 2)  # learner01 completed ACME-020: resending would open a second attempt
    code, out, _ = run("plan", str(demo), "--detailed-exitcode")
    assert code == 3  # nothing to send, but apply would exit 3: a person must decide
    statistics = "statistic" if held == 0 else "statistics"
    lines = out.splitlines()
    assert lines[:2] == [
        "warning: apply would exit 3 with this plan, and so does plan:",
        f"warning: acme: {held + 1} {statistics} {'is' if held == 0 else 'are'} held, a person must decide "
        "(listed below)",
    ]
    lines = lines[2:]
    assert re.fullmatch(
        rf"acme: courses \+0 ~0 -0 \| stats \+0 ~0 =\d+ held {held + 1} \| invalid 5", lines[0]
    )
    assert lines[1] == (
        f"held: {held + 1} {statistics} not sent: the platform would refuse them, or their predicted "
        "effect on its attempts is unsafe; apply exits 3 (listed below)"
    )
    assert lines[2] == "No changes."
    section = lines.index(f"Held statistics (showing {held + 1} of {held + 1}):")
    assert (
        "  ! acme stat ACME-020 · learner01@acme.example · 2025-07-13T05:35Z "
        "(stats.csv:2): duplicate: the attempt of learner01@acme.example on ACME-020 started "
        "2025-07-13T05:35Z is completed on the platform; sending the change would open a second attempt"
    ) in lines[section + 1 :]
    assert len(lines) == section + 1 + held + 1  # the held statistics come last

    code, out, _ = run("plan", str(demo), "--format", "json")
    data = json.loads(out)
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    assert code == data["would_exit"] == 3
    assert [(b["integration"], b["reason"]) for b in data["blocking"]] == [("acme", "held")]
    assert data["held_total"] == data["unsafe_total"] == data["integrations"][0]["stats"]["held"] == held + 1
    assert data["has_changes"] is False
    edited = [u for u in data["unsafe"] if u["origin"] == "stats.csv:2"]
    assert [(u["action"], u["effect"], u["held"]) for u in edited] == [("changed", "duplicate", True)]
    assert sorted(u["origin"] for u in data["unsafe"]) == sorted([*origins, "stats.csv:2"])

    code, out, _ = run("plan", str(demo), "--format", "markdown")
    assert code == 3
    assert out.startswith(
        "### syncer plan\n\n"
        "> **Warning: `syncer apply` would exit 3 with this plan** (and so does `syncer plan`):\n"
        f"> - acme: {held + 1} {statistics} {'is' if held == 0 else 'are'} held, a person must decide"
    )
    assert out.index(f"> **Warning: {held + 1} {statistics} held**") < out.index("| integration |")
    assert f"<details><summary>Held statistics ({held + 1})</summary>" in out
    assert "(stats.csv:2): _duplicate_: the attempt of learner01@acme.example" in out


def test_json_and_markdown_formats(demo: Path) -> None:
    code, out, _ = run("plan", str(demo), "--format", "json")
    assert code == 0
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(json.loads(out))) == []
    code, out, _ = run("plan", str(demo), "--format", "markdown")
    assert code == 0 and out.startswith("### syncer plan\n") and "<details>" in out


def test_saved_plan_is_refused_once_the_ledger_or_a_source_changed(demo: Path, tmp_path: Path) -> None:
    saved_path = tmp_path / "plan.json"
    code, _, _ = run("plan", str(demo), "--out", str(saved_path))
    assert code == 0
    assert SECRET not in saved_path.read_text("utf-8")
    config = load_config(demo)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        saved = load_saved_plan(saved_path)
        check_saved_plan(saved, config, ledger)  # nothing changed yet

        with (demo.parent / "demo" / "courses.csv").open("a") as handle:
            handle.write("ACME-999,New,en,x,5,beginner,d,draft\n")
        with pytest.raises(PlanError, match="the source 'catalog' changed since the plan was made"):
            check_saved_plan(saved, config, ledger)

        run("plan", str(demo), "--out", str(saved_path))
        saved = load_saved_plan(saved_path)
        check_saved_plan(saved, config, ledger)
        ledger.prepare_operation(None, "acme", OperationType.IMPORT_COURSES, [])
        with pytest.raises(
            PlanError,
            match="the ledger changed for integration 'acme' since the plan was made; run syncer plan again",
        ):
            check_saved_plan(saved, config, ledger)
    finally:
        ledger.close()


def test_unreadable_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("{not json", "utf-8")
    with pytest.raises(PlanError, match="not a plan file"):
        load_saved_plan(path)


def test_unknown_integration_is_a_config_error(demo: Path) -> None:
    code, out, err = run("plan", str(demo), "--integration", "nope")
    assert (code, out) == (1, "")
    assert err == f"Error: {demo}: no integration named nope (known: acme)\n"


def test_ledger_folder_missing_exits_1(demo: Path, tmp_path: Path) -> None:
    text = demo.read_text("utf-8").replace(
        "version: 1\n", f"version: 1\nledger: sqlite:///{tmp_path}/no/such/dir.db\n"
    )
    demo.write_text(text, "utf-8")
    code, out, err = run("plan", str(demo))
    assert (code, out) == (1, "")  # a person must create the folder: no rerun helps
    assert err.startswith(f"Error: ledger sqlite:///{tmp_path}/no/such/dir.db: ")
    assert f"the folder {tmp_path}/no/such does not exist" in err


def test_bad_config_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nnonsense: true\n", "utf-8")
    code, out, err = run("plan", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(str(path))


def keep_courses(demo: Path, count: int) -> None:
    """Keep the header and the first ``count`` rows of courses.csv."""
    courses = demo.parent / "demo" / "courses.csv"
    courses.write_text("".join(courses.read_text("utf-8").splitlines(keepends=True)[: count + 1]), "utf-8")


def break_dates(demo: Path) -> None:
    """A date format that no statistic row matches: every statistic is invalid."""
    text = demo.read_text("utf-8")
    demo.write_text(
        text.replace('{column: started, format: "%d/%m/%Y %H:%M"', '{column: started, format: "%Y"')
    )


def test_the_mass_archive_guard_makes_plan_exit_6_unless_allowed(demo: Path) -> None:
    sync_everything(demo)
    keep_courses(demo, 2)  # 18 or so of 20 live courses would be archived
    code, out, err = run("plan", str(demo), "--detailed-exitcode")
    assert (code, err) == (6, "")
    lines = out.splitlines()
    assert lines[0] == "warning: apply would exit 6 with this plan, and so does plan:"
    assert re.fullmatch(
        r"warning: acme: the plan archives \d+ of 20 live courses \(more than 10% and more than 5\); "
        r"check the courses source, or pass --allow-mass-archive",
        lines[1],
    )
    data = json.loads(run("plan", str(demo), "--format", "json")[1])
    assert data["would_exit"] == 6
    assert [(b["integration"], b["reason"]) for b in data["blocking"]] == [("acme", "mass_archive")]
    markdown = run("plan", str(demo), "--format", "markdown")[1]
    assert "> **Warning: `syncer apply` would exit 6 with this plan**" in markdown.splitlines()[2]
    code, out, _ = run("plan", str(demo), "--detailed-exitcode", "--allow-mass-archive")
    assert code == 2 and not out.startswith("warning:")  # acknowledged: changes present
    assert run("plan", str(demo), "--allow-mass-archive")[0] == 0


def test_invalid_rows_beyond_tolerance_make_plan_exit_3_and_the_guard_wins(demo: Path) -> None:
    break_dates(demo)
    code, out, _ = run("plan", str(demo), "--detailed-exitcode")
    assert code == 3
    assert out.splitlines()[:2] == [
        "warning: apply would exit 3 with this plan, and so does plan:",
        "warning: acme: 494 invalid rows, more than tolerate_invalid allows (listed below)",
    ]
    sync_everything(demo)
    keep_courses(demo, 1)
    code, out, _ = run("plan", str(demo), "--format", "json")
    data = json.loads(out)
    assert code == data["would_exit"] == 6  # 6 > 3 > 2 > 0
    assert [b["reason"] for b in data["blocking"]] == ["mass_archive", "invalid_beyond_tolerance"]
    assert run("plan", str(demo), "--allow-mass-archive")[0] == 3


def test_an_empty_catalog_archives_nothing_and_says_why_in_every_format(demo: Path) -> None:
    sync_everything(demo)
    keep_courses(demo, 0)  # header only: an export that failed
    code, out, err = run("plan", str(demo), "--detailed-exitcode")
    assert (code, err) == (0, "")  # nothing archived, nothing sent
    warning = (
        "acme: source 'catalog' gave no courses (empty, header only, or every row filtered out); "
        "nothing is archived (archive_missing never archives from an empty source)"
    )
    assert out.splitlines()[1] == f"warning: {warning}"
    code, out, _ = run("plan", str(demo), "--format", "json")
    data = json.loads(out)
    assert data["integrations"][0]["warnings"] == [warning]
    assert data["integrations"][0]["archives"] == 0 and data["would_exit"] == 0
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    assert f"> **Warning:** {warning}" in run("plan", str(demo), "--format", "markdown")[1]


def test_plan_prints_the_config_warnings(demo: Path) -> None:
    text = demo.read_text("utf-8").replace("${L360_CLIENT_SECRET:-demo-secret}", "literal-secret")
    demo.write_text(text, "utf-8")
    code, out, err = run("plan", str(demo))
    assert code == 0 and "literal-secret" not in out + err
    assert err == (
        f"warning: {demo}:15:18: api.client_secret: the secret is written in the config; keep it in the "
        "environment: client_secret: ${L360_CLIENT_SECRET}\n"
    )
