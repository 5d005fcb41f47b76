"""Against a standalone ``syncer simulator`` process: apply, apply again, status, rejected."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncer.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests.e2e.apply.conftest import POLL, Project
from tests.project import LISTENING, simulator_command

DEADLINE = 20.0


def syncer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``syncer ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE,
        check=False,
    )


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    """A ``syncer simulator --port 0`` process; yields its base URL once it listens."""
    users = tmp_path / "users.txt"
    users.write_text("# known learners\nlearner01@acme.example\nlearner02@acme.example\n")
    proc = subprocess.Popen(
        simulator_command(0.02, "--users", str(users)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        while True:
            try:
                line = lines.get(timeout=DEADLINE)  # a deadline, not a sleep
            except queue.Empty:
                pytest.fail(f"the simulator printed no URL in {DEADLINE} s: {seen}")
            seen.append(line)
            found = LISTENING.search(line)
            if found:
                break
        yield found.group(1)
    finally:
        proc.terminate()  # the process this fixture started, by its own handle
        proc.wait(timeout=DEADLINE)
        assert proc.stdout is not None
        proc.stdout.close()


def test_real_config_against_a_standalone_simulator(
    standalone: str, make_project: Callable[..., Project]
) -> None:
    project = make_project(standalone, client_id=DEMO_CLIENT_ID)
    env = {**os.environ, "L360_CLIENT_SECRET": DEMO_CLIENT_SECRET}
    config = str(project.config)

    first = syncer("apply", config, *POLL, env=env)
    assert first.returncode == 3, first.stdout + first.stderr  # learner03 is unknown
    assert "synced 12 | rejected 4 | invalid 0" in first.stdout
    assert "submitted importExternalCourses for acme: 4 items" in first.stderr

    second = syncer("apply", config, *POLL, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout == "nothing to send: the platform is in step with the sources\n"
    assert "submitted" not in second.stderr

    status = syncer("status", config, "--format", "json", env=env)
    assert status.returncode == 0
    data = json.loads(status.stdout)
    assert data["integrations"]["acme"]["records"] == {
        "course": {"synced": 4},
        "stat": {"synced": 8, "rejected": 4},
    }
    assert [r["status"] for r in data["runs"][:2]] == ["succeeded", "succeeded"]

    rejected = syncer("rejected", config, env=env)
    assert rejected.returncode == 0
    assert "Rejected by the API: 4" in rejected.stdout
    assert rejected.stdout.count("User with mail 'learner03@acme.example' not found") == 4
