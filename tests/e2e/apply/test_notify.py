"""Alerts end to end: ``syncer apply`` against the simulator calls the ``notify:`` webhooks of its
config (a local receiver) once per run whose outcome they ask for, with the JSON of
docs/alerts.md; a webhook that fails never changes the exit code (docs/alerts.md)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from syncer.redaction import mail_token
from syncer.runinfo import current_run
from syncer.simulator import SimulatorThread
from syncer.version import __version__
from tests.e2e.apply.conftest import SECRET, Project, course_rows
from tests.receiver import Receiver, receiver

TOKEN = "T0KEN-9f8e7d6c"
"""The secret part of every webhook URL: it must never show in any output."""
HOOK = f"/hooks/{TOKEN}"
KNOWN = frozenset({"learner01@acme.example", "learner02@acme.example"})  # learner03: 4 rejected


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver; ``${HOOK_URL}`` is its URL with the token in the path."""
    with receiver() as found:
        monkeypatch.setenv("HOOK_URL", found.url(HOOK))
        yield found


def add_notify(project: Project, yaml_text: str) -> None:
    """Append a ``notify:`` section (YAML text) to the project's config."""
    project.config.write_text(project.config.read_text() + yaml_text)


def fail_with_bad_credentials(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """One apply that the platform refuses (exit 1), then the right secret back."""
    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret")
    result = project.apply()
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    assert result.exit_code == 1, result.stderr


def no_token_anywhere(project: Project) -> None:
    leaked = [out for out in project.outputs if TOKEN in out]
    assert leaked == []


def test_each_failing_run_posts_one_notification_with_the_documented_json(
    project: Project, hooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `on:` unquoted, as people write it: YAML 1.1 reads the key as true; syncer reads `on`.
    add_notify(project, "notify:\n  - url: ${HOOK_URL}\n    on: [failed]\n")
    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret")
    before = time.time()
    refused = project.apply()
    assert refused.exit_code == 1, refused.stderr
    [first] = hooks.at(HOOK)
    assert first.method == "POST"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["User-Agent"] == f"syncer/{__version__}"
    body = first.json()
    run = current_run()
    assert body["source"] == "syncer" and body["version"] == 1 and body["command"] == "apply"
    assert (body["outcome"], body["outcomes"], body["triggered_by"]) == ("failed", ["failed"], ["failed"])
    assert body["exit_code"] == 1
    assert "invalid_client" in body["error"] and "wrong-secret" not in first.body.decode()
    assert body["summary"].startswith(f"syncer apply failed (exit 1) on {run.host} (syncer.yaml): ")
    assert body["config"] == str(project.config)
    assert body["run"] == {
        "run_id": run.run_id,
        "syncer_version": __version__,
        "host": socket.gethostname(),
        "ledger_run_id": None,  # the run stopped: no report
    }
    started = datetime.fromisoformat(body["started_at"]).timestamp()
    finished = datetime.fromisoformat(body["finished_at"]).timestamp()
    assert before - 1 <= started <= finished <= time.time()
    assert body["duration_seconds"] == pytest.approx(finished - started, abs=0.01)
    assert body["failed_runs_before"] == 0 and body["answers_429"] == 0
    assert body["totals"] is None and body["integrations"] is None
    assert f"webhook notify[0] ({hooks.base_url}/***)" in refused.stderr

    # A second failing run of another kind (an operation ends in error: exit 4): one more.
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    assert project.sim is not None
    project.sim.add_faults([{"method": "POST", "path_regex": "/stats$", "error_operation": True}])
    failed = project.apply()
    assert failed.exit_code == 4, failed.stdout + failed.stderr
    assert len(hooks.at(HOOK)) == 2
    second = hooks.at(HOOK)[1].json()
    assert (second["outcome"], second["exit_code"], second["error"]) == ("failed", 4, None)
    assert second["failed_runs_before"] == 1  # the bad-credentials run, read from the ledger's runs
    assert second["integrations"] == {
        "acme": {
            "operations": 2,
            "failed_operations": 1,
            "synced": 4,
            "rejected": 0,
            "invalid": 0,
            "invalid_beyond_tolerance": False,
            "held": 0,
        }
    }
    assert second["totals"]["synced"] == 4 and second["totals"]["failed_operations"] == 1
    assert isinstance(second["run"]["ledger_run_id"], int)

    # A good run: this webhook asks for failures only.
    assert project.apply().exit_code == 0
    assert len(hooks.at(HOOK)) == 2
    no_token_anywhere(project)


def test_recovered_after_failed_runs(
    project: Project, hooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "notify:\n  - url: ${HOOK_URL}\n    format: json\n    'on': [failed, recovered]\n"
    add_notify(project, text)
    fail_with_bad_credentials(project, monkeypatch)
    fail_with_bad_credentials(project, monkeypatch)
    assert [r.json()["outcome"] for r in hooks.at(HOOK)] == ["failed", "failed"]
    result = project.apply()
    assert result.exit_code == 0, result.stderr
    recovered = hooks.at(HOOK)[-1].json()
    assert (recovered["outcome"], recovered["exit_code"], recovered["failed_runs_before"]) == (
        "recovered",
        0,
        2,
    )
    assert recovered["summary"].endswith(": recovered after 2 failed runs")
    assert recovered["totals"] == {
        "operations": 2,
        "failed_operations": 0,
        "synced": 16,
        "rejected": 0,
        "invalid": 0,
        "held": 0,
    }
    # The next good run follows a good one: nothing to say.
    assert project.apply().exit_code == 0
    assert len(hooks.at(HOOK)) == 3
    no_token_anywhere(project)


def test_rejected_above_a_threshold_and_a_slack_message(
    make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project], hooks: Receiver
) -> None:
    project = make_project(make_sim(users=KNOWN))
    add_notify(
        project,
        "notify:\n"
        "  - {name: ops-slack, url: '${HOOK_URL}/slack', format: slack,\n"
        "     'on': [rejected], rejected_above: 3}\n"
        "  - {name: quiet, url: '${HOOK_URL}/quiet', 'on': [rejected, failed], rejected_above: 4}\n",
    )
    result = project.apply()
    assert result.exit_code == 3, result.stdout + result.stderr
    assert hooks.at(f"{HOOK}/quiet") == []  # 4 rejected is not above 4
    [slack] = hooks.at(f"{HOOK}/slack")
    message = slack.json()
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith(":warning: syncer apply finished (exit 3) on ")
    assert "4 record(s) rejected" in message["text"]
    assert [b["type"] for b in message["blocks"]] == ["section", "section", "context"]
    assert "`acme`: 2 operation(s) · synced 12 · rejected 4" in message["blocks"][1]["text"]["text"]
    context = message["blocks"][2]["elements"][0]["text"]
    assert f"run `{current_run().run_id}`" in context and "exit 3" in context
    assert "notified webhook ops-slack" in result.stderr
    no_token_anywhere(project)


def test_the_guard_outcome(project: Project, hooks: Receiver) -> None:
    project.write_courses(course_rows(10))
    project.write_stats([])
    assert project.apply().exit_code == 0
    add_notify(project, "notify:\n  - url: ${HOOK_URL}\n    'on': [guard]\n")
    project.write_courses(course_rows(3))  # 7 of 10 live courses would go
    refused = project.apply()
    assert refused.exit_code == 6
    [posted] = hooks.at(HOOK)
    body = posted.json()
    assert (body["outcome"], body["outcomes"], body["exit_code"]) == ("guard", ["guard"], 6)
    assert "mass-archive guard" in body["error"]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_failing_webhooks_never_change_the_exit_code(
    project: Project, hooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks.answer[f"{HOOK}/500"] = 500
    hooks.answer[f"{HOOK}/redirect"] = 302
    hooks.delay[f"{HOOK}/slow"] = 3.0
    monkeypatch.setenv("REFUSED_URL", f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}")
    on = "'on': [failed, recovered]"
    add_notify(
        project,
        "notify:\n"
        f"  - {{name: refused, url: '${{REFUSED_URL}}', {on}}}\n"
        f"  - {{name: broken, url: '${{HOOK_URL}}/500', {on}}}\n"
        f"  - {{name: moved, url: '${{HOOK_URL}}/redirect', {on}}}\n"
        f"  - {{name: slow, url: '${{HOOK_URL}}/slow', {on}, timeout_seconds: 0.3}}\n"
        f"  - {{name: good, url: '${{HOOK_URL}}/good', {on}}}\n",
    )
    fail_with_bad_credentials(project, monkeypatch)
    began = time.monotonic()
    result = project.apply()
    took = time.monotonic() - began
    assert result.exit_code == 0, result.stdout + result.stderr  # the webhooks' failures change nothing
    assert [r.json()["outcome"] for r in hooks.at(f"{HOOK}/good")] == ["failed", "recovered"]
    for path in ("500", "redirect", "slow"):
        assert len(hooks.at(f"{HOOK}/{path}")) == 2  # once per run, never retried
    stderr = result.stderr
    assert "webhook refused (http://127.0.0.1:" in stderr and "cannot connect" in stderr
    assert f"webhook broken ({hooks.base_url}/***) failed: answered 500; the run's exit code (0)" in stderr
    assert "webhook moved" in stderr and "answered 302" in stderr
    assert "webhook slow" in stderr and "no answer within 0.3 s" in stderr
    assert took < 3.0  # the slow webhook was not waited for
    no_token_anywhere(project)


def test_a_simulated_run_calls_no_webhook(
    project: Project, hooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_notify(project, "notify:\n  - url: ${HOOK_URL}\n    'on': [failed, recovered]\n")
    fail_with_bad_credentials(project, monkeypatch)
    assert len(hooks.at(HOOK)) == 1
    simulated = project.apply("--simulate")  # would be "recovered" for real
    assert simulated.exit_code == 0, simulated.stderr
    assert len(hooks.at(HOOK)) == 1
    assert "notify: no webhook called for a simulated run (--simulate)" in simulated.stderr


def test_with_redact_the_error_shows_no_learner_email(project: Project, hooks: Receiver) -> None:
    # The API's answer quotes a learner; retried past api.retry_seconds, it stops the run (exit 4)
    # with that text as its error.
    mail = "learner01@acme.example"
    project.config.write_text(project.config.read_text().replace("retry_seconds: 30", "retry_seconds: 0.5"))
    add_notify(project, "notify:\n  - url: ${HOOK_URL}\n    'on': [failed]\n")
    assert project.sim is not None
    fault = {"method": "PUT", "path_regex": "/courses$", "status": 503, "count": 1_000}
    project.sim.add_faults([{**fault, "message": f"cannot import the course of {mail}"}])

    plain = project.apply()
    assert plain.exit_code == 4, plain.stdout + plain.stderr
    [shown] = hooks.at(HOOK)
    assert mail in shown.json()["error"]  # without --redact, the error is the API's own words
    # `syncer status` shows that run's recorded error: as it is, or with the learner as a token.
    assert mail in project.cli("status", str(project.config)).stdout
    status = project.cli("status", str(project.config), "--redact").stdout
    assert mail not in status and f"cannot import the course of {mail_token(mail)}" in status

    redacted = project.apply("--redact")
    assert redacted.exit_code == 4, redacted.stdout + redacted.stderr
    assert mail not in redacted.stdout + redacted.stderr
    posted = hooks.at(HOOK)[1]
    assert mail not in posted.body.decode()
    body = posted.json()
    assert f"cannot import the course of {mail_token(mail)}" in body["error"]
    assert mail_token(mail) in body["summary"]

    # output.redact in the config does the same.
    project.config.write_text(project.config.read_text() + "output: {redact: true}\n")
    assert project.apply().exit_code == 4
    third = hooks.at(HOOK)[2]
    assert mail not in third.body.decode() and mail_token(mail) in third.json()["error"]
