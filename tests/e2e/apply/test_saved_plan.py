"""A plan saved by ``syncer plan --out`` is applied as is, and refused once it went stale."""

from __future__ import annotations

from tests.e2e.apply.conftest import Project, attempts_per_pair, live_courses, operations, stat_rows


def test_saved_plan_is_applied(project: Project) -> None:
    planfile = project.root / "plan.json"
    made = project.cli("plan", str(project.config), "--out", str(planfile))
    assert made.exit_code == 0 and planfile.is_file()
    assert project.cli("status", str(project.config)).exit_code == 0  # reading changes nothing
    result = project.apply(str(planfile))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert len(live_courses(project.sim)) == 4 and len(attempts_per_pair(project.sim)) == 12
    assert "s3cret" not in planfile.read_text()


def test_saved_plan_refused_after_a_source_changed(project: Project) -> None:
    planfile = project.root / "plan.json"
    assert project.cli("plan", str(project.config), "--out", str(planfile)).exit_code == 0
    rows = stat_rows(4, 3)
    rows[0][2] = "90"
    project.write_stats(rows)
    result = project.apply(str(planfile))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {planfile}: the source 'progress' changed since the plan was made; run syncer plan again\n"
    )
    assert operations(project.sim) == []


def test_saved_plan_refused_after_the_ledger_changed(project: Project) -> None:
    planfile = project.root / "plan.json"
    assert project.cli("plan", str(project.config), "--out", str(planfile)).exit_code == 0
    assert project.apply().exit_code == 0  # another run went first
    sent = len(operations(project.sim))
    result = project.apply(str(planfile))
    assert result.exit_code == 1
    assert "the ledger changed since the plan was made" in result.stderr
    assert len(operations(project.sim)) == sent
