"""First sync, idempotent rerun, one edit, status and rejected output: through the real CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from tests.conftest import ROOT
from tests.e2e.apply.conftest import (
    Project,
    attempts_per_pair,
    live_courses,
    operations,
    stat_rows,
    submissions,
)


def test_first_sync_applies_every_record(project: Project) -> None:
    result = project.apply()
    assert result.exit_code == 0, result.stderr
    assert live_courses(project.sim) == {"C001", "C002", "C003", "C004"}
    attempts = attempts_per_pair(project.sim)
    assert len(attempts) == 12 and set(attempts.values()) == {1}
    assert [op["status"] for op in operations(project.sim)] == ["completed", "completed"]
    assert "acme: 2 operation(s) | synced 16 | rejected 0 | invalid 0" in result.stdout
    synced = project.ledger_rows("SELECT kind, status, count(*) FROM records GROUP BY kind, status")
    assert sorted(synced) == [("course", "synced", 4), ("stat", "synced", 12)]


def test_rerun_without_change_submits_nothing(project: Project) -> None:
    assert project.apply().exit_code == 0
    before = len(project.sim.snapshot()["journal"])
    sent = len(submissions(project.sim))
    result = project.apply()
    assert result.exit_code == 0, result.stderr
    assert len(submissions(project.sim)) == sent
    later = project.sim.snapshot()["journal"][before:]
    writes = [e for e in later if e["method"] != "GET" and e["path"] != "/api/v2/oauth2/token"]
    assert writes == []  # not even an integration patch
    assert "nothing to send" in result.stdout


def test_one_edited_row_sends_exactly_one_record(project: Project) -> None:
    assert project.apply().exit_code == 0
    rows = stat_rows(4, 3)
    rows[5][2] = "100"  # one learner finished one course
    project.write_stats(rows)
    result = project.apply()
    assert result.exit_code == 0, result.stderr
    last = operations(project.sim)[-1]
    assert (len(operations(project.sim)), last["type"], last["items"]) == (3, "importExternalStatistics", 1)
    assert set(attempts_per_pair(project.sim).values()) == {1}  # the attempt was updated, not added
    assert "synced 1 |" in result.stdout


def test_status_and_rejected_after_a_run(project: Project) -> None:
    rows = stat_rows(4, 3)
    rows.append(["C001", "broken@acme.example", "250", "60", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z"])
    project.write_stats(rows)
    project.write_config(tolerate=1)
    assert project.apply().exit_code == 0

    text = project.cli("status", str(project.config))
    assert text.exit_code == 0
    assert "acme: courses synced 4 | stats synced 12 | invalid 1 | held 0" in text.stdout
    assert "Operations in flight: none" in text.stdout
    assert "apply succeeded" in text.stdout

    data = json.loads(project.cli("status", str(project.config), "--format", "json").stdout)
    acme = data["integrations"]["acme"]
    assert {k: acme[k] for k in ("records", "invalid", "held", "drift", "orphaned")} == {
        "records": {"course": {"synced": 4}, "stat": {"synced": 12}},
        "invalid": 1,
        "held": 0,
        "drift": 0,
        "orphaned": False,
    }
    assert acme["api_id"] == project.ledger_rows("select api_id from integrations")[0][0]
    assert data["in_flight"] == [] and data["locks"] == []
    assert data["runs"][0]["status"] == "succeeded"

    rejected = project.cli("rejected", str(project.config))
    assert rejected.exit_code == 0
    assert "Rejected by the API: 0" in rejected.stdout
    assert "stats.csv:14" in rejected.stdout and "progress: 250" in rejected.stdout
    data = json.loads(project.cli("rejected", str(project.config), "--format", "json").stdout)
    assert data["rejected"] == [] and (data["held"], data["held_total"]) == ([], 0)
    assert [(r["origin"], r["field"]) for r in data["invalid"]] == [("stats.csv:14", "progress")]


def test_demo_simulate_leaves_the_real_ledger_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "demo.yaml")
    shutil.copytree(ROOT / "configs" / "demo", tmp_path / "demo")
    monkeypatch.setenv("L360_BASE_URL", "http://127.0.0.1:9")  # never reached: --simulate
    args = ["apply", str(tmp_path / "demo.yaml"), "--simulate", "--poll-seconds", "0.01"]
    result = CliRunner().invoke(cli, args, prog_name="syncer")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert re.search(
        r"^acme: 2 operation\(s\) \| synced \d+ \| rejected 0 \| invalid 5 \(tolerated\)$",
        result.stdout,
        re.M,
    )
    assert "invalid rows (never sent):" in result.stdout
    assert "simulating: API http://127.0.0.1:" in result.stderr
    assert not (tmp_path / "syncer.db").exists()
