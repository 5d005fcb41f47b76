"""The ``notify:`` and ``metrics:`` sections: built values, located errors, secret URLs (docs/alerts.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config import NotifyFormat, NotifyOutcome, Secret, load_config
from tests.config.test_config import BASE, changed, messages, problems, write

TOKEN = "hook-t0ken-5e4d"
HOOK = f"https://hooks.example.com/services/{TOKEN}"


def with_notify(*hooks: dict[str, Any], metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    data = changed((("notify",), list(hooks)))
    if metrics is not None:
        data["metrics"] = metrics
    return data


def test_webhooks_and_the_metrics_file_are_built(tmp_path: Path) -> None:
    data = with_notify(
        {"url": HOOK},
        {"name": "ops", "url": HOOK, "format": "slack", "on": ["rejected"], "rejected_above": 5},
        metrics={"file": "prom/syncer.prom"},
    )
    config = load_config(write(tmp_path, data), {})
    plain, ops = config.notify
    assert plain.url == Secret(HOOK) and TOKEN not in repr(plain)
    assert (plain.name, plain.format, plain.rejected_above, plain.timeout_seconds) == (
        "notify[0]",
        NotifyFormat.JSON,
        0,
        5.0,
    )
    assert plain.on == {NotifyOutcome.FAILED, NotifyOutcome.GUARD, NotifyOutcome.RECOVERED}
    assert (ops.name, ops.format, ops.on, ops.rejected_above) == (
        "ops",
        NotifyFormat.SLACK,
        {NotifyOutcome.REJECTED},
        5,
    )
    assert config.metrics_file == tmp_path.resolve() / "prom" / "syncer.prom"
    assert load_config(write(tmp_path, BASE), {}).notify == ()
    absolute = load_config(write(tmp_path, with_notify(metrics={"file": "/var/lib/x.prom"})), {})
    assert absolute.metrics_file == Path("/var/lib/x.prom")


def test_on_unquoted_is_the_key_on_not_true(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False) + "notify:\n  - url: ${HOOK}\n    on: [held, invalid]\n"
    assert "\n    on:" in text  # as people write it; YAML 1.1 reads the key as the boolean true
    config = load_config(write(tmp_path, text), {"HOOK": HOOK})
    assert config.notify[0].on == {NotifyOutcome.HELD, NotifyOutcome.INVALID}


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        pytest.param({"on": ["failed"]}, "notify[0]: missing required key 'url'", id="no-url"),
        pytest.param(
            {"url": HOOK, "on": ["fail"]}, "notify[0].on[0]: must be one of: failed, rejected", id="on"
        ),
        pytest.param({"url": HOOK, "on": []}, "notify[0].on: must not be empty", id="on-empty"),
        pytest.param(
            {"url": HOOK, "format": "teams"}, "notify[0].format: must be one of: json, slack", id="format"
        ),
        pytest.param(
            {"url": HOOK, "timeout_seconds": 31}, "notify[0].timeout_seconds: must be at most 30", id="slow"
        ),
        pytest.param({"url": HOOK, "tiemout": 3}, "notify[0].tiemout: unknown key 'tiemout'", id="typo"),
        pytest.param(
            {"url": HOOK, "rejected_above": 3},
            "notify[0].rejected_above: applies only when `on` lists rejected",
            id="threshold-without-rejected",
        ),
        pytest.param(
            {"url": HOOK, "on": ["failed"], "rejected_above": 3},
            "notify[0].rejected_above: applies only when `on` lists rejected",
            id="threshold-without-rejected-in-on",
        ),
    ],
)
def test_webhook_rules(tmp_path: Path, hook: dict[str, Any], expected: str) -> None:
    found = messages(tmp_path, with_notify(hook))
    assert len(found) == 1, found
    assert found[0].startswith(expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"ftp://hooks.example.com/{TOKEN}", "must be an http:// or https:// URL"),
        (f"https:///{TOKEN}", "must be an http:// or https:// URL"),
        (f"http://hooks.example.com:99999/{TOKEN}", "not a usable URL (give https://host/path"),
    ],
)
def test_a_bad_url_is_located_and_never_quoted(tmp_path: Path, url: str, expected: str) -> None:
    [problem] = problems(tmp_path, with_notify({"url": url}))
    lines = write(tmp_path, with_notify({"url": url})).read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("- url: "))
    assert problem.startswith(f"{line}:8: notify[0].url: {expected}")
    assert TOKEN not in problem


def test_metrics_needs_a_file(tmp_path: Path) -> None:
    assert messages(tmp_path, with_notify(metrics={})) == ["metrics: missing required key 'file'"]
    assert messages(tmp_path, with_notify(metrics={"file": "x.prom", "dir": "y"}))[0].startswith(
        "metrics.dir: unknown key 'dir'"
    )


def test_a_secret_url_comes_from_the_environment(tmp_path: Path) -> None:
    data = with_notify({"url": "${HOOK_URL}"})
    assert load_config(write(tmp_path, data), {"HOOK_URL": HOOK}).notify[0].url.reveal() == HOOK
    [problem] = problems(tmp_path, data)
    assert "notify[0].url: environment variable HOOK_URL is not set" in problem
    # validate calls no webhook: an unset variable there is a warning only.
    path = write(tmp_path, data)
    result = CliRunner().invoke(cli, ["validate", "--no-sources", str(path)], env={"HOOK_URL": None})
    assert result.exit_code == 0, result.stderr
    assert (
        "notify[0].url: environment variable HOOK_URL is not set: validate calls no webhook" in result.stderr
    )


def test_a_token_written_in_the_config_is_a_warning_and_stays_out_of_the_digest(tmp_path: Path) -> None:
    slack = "https://hooks.slack.com/services/T000/B000/XXXX"
    written = load_config(write(tmp_path, with_notify({"url": slack})), {})
    assert [p.message for p in written.warnings if p.message.startswith("notify")] == [
        "notify[0].url: the webhook URL holds a token written in the config; keep it in the "
        "environment: url: ${SLACK_WEBHOOK_URL}"
    ]
    from_env = load_config(write(tmp_path, with_notify({"url": "${X}"})), {"X": slack})
    assert [p for p in from_env.warnings if p.message.startswith("notify")] == []
    plain = load_config(write(tmp_path, with_notify({"url": "http://alerts.internal:9000/hook"})), {})
    assert [p for p in plain.warnings if p.message.startswith("notify")] == []
    assert plain.digest == written.digest == from_env.digest  # the URL is a secret: not in the digest
