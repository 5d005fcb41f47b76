"""``--log-format json`` lines, and no secret or token in any output, plan file or ledger byte."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from syncer.simulator import Exchange, add_observer, remove_observer
from tests.e2e.apply.conftest import SECRET, Project, stat_rows


@pytest.fixture
def tokens() -> Iterator[list[str]]:
    """Every access token the simulators hand out during the test."""
    seen: list[str] = []

    def observe(exchange: Exchange) -> None:
        if exchange.path == "/api/v2/oauth2/token" and exchange.status == 200:
            seen.append(json.loads(exchange.body)["access_token"])

    add_observer(observe)
    yield seen
    remove_observer(observe)


def json_lines(text: str) -> list[dict[str, object]]:
    lines = text.splitlines()
    assert lines, "no log line at all"
    objects = [json.loads(line) for line in lines]  # every line is one JSON document...
    assert all(isinstance(o, dict) for o in objects)  # ...and an object
    return objects


def test_json_log_lines(project: Project) -> None:
    result = project.cli("--log-format", "json", "apply", str(project.config), "--poll-seconds", "0.01")
    assert result.exit_code == 0
    lines = json_lines(result.stderr)
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    submitted = [line for line in lines if str(line["message"]).startswith("submitted ")]
    assert [(s["type"], s["items"], s["integration"]) for s in submitted] == [
        ("importExternalCourses", 4, "acme"),
        ("importExternalStatistics", 12, "acme"),
    ]
    assert all(len(str(s["operation"])) == 24 for s in submitted)
    assert "acme: 2 operation(s)" in result.stdout  # the summary stays on stdout
    last = lines[-1]
    assert (last["message"], last["exit_code"], last["submissions"]) == ("apply finished: exit 0", 0, 2)
    assert last["integrations"]["acme"]["synced"] == 16  # type: ignore[index]


def test_no_secret_or_token_anywhere(project: Project, tokens: list[str]) -> None:
    project.sim.add_faults([{"method": "GET", "path_regex": "/results$", "expire_tokens": True}])
    rows = stat_rows(4, 3)
    rows.append(["C001", "x@acme.example", "250", "60", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z"])
    project.write_stats(rows)
    planfile = project.root / "plan.json"
    project.cli("plan", str(project.config), "--format", "json", "--out", str(planfile))
    project.cli("--log-format", "json", "apply", str(project.config), "--poll-seconds", "0.01")
    project.apply("--retry-rejected")
    for command in ("status", "rejected"):
        for fmt in ("text", "json"):
            project.cli(command, str(project.config), "--format", fmt)
    project.cli("--debug", "apply", str(project.config), "--poll-seconds", "0.01")
    assert len(tokens) >= 2  # one revoked mid-run, one renewed

    outputs = "\n".join(project.outputs)
    files = {path.name: path.read_bytes() for path in project.root.iterdir() if path.is_file()}
    assert "syncer.db" in files and "plan.json" in files
    for needle in [SECRET, *tokens]:
        assert needle not in outputs
        for name, data in files.items():
            if name == "syncer.yaml":
                continue  # the config names ${L360_CLIENT_SECRET}, never the value
            assert needle.encode() not in data, f"{name} holds a secret"


def test_json_log_lines_on_failure(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret")
    failed = project.cli("--log-format", "json", "apply", str(project.config), "--poll-seconds", "0.01")
    assert failed.exit_code == 1
    last = json_lines(failed.stderr)[-1]
    assert (last["level"], last["exit_code"], last["error"]) == ("error", 1, "ApiError")
    assert "invalid_client" in str(last["message"])

    project.config.write_text(project.config.read_text() + "bogus: 1\n")
    broken = project.cli("--log-format", "json", "status", str(project.config))
    assert broken.exit_code == 1
    [line] = json_lines(broken.stderr)
    assert line["exit_code"] == 1 and line["error"] == "ConfigError"
    assert [str(p).startswith(f"{project.config}:") for p in line["problems"]] == [True]  # type: ignore[union-attr]
