"""A plan saved by ``syncer plan --out`` is applied as is, and refused once it went stale."""

from __future__ import annotations

import copy

import yaml

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
    assert "the ledger changed for integration 'acme' since the plan was made" in result.stderr
    assert len(operations(project.sim)) == sent


def _two_integrations(project: Project) -> None:
    """Rewrite the project's config with a second integration, ``beta``, reading the same files."""
    project.write_config()
    config = yaml.safe_load(project.config.read_text())
    beta = copy.deepcopy(config["integrations"]["acme"])
    beta.update(platform="Beta Academy", group="64b7f0c2a1e4d5f6a7b8c9d2")
    config["integrations"]["beta"] = beta
    project.config.write_text(yaml.safe_dump(config, sort_keys=False))


def test_saved_plan_stays_valid_after_an_apply_of_another_integration(project: Project) -> None:
    _two_integrations(project)
    planfile = project.root / "acme.plan.json"
    made = project.cli("plan", str(project.config), "--integration", "acme", "--out", str(planfile))
    assert made.exit_code == 0, made.stderr
    assert project.apply("--integration", "beta").exit_code == 0  # writes for beta only
    result = project.apply(str(planfile))
    assert result.exit_code == 0, result.stdout + result.stderr
    kinds = [(o["integrationId"], o["type"]) for o in operations(project.sim)]
    assert len({i for i, _ in kinds}) == 2  # beta's run, then acme's from the saved plan


def test_saved_plan_refused_after_a_write_for_its_integration(project: Project) -> None:
    _two_integrations(project)
    planfile = project.root / "acme.plan.json"
    made = project.cli("plan", str(project.config), "--integration", "acme", "--out", str(planfile))
    assert made.exit_code == 0, made.stderr
    assert project.apply("--integration", "acme").exit_code == 0  # another run for acme went first
    sent = len(operations(project.sim))
    result = project.apply(str(planfile))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {planfile}: the ledger changed for integration 'acme' since the plan was made; "
        "run syncer plan again\n"
    )
    assert len(operations(project.sim)) == sent
