"""The simulator for synchronous callers (SimulatorThread) and the `syncer simulator` command."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from syncer.errors import ConfigError, SyncerError
from syncer.simulator import SimulatorSettings, SimulatorThread, load_users


def post(
    url: str, body: object, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_thread_serves_synchronous_callers(sim_thread: SimulatorThread) -> None:
    integration = sim_thread.call(lambda: sim_thread.state.add_integration(_id="c" * 24))
    status, token = post(
        sim_thread.base_url + "/api/v2/oauth2/token",
        {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"},
    )
    assert status == 200
    headers = {"Authorization": f"Bearer {token['access_token']}", "360-api-version": "v2.0"}  # type: ignore[index]
    url = f"{sim_thread.base_url}/api/v2/bulk/integrations/{integration['_id']}/courses"
    status, _ = post(url, {"input": [{"externalId": "x"}]}, headers, method="PUT")
    assert status == 202
    sim_thread.wait_for(lambda state: all(op.finished for op in state.operations.values()))
    assert sim_thread.snapshot()["operations"][0]["errors"] == 1
    sim_thread.advance(1)
    sim_thread.add_faults([{"status": 500}])
    sim_thread.reset()
    assert sim_thread.snapshot()["operations"] == []


def test_wait_for_times_out(sim_thread: SimulatorThread) -> None:
    with pytest.raises(TimeoutError):
        sim_thread.wait_for(lambda state: False, timeout=0.05)


def test_busy_port_is_a_syncer_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SyncerError, match="cannot listen"), SimulatorThread(SimulatorSettings(port=port)):
            pass


def test_load_users(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("# learners\nA@x.io\n\nb@x.io \n", "utf-8")
    assert load_users(path) == frozenset({"a@x.io", "b@x.io"})
    path.write_text("a@x.io\nnot a mail\n", "utf-8")
    with pytest.raises(ConfigError, match=r"users.txt:2: 'not a mail' is not a mail address"):
        load_users(path)


def test_cli_reports_a_bad_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("nobody\n", "utf-8")
    result = CliRunner().invoke(cli, ["simulator", "--users", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"{path}:1: 'nobody' is not a mail address\n"


def test_cli_reports_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(cli, ["simulator", "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the simulator cannot listen on 127.0.0.1:")


def test_cli_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "syncer", "simulator", "--port", "0", "--op-seconds", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.rsplit(" ", 1)[1].strip()
        status, token = post(
            url + "/api/v2/oauth2/token",
            {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"},
        )
        assert status == 200 and "access_token" in token  # type: ignore[operator]
        lines = [first]
        while lines[-1] and "Ctrl-C" not in lines[-1]:
            lines.append(process.stdout.readline())
        process.send_signal(signal.SIGINT)
        _rest, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert first.startswith("360Learning API simulator listening on http://127.0.0.1:")
    assert "client_secret: demo-secret" in "".join(lines)
    assert (process.returncode, err) == (0, "Simulator stopped.\n")
