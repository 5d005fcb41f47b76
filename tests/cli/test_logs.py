"""Log lines of unattended runs (issue 18): every retry and wait, the run's identity on every JSON
line, and --log-format / --debug after the command and from the environment.

Runs that must be read as they go are separate processes (``tests/cli/live.py``); the others run
in-process against a simulator thread.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.models import OperationType
from syncer.simulator import DEMO_COMPANY_ID, SimulatorThread
from syncer.version import __version__
from tests.cli.live import CLIENT_ID, SECRET, Live, write_project
from tests.project import client_settings, reset_syncer_logger, run_cli, simulators

POLL = ("--poll-seconds", "0.01")
RUN_KEYS = ("run_id", "syncer_version", "host")

StartSim = Callable[..., SimulatorThread]


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """Start simulators with the platform's real limits (``start(op_seconds=...)``)."""
    with simulators(client_settings(CLIENT_ID, SECRET)) as start:
        yield start


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``syncer ARGS`` in-process (the credential set); the logger is detached after each run."""
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    outputs: list[str] = []

    def run(*args: str) -> Any:
        try:
            return run_cli(outputs, *args)
        finally:
            reset_syncer_logger()

    yield run
    assert SECRET not in "".join(outputs)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all(isinstance(line, dict) for line in lines)
    return lines


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_each_retry_is_logged_as_it_happens_with_the_host(tmp_path: Path) -> None:
    host = f"127.0.0.1:{closed_port()}"
    config = write_project(tmp_path, f"http://{host}", retry_seconds=4)
    live = Live("apply", str(config), "--log-format", "json", env={}, terminal=False)
    try:
        # The first retry is in the log while the run still retries, not only at its end.
        live.expect(lambda t: "retrying in" in t, 20, "the first retry")
        assert live.proc.poll() is None
        code = live.finish(60)
    finally:
        live.close()
    assert code == 4, live.text
    lines = json_lines(live.text)
    retries = [line for line in lines if "retrying in" in line["message"]]
    assert len(retries) >= 2
    assert [r["attempt"] for r in retries] == list(range(2, len(retries) + 2))
    for retry in retries:
        assert retry["level"] == "warning"
        assert (retry["method"], retry["api_host"], retry["path"]) == ("GET", host, "/api/v2/integrations")
        assert retry["status"] is None and "cannot connect" in retry["error"]
        assert retry["wait_seconds"] > 0 and retry["retry_seconds"] == 4
        assert re.fullmatch(
            rf"GET {re.escape(host)}/api/v2/integrations: .*cannot connect.*; retrying in [\d.]+ s "
            rf"\(attempt {retry['attempt']}, [\d.]+ s of the 4 s retry budget left\)",
            retry["message"],
        ), retry["message"]
    budget = [r["retry_budget_left_seconds"] for r in retries]
    assert budget == sorted(budget, reverse=True) and budget[0] <= 4
    last = lines[-1]
    assert (last["level"], last["exit_code"]) == ("error", 4)
    assert host in last["message"] and "gave up after" in last["message"]
    # One run: every line, the final error included, names it the same way.
    assert {tuple(line[k] for k in RUN_KEYS) for line in lines} == {
        (lines[0]["run_id"], __version__, socket.gethostname())
    }
    assert re.fullmatch(r"[0-9a-f]{12}", lines[0]["run_id"])


def test_json_lines_name_the_run_the_integration_and_the_operation(
    tmp_path: Path, start_sim: StartSim
) -> None:
    sim = start_sim(op_seconds=0.3)
    config = write_project(tmp_path, sim.base_url)
    # One poll of an operation answered 503: the retry's line names the operation it polls.
    sim.add_faults(
        [{"method": "GET", "path_regex": r"^/api/v2/bulk/operations/[0-9a-f]{24}$", "status": 503}]
    )
    runs = []
    for env, options in (({}, ("--log-format", "json")), ({"SYNCER_LOG_FORMAT": "json"}, ())):
        live = Live("apply", str(config), *POLL, *options, env=env, terminal=False)
        try:
            assert live.finish(60) == 0, live.text
        finally:
            live.close()
        # stdout (the summary) and stderr (the log) share the pipe: the log lines are the JSON ones.
        runs.append(json_lines("\n".join(x for x in live.text.splitlines() if x.startswith("{"))))
    first, second = runs

    for lines in runs:
        assert len({line["run_id"] for line in lines}) == 1
        assert all(line["syncer_version"] == __version__ for line in lines)
        assert all(line["host"] == socket.gethostname() for line in lines)
    assert first[0]["run_id"] != second[0]["run_id"]

    submitted = {line["operation"]: line for line in first if line["message"].startswith("submitted ")}
    finished = [line for line in first if line["message"].startswith("operation completed")]
    assert len(submitted) == 2 and len(finished) == 2
    assert {line["operation"] for line in finished} == set(submitted)
    assert all(line["integration"] == "acme" for line in [*submitted.values(), *finished])
    [retry] = [line for line in first if "retrying in" in line["message"]]
    assert (retry["integration"], retry["status"], retry["attempt"]) == ("acme", 503, 2)
    assert retry["operation"] in submitted and retry["path"].endswith(retry["operation"])
    messages = [line["message"] for line in second]  # the second run has nothing to send
    assert "plan: nothing to send" in messages and messages[-1] == "apply finished: exit 0"
    assert not any(m.startswith("submitted ") for m in messages)


def test_a_wait_for_a_platform_full_of_others_operations_is_logged(
    tmp_path: Path, start_sim: StartSim, in_process: Callable[..., Any]
) -> None:
    sim = start_sim(op_seconds=0.1)
    config = write_project(tmp_path, sim.base_url)
    foreign = [
        sim.state.submit(DEMO_COMPANY_ID, "64b7f0c2a1e4d5f6a7b8c9ff", OperationType.IMPORT_STATS, [])
        for _ in range(3)
    ]
    with sim.state.locked():  # another tool's operations, running longer than this run's start
        for op in foreign:
            op.ended = op.created + 3.0
    result = in_process("apply", str(config), *POLL, "--log-format", "json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stderr)
    [start] = [line for line in lines if line["message"].startswith("waiting for an operation slot")]
    assert start["message"] == (
        "waiting for an operation slot: 3 operations unfinished on the platform (limit 3; 0 of them "
        "this run's): other runners or tools"
    )
    assert (start["unfinished"], start["slots"], start["held"]) == (3, 3, 0)
    [end] = [line for line in lines if line["message"].startswith("got an operation slot after")]
    assert end["waited_seconds"] > 0
    assert lines.index(start) < lines.index(end)


def test_the_runs_own_slot_waits_are_debug_lines(
    tmp_path: Path, start_sim: StartSim, in_process: Callable[..., Any]
) -> None:
    def project(name: str) -> str:
        # Statistics in batches of 2: 6 operations for 3 slots. A platform of its own each.
        sim = start_sim(op_seconds=0.3)
        batches = {"courses": 10_000, "stats": 2}
        return str(write_project(tmp_path / name, sim.base_url, batch_size=batches))

    quiet = in_process("apply", project("quiet"), *POLL)
    assert quiet.exit_code == 0, quiet.output
    assert "waiting for a slot" not in quiet.stderr and " DEBUG " not in quiet.stderr

    debug = in_process("apply", project("debug"), *POLL, "--debug")
    assert debug.exit_code == 0, debug.output
    assert re.search(r" DEBUG +waiting for a slot: 3 operations unfinished", debug.stderr), debug.stderr


@pytest.mark.parametrize(
    ("before", "after", "env", "json_wanted"),
    [
        pytest.param((), ("--log-format", "json"), {}, True, id="after-the-command"),
        pytest.param((), (), {"SYNCER_LOG_FORMAT": "json"}, True, id="environment"),
        pytest.param(
            ("--log-format", "text"), (), {"SYNCER_LOG_FORMAT": "json"}, False, id="option-beats-env"
        ),
        pytest.param(("--log-format", "json"), ("--log-format", "text"), {}, False, id="after-wins"),
        pytest.param((), (), {}, False, id="default-text"),
    ],
)
def test_log_format_after_the_command_and_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_process: Callable[..., Any],
    before: tuple[str, ...],
    after: tuple[str, ...],
    env: dict[str, str],
    json_wanted: bool,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    missing = tmp_path / "missing.yaml"
    result = in_process(*before, "status", str(missing), *after)
    assert result.exit_code == 1
    if json_wanted:
        [line] = json_lines(result.stderr)
        assert (line["level"], line["exit_code"], line["error"]) == ("error", 1, "ConfigError")
        assert all(line[key] for key in RUN_KEYS)
    else:
        assert result.stderr == f"{missing}: config file not found\n"


@pytest.mark.parametrize(
    ("args", "env", "traceback"),
    [
        pytest.param(("--debug",), {}, True, id="after-the-command"),
        pytest.param((), {"SYNCER_DEBUG": "1"}, True, id="environment"),
        pytest.param((), {"SYNCER_DEBUG": "0"}, False, id="environment-off"),
        pytest.param((), {}, False, id="default"),
    ],
)
def test_debug_after_the_command_and_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_process: Callable[..., Any],
    args: tuple[str, ...],
    env: dict[str, str],
    traceback: bool,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = write_project(tmp_path, f"http://127.0.0.1:{closed_port()}")
    config.write_text(config.read_text() + "bogus: 1\n")
    result = in_process("status", str(config), *args)
    assert result.exit_code == 1  # --debug never changes the exit code
    assert ("Traceback" in result.stderr) is traceback, result.stderr
    assert "bogus" in result.stderr


def test_help_names_the_environment_variables(in_process: Callable[..., Any]) -> None:
    shown = in_process("--help").stdout
    assert "SYNCER_LOG_FORMAT" in shown and "SYNCER_DEBUG" in shown
    command = in_process("apply", "--help").stdout
    assert "--log-format" in command and "--debug" in command


def test_the_logging_page_stays_true(in_process: Callable[..., Any]) -> None:
    """docs/logging.md: its commands parse with the real CLI, its JSON lines carry the run, and
    the variables it names are those the CLI reads."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "logging.md").read_text()
    commands = [
        line.split()[1:]
        for block in re.findall(r"```sh\n(.*?)```", page, re.S)
        for line in block.splitlines()
    ]
    assert len(commands) == 2
    for args in commands:
        result = in_process(*[a if a != "syncer.yaml" else "missing.yaml" for a in args])
        assert "Usage:" not in result.stderr and result.exit_code == 1  # parsed; the config is missing
    for block in re.findall(r"```json\n(.*?)```", page, re.S):
        for line in json_lines(block):
            assert list(line)[:6] == ["time", "level", "message", *RUN_KEYS]
    variables = set(re.findall(r"`(SYNCER_[A-Z_]+)`", page))
    assert variables == {"SYNCER_LOG_FORMAT", "SYNCER_DEBUG"}
    assert variables <= set(re.findall(r"SYNCER_[A-Z_]+", in_process("--help").stdout))
