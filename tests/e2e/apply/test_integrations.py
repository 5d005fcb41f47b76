"""Declared integrations are found or created and patched; a given ``id`` must exist."""

from __future__ import annotations

from tests.e2e.apply.conftest import AUTHOR, DECLARED, GROUP, Project, live_courses

INTEGRATIONS = "/api/v2/integrations"


def integration_calls(project: Project) -> list[str]:
    return [
        e["method"]
        for e in project.sim.snapshot()["journal"]
        if e["path"].startswith(INTEGRATIONS) and e["method"] != "GET"
    ]


def test_declared_integration_is_created_then_found_then_patched(project: Project) -> None:
    assert project.apply().exit_code == 0
    [created] = project.sim.snapshot()["integrations"]
    assert (created["externalPlatform"], created["groupId"], created["authorId"]) == (
        "Acme Academy",
        GROUP,
        AUTHOR,
    )
    assert created["defaultCompletion"] is False
    assert integration_calls(project) == ["POST"]
    assert project.ledger_rows("SELECT name, api_id FROM integrations") == [("acme", created["_id"])]

    # Only the settings change: no record to send, but the integration is brought in step.
    settings = {**DECLARED["settings"], "defaultCompletion": True}
    project.write_config(integration={**DECLARED, "settings": settings})
    result = project.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert integration_calls(project) == ["POST", "PATCH"]
    [patched] = project.sim.snapshot()["integrations"]
    assert patched["_id"] == created["_id"] and patched["defaultCompletion"] is True

    assert project.apply().exit_code == 0
    assert integration_calls(project) == ["POST", "PATCH"]  # in step: nothing more


def test_existing_integration_found_by_platform_and_group(project: Project) -> None:
    existing = project.sim.state.add_integration(
        externalPlatform="Acme Academy",
        groupId=GROUP,
        authorId=AUTHOR,
        defaultProgress=0,
        defaultCompletion=False,
    )
    project.sim.state.add_integration(externalPlatform="Acme Academy", groupId="0" * 24, authorId=AUTHOR)
    assert project.apply().exit_code == 0
    assert integration_calls(project) == []
    assert project.ledger_rows("SELECT api_id FROM integrations") == [(existing["_id"],)]
    courses = [c for c in project.sim.snapshot()["courses"] if c["integrationId"] == existing["_id"]]
    assert len(courses) == 4


def test_given_id_is_used_when_it_exists(project: Project) -> None:
    existing = project.sim.state.add_integration(externalPlatform="Acme Academy")
    project.write_config(integration={"id": existing["_id"]})
    assert project.apply().exit_code == 0
    assert integration_calls(project) == []
    assert len(live_courses(project.sim)) == 4


def test_given_id_that_does_not_exist_is_a_clear_error(project: Project) -> None:
    missing = "507f1f77bcf86cd799439011"
    project.write_config(integration={"id": missing})
    result = project.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert f"integration acme: id {missing} does not exist on the platform" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.sim.snapshot()["operations"] == []
