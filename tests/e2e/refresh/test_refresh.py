"""The platform read back (docs/refresh.md): a lost ledger, a renamed key, a deleted integration,
drift, learners and courses the platform does not have, attempts made by others.

Each test runs the real CLI in-process against a simulator over loopback HTTP, with a SQLite
ledger built by the migrations; "by hand" changes go through the platform's own API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from syncer.resources import schema_path
from syncer.simulator import SimClient, SimulatorThread
from syncer.simulator.settings import ALL_SCOPES
from tests.e2e.apply.conftest import attempts_per_pair, live_courses, submissions
from tests.e2e.refresh.conftest import CLIENT_ID, SECRET, Project, by_hand, control
from tests.project import AUTHOR, GROUP, course_rows, stat_rows

STATS_PATH = "/stats"


def _stat_submissions(sim: SimulatorThread) -> list[dict[str, object]]:
    return [e for e in submissions(sim) if e["path"].endswith(STATS_PATH)]


def _forget_ledger(project: Project) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{project.ledger}{suffix}").unlink(missing_ok=True)


def _synced(project: Project) -> list[tuple[object, ...]]:
    return project.ledger_rows(
        "select integration, kind, key, hash, live from records where status = 'synced' order by kind, key"
    )


def test_a_lost_ledger_is_rebuilt_from_the_platform_and_nothing_is_sent_again(project: Project) -> None:
    assert project.apply().exit_code == 0
    sent, pairs, synced = submissions(project.sim), attempts_per_pair(project.sim), _synced(project)
    assert len(synced) == 4 + 12
    _forget_ledger(project)

    result = project.apply()

    assert result.exit_code == 0, result.output
    assert submissions(project.sim) == sent  # no course, no statistic sent again
    assert attempts_per_pair(project.sim) == pairs  # so no attempt was duplicated
    assert _synced(project) == synced  # the ledger holds what it held, same content hashes
    plan = project.cli("plan", str(project.config), "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes." in plan.stdout


def test_a_lost_ledger_sends_only_what_the_platform_does_not_hold(project: Project) -> None:
    assert project.apply().exit_code == 0
    sent = len(_stat_submissions(project.sim))
    _forget_ledger(project)
    rows = stat_rows(4, 3)
    rows[0][2] = "80"  # progress changed since the platform got it: an update of that attempt
    project.write_stats(
        [*rows, ["C001", "new@acme.example", "10", "30", "2025-04-01T08:00:00Z", "2025-04-01T08:10:00Z"]]
    )

    plan = project.cli("plan", str(project.config), "--refresh", "--format", "json")
    assert plan.exit_code == 0, plan.output
    assert '"changed": 1' in plan.stdout and '"new": 1' in plan.stdout
    assert project.apply().exit_code == 0
    assert len(_stat_submissions(project.sim)) == sent + 1
    attempts = {(a["courseId"], a["user"]): a["attempts"] for a in project.sim.snapshot()["attempts"]}
    assert all(len(found) == 1 for found in attempts.values())  # updated in place, never a second one
    assert sum(len(found) for found in attempts.values()) == 13


def test_a_renamed_key_keeps_its_records_and_sends_nothing_again(project: Project) -> None:
    assert project.apply().exit_code == 0
    sent = submissions(project.sim)
    text = project.config.read_text()
    assert "\n  acme:\n" in text
    project.config.write_text(text.replace("\n  acme:\n", "\n  academy:\n"))

    plan = project.cli("plan", str(project.config), "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "renamed: acme -> academy" in plan.stdout
    result = project.apply()

    assert result.exit_code == 0, result.output
    assert submissions(project.sim) == sent
    assert project.ledger_rows("select distinct integration from records") == [("academy",)]


def test_an_integration_no_longer_in_the_config_is_reported_as_orphaned(project: Project) -> None:
    assert project.apply().exit_code == 0
    text = project.config.read_text()
    project.config.write_text(text.replace("\n  acme:\n", "\n  other:\n").replace("Acme Academy", "Other"))

    plan = project.cli("plan", str(project.config))
    status = project.cli("status", str(project.config))

    assert "orphaned: acme" in plan.stdout
    assert "orphaned" in status.stdout and "acme" in status.stdout
    assert project.ledger_rows("select count(*) from records where integration = 'acme'") == [(16,)]


def test_an_integration_deleted_on_the_platform_is_created_and_filled_again(project: Project) -> None:
    assert project.apply().exit_code == 0
    [(old_id,)] = project.ledger_rows("select api_id from integrations")
    by_hand(project.sim, "DELETE", f"/api/v2/integrations/{old_id}")

    result = project.apply()

    assert result.exit_code == 0, result.output
    [(new_id,)] = project.ledger_rows("select api_id from integrations")
    assert new_id != old_id
    courses = [c for c in project.sim.snapshot()["courses"] if c["integrationId"] == new_id]
    assert sorted(c["externalId"] for c in courses if c["status"] == "live") == [
        "C001",
        "C002",
        "C003",
        "C004",
    ]
    assert project.ledger_rows("select count(*) from records where status != 'synced'") == [(0,)]
    attempts = [a for a in project.sim.snapshot()["attempts"] if a["integrationId"] == new_id]
    assert sum(len(a["attempts"]) for a in attempts) == 12  # every statistic accepted
    assert (
        "sent again" in result.stderr
        or "recreated" in result.stderr
        or "no longer on the platform" in result.stderr
    )


def test_a_course_archived_by_hand_is_drift_and_apply_restores_it(project: Project) -> None:
    assert project.apply().exit_code == 0
    course = next(c for c in project.sim.snapshot()["courses"] if c["externalId"] == "C002")
    by_hand(project.sim, "PUT", f"/api/v2/courses/{course['courseId']}/archive", {"archived": True})
    assert "C002" not in live_courses(project.sim)

    refresh = project.cli("refresh", str(project.config))
    plan = project.cli("plan", str(project.config), "--detailed-exitcode")
    data = json.loads(project.cli("plan", str(project.config), "--format", "json").stdout)
    markdown = project.cli("plan", str(project.config), "--format", "markdown").stdout
    result = project.apply()

    assert refresh.exit_code == 0, refresh.output
    assert "course C002: archived on the platform" in refresh.stdout
    assert plan.exit_code == 2, plan.output
    assert "course C002: archived on the platform" in plan.stdout
    assert "+ acme course C002" in plan.stdout
    schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    assert data["drift"] == [
        {
            "integration": "acme",
            "kind": "course",
            "key": "C002",
            "display_key": "C002",
            "what": "archived",
            "old": "published",
            "new": "archived",
            "restore": True,
        }
    ]
    assert "Drift found by the last refresh (1)" in markdown
    assert result.exit_code == 0, result.output
    assert "C002" in live_courses(project.sim)
    after = project.cli("plan", str(project.config), "--detailed-exitcode")
    assert after.exit_code == 0
    assert "Drift" not in after.stdout  # put right by the apply


def test_a_course_archived_by_hand_is_only_reported_with_on_drift_report(project: Project) -> None:
    text = project.config.read_text()
    project.config.write_text(
        text.replace("archive_missing: true", "archive_missing: true\n      on_drift: report")
    )
    assert project.apply().exit_code == 0
    course = next(c for c in project.sim.snapshot()["courses"] if c["externalId"] == "C003")
    by_hand(project.sim, "PUT", f"/api/v2/courses/{course['courseId']}/archive", {"archived": True})

    refresh = project.cli("refresh", str(project.config))
    plan = project.cli("plan", str(project.config))

    assert "course C003: archived on the platform" in refresh.stdout and "reported only" in refresh.stdout
    assert "+ acme course C003" not in plan.stdout
    assert project.apply().exit_code in (0, 3)
    assert "C003" not in live_courses(project.sim)


def test_statistics_of_unknown_learners_are_held_after_refresh_users(
    make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project]
) -> None:
    known = {f"learner{u:02d}@acme.example" for u in (1, 2)}  # learner03 is not on the platform
    project = make_project(make_sim(users=frozenset(known)))
    refresh = project.cli("refresh", str(project.config), "--users")
    assert refresh.exit_code == 0, refresh.output

    result = project.apply()

    assert result.exit_code == 3, result.output
    users = {a["user"] for a in project.sim.snapshot()["attempts"]}
    assert not any("learner03" in user for user in users)  # never sent
    errors = [op["errors"] for op in project.sim.snapshot()["operations"]]
    assert sum(errors) == 0  # nothing came back as an item error
    rejected = project.cli("rejected", str(project.config))
    held = [line for line in rejected.stdout.splitlines() if "learner03@acme.example" in line]
    assert len(held) == 4 and all("unknown learner" in line or "not a learner" in line for line in held)

    control(project.sim, "users", [{"mail": "learner03@acme.example"}])
    assert project.cli("refresh", str(project.config), "--users").exit_code == 0
    again = project.apply()
    assert again.exit_code == 0, again.output
    assert sum(1 for a in project.sim.snapshot()["attempts"] if "learner03" in a["user"]) == 4


def test_without_a_learner_listing_unknown_learners_are_sent(
    make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project]
) -> None:
    known = {f"learner{u:02d}@acme.example" for u in (1, 2)}
    project = make_project(make_sim(users=frozenset(known)))
    result = project.apply()
    assert result.exit_code == 3  # rejected by the platform: the check was never asked for
    assert project.ledger_rows("select count(*) from records where status = 'rejected'") == [(4,)]


def test_a_statistic_of_a_course_not_on_the_platform_is_held_until_the_course_is_imported(
    project: Project,
) -> None:
    project.write_stats(
        [
            *stat_rows(4, 3),
            ["C009", "learner01@acme.example", "50", "60", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z"],
        ]
    )
    result = project.apply()
    assert result.exit_code == 3, result.output
    rejected = project.cli("rejected", str(project.config))
    assert "course not on the platform" in rejected.stdout and "C009" in rejected.stdout
    assert sum(op["errors"] for op in project.sim.snapshot()["operations"]) == 0

    project.write_courses(course_rows(9))
    again = project.apply()
    assert again.exit_code == 0, again.output
    assert project.ledger_rows("select status from records where key like '%C009%learner01%'") == [
        ("synced",)
    ]


def test_an_attempt_a_learner_opened_is_met_by_the_prediction_after_a_refresh(project: Project) -> None:
    assert project.apply().exit_code == 0
    [(api_id,)] = project.ledger_rows("select api_id from integrations")
    solo = "solo@acme.example"
    control(project.sim, "launch", {"integrationId": api_id, "externalId": "C001", "mail": solo})
    # A statistic of that learner and course that started before the launch: the launched
    # attempt is open and ends after it starts, so the platform would overwrite that attempt.
    late = ["C001", solo, "70", "60", "2025-06-01T08:00:00Z", "2025-06-01T09:00:00Z"]
    project.write_stats([*stat_rows(4, 3), late])
    blind = project.cli("plan", str(project.config))
    assert "held" not in blind.stdout  # the ledger alone does not know the launched attempt

    refresh = project.cli("refresh", str(project.config))
    result = project.apply()

    assert refresh.exit_code == 0, refresh.output
    assert "1 made by others" in refresh.stdout
    assert result.exit_code == 3, result.output  # held: it would overwrite the launched attempt
    held = project.cli("rejected", str(project.config))
    assert "overwrite" in held.stdout
    attempts = [a for a in project.sim.snapshot()["attempts"] if a["user"].endswith(solo)]
    assert [len(a["attempts"]) for a in attempts] == [1]
    assert attempts[0]["attempts"][0]["progress"] == 0  # the launched attempt, untouched


@pytest.mark.parametrize("users", [False, True])
def test_a_refresh_never_writes_to_the_platform(project: Project, users: bool) -> None:
    assert project.apply().exit_code == 0
    before = len(project.sim.snapshot()["journal"])
    _forget_ledger(project)

    refresh = project.cli("refresh", str(project.config), *(["--users"] if users else []))

    assert refresh.exit_code == 0, refresh.output
    methods = {e["method"] for e in project.sim.snapshot()["journal"][before:]}
    assert methods <= {"GET", "POST"}
    posts = [e["path"] for e in project.sim.snapshot()["journal"][before:] if e["method"] == "POST"]
    assert all(path == "/api/v2/oauth2/token" for path in posts)


def test_a_missing_read_scope_is_named(
    make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project]
) -> None:
    scopes = ALL_SCOPES - {"courseStats:read"}
    sim = make_sim(clients=(SimClient(client_id=CLIENT_ID, client_secret=SECRET, scopes=scopes),))
    project = make_project(sim)
    assert project.apply().exit_code == 0  # a healthy ledger: apply reads nothing more

    refresh = project.cli("refresh", str(project.config))

    assert refresh.exit_code != 0
    assert "courseStats:read" in refresh.stderr and "docs/refresh.md" in refresh.stderr
    assert "Traceback" not in refresh.output


def test_an_empty_integration_made_by_hand_is_refreshed_then_filled_and_kept_in_step(
    project: Project,
) -> None:
    made = project.sim.state.add_integration(
        externalPlatform="Acme Academy",
        groupId=GROUP,
        authorId=AUTHOR,
        defaultProgress=0,
        defaultCompletion=False,
    )
    first = project.apply()
    assert first.exit_code == 0, first.output
    assert "refreshing before planning: acme" in first.stderr  # on the platform, unknown to the ledger
    assert project.ledger_rows("select api_id from integrations") == [(made["_id"],)]
    later = ["C004", "late@acme.example", "10", "30", "2025-05-01T08:00:00Z", "2025-05-01T08:10:00Z"]
    project.write_stats([*stat_rows(4, 3), later])

    second = project.apply()

    # The refresh saw no course there; the courses imported since are live: nothing is held.
    assert second.exit_code == 0, second.output
    assert project.ledger_rows("select count(*) from records where status = 'synced'") == [(4 + 13,)]


def test_a_config_can_ask_every_apply_to_list_the_learners(
    make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project]
) -> None:
    known = {f"learner{u:02d}@acme.example" for u in (1, 2)}
    project = make_project(make_sim(users=frozenset(known)))
    project.config.write_text("refresh: {users: true}\n" + project.config.read_text())

    result = project.apply()

    assert result.exit_code == 3, result.output
    assert "learners listed: 2" in result.stderr
    assert sum(op["errors"] for op in project.sim.snapshot()["operations"]) == 0  # held, not sent
    assert project.ledger_rows("select count(*) from held_records") == [(4,)]


def test_apply_simulate_on_a_ledger_in_step_sends_nothing(project: Project) -> None:
    assert project.apply().exit_code == 0

    simulated = project.apply("--simulate")

    # The simulated platform has the declared integration under the ledger's id: the run plans
    # against the ledger, as a real one would, instead of taking the integration for deleted.
    assert simulated.exit_code == 0, simulated.output
    assert simulated.stdout == "nothing to send: the platform is in step with the sources\n"
    assert "refreshing before planning" not in simulated.stderr


def test_a_lost_ledger_of_learners_named_by_platform_id_is_rebuilt(project: Project) -> None:
    text = project.config.read_text()
    assert "user: {mail: email}" in text
    project.config.write_text(text.replace("user: {mail: email}", "user: {internalId: email}"))
    ids = [f"{0xABC000 + u:024x}" for u in range(3)]
    project.write_stats([[row[0], ids[int(row[1][7:9]) - 1], *row[2:]] for row in stat_rows(4, 3)])
    assert project.apply().exit_code == 0
    sent, synced = submissions(project.sim), _synced(project)
    _forget_ledger(project)

    result = project.apply()

    assert result.exit_code == 0, result.output
    assert submissions(project.sim) == sent
    assert _synced(project) == synced


def test_a_lost_ledger_of_a_statistics_only_integration_is_rebuilt(project: Project) -> None:
    assert project.apply().exit_code == 0  # the courses come from a first config with courses
    document = yaml.safe_load(project.config.read_text())
    del document["integrations"]["acme"]["courses"]  # from now on: statistics only
    project.config.write_text(yaml.safe_dump(document, sort_keys=False))
    sent, stats = submissions(project.sim), [row for row in _synced(project) if row[1] == "stat"]
    _forget_ledger(project)

    result = project.apply()

    assert result.exit_code == 0, result.output
    assert submissions(project.sim) == sent
    assert [row for row in _synced(project) if row[1] == "stat"] == stats
    later = ["C003", "late@acme.example", "10", "30", "2025-05-01T08:00:00Z", "2025-05-01T08:10:00Z"]
    project.write_stats([*stat_rows(4, 3), later])
    assert project.apply().exit_code == 0  # its course is live on the platform: not held


def test_an_integration_recreated_by_hand_is_filled_again(project: Project) -> None:
    assert project.apply().exit_code == 0
    [(old_id,)] = project.ledger_rows("select api_id from integrations")
    by_hand(project.sim, "DELETE", f"/api/v2/integrations/{old_id}")
    made = by_hand(
        project.sim,
        "POST",
        "/api/v2/integrations",
        {"externalPlatform": "Acme Academy", "groupId": GROUP, "authorId": AUTHOR},
    )

    refresh = project.cli("refresh", str(project.config))
    plan = project.cli("plan", str(project.config))
    result = project.apply()

    assert f"recreated on the platform ({old_id} -> {made['_id']})" in refresh.stdout
    assert "deleted and recreated on the platform" in plan.stdout  # the plan says why
    assert "sent again, courses first" in plan.stdout
    assert "+ acme course C001" in plan.stdout
    assert result.exit_code == 0, result.output
    assert project.ledger_rows("select api_id from integrations") == [(made["_id"],)]
    courses = [c for c in project.sim.snapshot()["courses"] if c["integrationId"] == made["_id"]]
    assert len([c for c in courses if c["status"] == "live"]) == 4
    attempts = [a for a in project.sim.snapshot()["attempts"] if a["integrationId"] == made["_id"]]
    assert sum(len(a["attempts"]) for a in attempts) == 12
    assert project.ledger_rows("select count(*) from records where status != 'synced'") == [(0,)]
