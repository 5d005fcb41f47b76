"""Every exit code of product.md §3 that apply, plan, status and rejected can give."""

from __future__ import annotations

import pytest

from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.ledger.lock import acquire_lock
from tests.e2e.apply.conftest import Project, course_rows, live_courses, operations, stat_rows


def test_0_done_and_plan_detailed_exitcode_2_then_0(project: Project) -> None:
    config = str(project.config)
    assert project.cli("plan", config, "--detailed-exitcode").exit_code == 2
    assert project.cli("plan", config).exit_code == 0
    assert project.apply().exit_code == 0
    assert project.cli("plan", config, "--detailed-exitcode").exit_code == 0
    assert project.cli("status", config).exit_code == 0
    assert project.cli("rejected", config).exit_code == 0


@pytest.mark.parametrize("command", ["apply", "plan", "status", "rejected"])
def test_1_usage_and_config_errors(project: Project, command: str) -> None:
    unknown = project.cli(command, str(project.config), "--no-such-option")
    assert unknown.exit_code == 1
    assert "Error: No such option '--no-such-option'" in unknown.stderr
    assert unknown.stderr.startswith(f"Usage: syncer {command} ")
    missing = project.cli(command)
    assert missing.exit_code == 1 and "Missing argument 'CONFIG'" in missing.stderr
    broken = project.root / "broken.yaml"
    broken.write_text(
        "version: 1\napi: {base_url: http://127.0.0.1:1, client_id: x, client_secret: y}\nbogus: 1\n"
    )
    result = project.cli(command, str(broken))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{broken}:")
    assert "Traceback" not in result.stderr + result.stdout


def test_1_unknown_integration_name(project: Project) -> None:
    result = project.apply("--integration", "nope")
    assert result.exit_code == 1
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_3_invalid_rows_beyond_tolerance_but_valid_ones_synced(project: Project) -> None:
    rows = stat_rows(4, 3)
    rows[0][3] = "0"  # timeSpent 0 is invalid
    project.write_stats(rows)
    result = project.apply()
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "invalid 1 (beyond tolerate_invalid)" in result.stdout
    assert "stats.csv:2" in result.stdout
    assert operations(project.sim)[-1]["items"] == 11
    project.write_config(tolerate=1)
    assert project.apply().exit_code == 0


def test_4_api_failure_is_safe_to_rerun(project: Project) -> None:
    project.write_config()  # retry_seconds 30 -> make the client give up quickly instead
    project.config.write_text(project.config.read_text().replace("retry_seconds: 30", "retry_seconds: 1"))
    project.sim.add_faults([{"method": "PUT", "path_regex": "/courses$", "status": 503, "count": 50}])
    result = project.apply()
    assert result.exit_code == 4
    assert "503" in result.stderr and "gave up" in result.stderr
    assert "Traceback" not in result.stderr
    assert operations(project.sim) == []
    project.sim.reset()
    assert project.apply().exit_code == 0
    assert len(live_courses(project.sim)) == 4


def test_1_bad_credentials(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret")
    result = project.apply()
    assert result.exit_code == 1  # no rerun fixes it: a person must (tests/e2e/apply/test_exit_classes.py)
    assert "invalid_client" in result.stderr and "wrong-secret" not in result.stderr


def test_5_another_run_holds_the_lock(project: Project) -> None:
    config = load_config(project.config)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        with acquire_lock(ledger, ["acme"], timeout=0):
            result = project.apply()
            assert result.exit_code == 5
            assert "another syncer run holds the lock" in result.stderr
            status = project.cli("status", str(project.config))
            assert status.exit_code == 0 and "Locks:\n  " in status.stdout
    finally:
        ledger.close()
    assert operations(project.sim) == []
    assert project.apply().exit_code == 0  # released: the next run goes ahead


def test_6_mass_archive_guard_then_allowed(project: Project) -> None:
    project.write_courses(course_rows(10))
    project.write_stats([])
    assert project.apply().exit_code == 0
    project.write_courses(course_rows(3))  # 7 of 10 live courses would go
    sent = len(operations(project.sim))
    refused = project.apply()
    assert refused.exit_code == 6
    assert "mass-archive guard" in refused.stderr and "--allow-mass-archive" in refused.stderr
    assert len(operations(project.sim)) == sent and len(live_courses(project.sim)) == 10
    allowed = project.apply("--allow-mass-archive")
    assert allowed.exit_code == 0, allowed.stdout + allowed.stderr
    assert live_courses(project.sim) == {"C001", "C002", "C003"}
    assert operations(project.sim)[-1]["type"] == "archiveExternalCourses"
