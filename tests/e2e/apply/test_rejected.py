"""Unknown learner mails become rejected records, are not resent until changed or retried."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from syncer.simulator import SimulatorThread
from tests.e2e.apply.conftest import Project, operations, stat_rows, submissions

KNOWN = frozenset({"learner01@acme.example", "learner02@acme.example"})


@pytest.fixture
def project(make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project]) -> Project:
    """Learner03 is unknown to the platform: its 4 statistics are item errors."""
    return make_project(make_sim(users=KNOWN))


def test_unknown_mails_are_rejected_and_not_resent(project: Project) -> None:
    first = project.apply()
    assert first.exit_code == 3, first.stderr
    assert "synced 12 | rejected 4" in first.stdout
    assert "rejected records: see `syncer rejected CONFIG`" in first.stdout

    text = project.cli("rejected", str(project.config))
    assert text.exit_code == 0
    assert "Rejected by the API: 4" in text.stdout
    refused = [line for line in text.stdout.splitlines() if "learner03@acme.example" in line]
    assert len(refused) == 4
    message = refused[0].split("): ", 1)[1]
    assert "learner03@acme.example" in message or "user" in message.lower()

    data = json.loads(project.cli("rejected", str(project.config), "--format", "json").stdout)
    assert len(data["rejected"]) == 4
    assert {r["kind"] for r in data["rejected"]} == {"stat"}
    assert all(r["message"] == message for r in data["rejected"])
    assert all(r["origin"].startswith("stats.csv:") for r in data["rejected"])

    # Unchanged: not sent again (and this run refused nothing, so it exits 0).
    sent = len(submissions(project.sim))
    again = project.apply()
    assert again.exit_code == 0, again.stderr
    assert len(submissions(project.sim)) == sent

    # --retry-rejected sends exactly those four again; the API refuses them again.
    retried = project.apply("--retry-rejected")
    assert retried.exit_code == 3
    assert operations(project.sim)[-1]["items"] == 4
    assert len(submissions(project.sim)) == sent + 1

    # A changed row (same key, new content) is sent again without the flag, and refused again.
    rows = stat_rows(4, 3)
    rows[2][2] = "75"  # learner03 on C001
    project.write_stats(rows)
    changed = project.apply()
    assert changed.exit_code == 3, changed.stdout
    assert operations(project.sim)[-1]["items"] == 1
    assert "synced 0 | rejected 1" in changed.stdout
