"""Alerts: the outcomes of a run, the history read from a real ledger, the payloads and their
documentation (docs/alerts.md). Delivery to a live receiver: tests/e2e/apply/test_notify.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.apply import IntegrationOutcome, RunReport
from syncer.config import NotifyOutcome, Secret, Webhook
from syncer.ledger import Ledger, RunStatus
from syncer.report.notify import SLACK_LINES, due, json_payload, redact_webhook, slack_payload
from syncer.report.runend import History, RunEnd, read_history

ROOT = Path(__file__).resolve().parents[2]
F, R, H, INV, G, REC = (
    NotifyOutcome.FAILED,
    NotifyOutcome.REJECTED,
    NotifyOutcome.HELD,
    NotifyOutcome.INVALID,
    NotifyOutcome.GUARD,
    NotifyOutcome.RECOVERED,
)


def report(**counts: Any) -> RunReport:
    """A run's report with one integration, acme, and these counts."""
    return RunReport(7, {"acme": IntegrationOutcome("acme", **counts)})


def end(
    exit_code: int, run: RunReport | None = None, *, error: str | None = None, failed_before: int = 0
) -> RunEnd:
    return RunEnd(
        config=Path("syncer.yaml"),
        exit_code=exit_code,
        started_at=1_700_000_000.0,
        ended_at=1_700_000_012.5,
        report=run,
        error=error,
        history=History(failed_before=failed_before),
    )


@pytest.mark.parametrize(
    ("finished", "expected"),
    [
        pytest.param(end(0, report(synced=3)), [], id="done"),
        pytest.param(end(1, error="invalid_client"), [F], id="refused"),
        pytest.param(end(4, error="gave up"), [F], id="unreachable"),
        pytest.param(end(4, report(failed_operations=1, synced=2)), [F], id="operation-in-error"),
        pytest.param(end(5, error="another syncer run holds the lock"), [F], id="locked"),
        pytest.param(end(6, error="mass-archive guard"), [G], id="guard"),
        pytest.param(
            end(3, report(rejected=4, held=2, invalid=9, invalid_beyond_tolerance=True)), [R, H, INV], id="3"
        ),
        pytest.param(end(3, report(rejected=4), failed_before=2), [R, REC], id="recovered-with-rejections"),
        pytest.param(end(0, report(), failed_before=1), [REC], id="recovered"),
        pytest.param(end(4, error="gave up", failed_before=3), [F], id="still-failing"),
        pytest.param(end(0, report(invalid=2)), [], id="invalid-within-tolerance"),
    ],
)
def test_outcomes(finished: RunEnd, expected: list[NotifyOutcome]) -> None:
    assert finished.outcomes() == expected


def test_rejected_above_is_per_webhook() -> None:
    finished = end(3, report(rejected=4))
    hooks = [
        Webhook(Secret("http://h/a"), on=frozenset({R}), rejected_above=3, name="three"),
        Webhook(Secret("http://h/b"), on=frozenset({R}), rejected_above=4, name="four"),
        Webhook(Secret("http://h/c"), name="defaults"),  # failed, guard, recovered
    ]
    assert [(hook.name, met) for hook, met in due(hooks, finished)] == [("three", (R,))]
    assert json_payload(finished, (R,))["outcomes"] == ["rejected"]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield opened
    finally:
        opened.close()


def record(ledger: Ledger, status: RunStatus, exit_code: int, command: str = "apply") -> None:
    run_id = ledger.start_run(command)
    if status is not RunStatus.RUNNING:
        ledger.finish_run(run_id, status, {}, exit_code=exit_code)


def test_history_counts_the_failed_runs_just_before(ledger: Ledger) -> None:
    assert read_history(ledger.last_runs(50)) == History(0, None)
    record(ledger, RunStatus.SUCCEEDED, 0)
    record(ledger, RunStatus.SUCCEEDED, 3)
    [last_success] = ledger.last_runs(1)
    record(ledger, RunStatus.FAILED, 4)
    record(ledger, RunStatus.FAILED, 1, command="refresh")  # another command: not counted
    record(ledger, RunStatus.FAILED, 6)  # the guard refused: the run did not go through
    record(ledger, RunStatus.INTERRUPTED, 4)
    record(ledger, RunStatus.RUNNING, 0)  # another runner's, or a killed one: unknown
    history = read_history(ledger.last_runs(50))
    assert history.failed_before == 3
    assert last_success.ended_at is not None
    assert history.last_success_at == pytest.approx(last_success.ended_at.timestamp(), abs=1)
    record(ledger, RunStatus.SUCCEEDED, 0)
    assert read_history(ledger.last_runs(50)).failed_before == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com/***"),
        ("https://user:pw@alerts.example.com:8443/hook?token=abc", "https://alerts.example.com:8443/***"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
        ("http://alerts.example.com?token=abc", "http://alerts.example.com/***"),
        ("http://[::1", "***"),
    ],
)
def test_logs_show_a_webhook_by_scheme_and_host(url: str, shown: str) -> None:
    assert redact_webhook(url) == shown


def documented_fields() -> set[str]:
    """The fields docs/alerts.md's payload table lists (``| `name` | type | meaning |``)."""
    text = (ROOT / "docs" / "alerts.md").read_text("utf-8")
    table = text.split("## The JSON payload", 1)[1].split("## The Slack message", 1)[0]
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", table, re.MULTILINE))


def payload_fields(data: dict[str, Any]) -> set[str]:
    fields = set(data) | set(data["run"])
    for key in ("totals", "integrations"):
        if data[key]:
            fields |= set(data[key])
    for counts in (data["integrations"] or {}).values():
        fields |= set(counts)
    return fields - {"acme"}


def test_docs_list_every_field_of_the_json_payload() -> None:
    full = json_payload(end(4, report(failed_operations=1, synced=2), failed_before=1), (F,))
    stopped = json_payload(end(1, error="invalid_client"), (F,))
    assert set(stopped) == set(full)  # every field always present
    assert (stopped["totals"], stopped["integrations"], stopped["run"]["ledger_run_id"]) == (None, None, None)
    assert documented_fields() == payload_fields(full)


def test_json_payload_counts_and_summary() -> None:
    data = json_payload(end(3, report(operations=2, synced=12, rejected=4), failed_before=2), (R,))
    assert data["outcome"] == "rejected" and data["outcomes"] == ["rejected", "recovered"]
    assert data["triggered_by"] == ["rejected"]
    assert data["summary"].endswith("(syncer.yaml): recovered after 2 failed runs, 4 record(s) rejected")
    assert data["totals"] == {
        "operations": 2,
        "failed_operations": 0,
        "synced": 12,
        "rejected": 4,
        "invalid": 0,
        "held": 0,
    }
    assert (data["started_at"], data["finished_at"], data["duration_seconds"]) == (
        "2023-11-14T22:13:20.000Z",
        "2023-11-14T22:13:32.500Z",
        12.5,
    )
    long = json_payload(end(1, error="x" * 5_000))
    assert len(long["error"]) == 1_000 and long["summary"].endswith("x…")


def test_slack_message_is_escaped_and_bounded() -> None:
    many = RunReport(1, {f"int-{i:02}": IntegrationOutcome(f"int-{i:02}", synced=i) for i in range(25)})
    message = slack_payload(end(4, many, error="answered <html> & gave up"), (F,))
    assert message["text"].startswith(":x: syncer apply failed (exit 4) on ")
    assert message["text"].endswith(": answered &lt;html&gt; &amp; gave up")
    lines = message["blocks"][1]["text"]["text"].splitlines()
    assert len(lines) == SLACK_LINES + 1 and lines[-1] == "and 5 more integration(s)"
    assert lines[0] == "`int-00`: 0 operation(s) · synced 0 · rejected 0 · invalid 0 · held 0"
    stopped = slack_payload(end(1, error="invalid_client"), (F,))
    assert [b["type"] for b in stopped["blocks"]] == ["section", "context"]  # no counts to list
