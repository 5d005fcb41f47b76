"""A project for `syncer doctor`: a config, its CSV sources and a ledger path, pointed at a URL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.postgres.conftest import pg_admin, pg_schema, pg_url  # noqa: F401 (the PostgreSQL ledger fixtures)
from tests.project import (
    ACME,
    COURSE_HEADER,
    STAT_HEADER,
    config_text,
    courses_block,
    reset_syncer_logger,
    run_cli,
    stats_block,
    write_csv,
)

SECRET = "doctor-secret-value"
CLIENT = "doctor-client"
ENV = {"DOCTOR_CLIENT_ID": CLIENT, "DOCTOR_CLIENT_SECRET": SECRET}
"""The credential, read by the config from these variables (so that a fix can name them)."""
STAT = ["C1", "ann@acme.example", "50", "60", "2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z"]

Doctor = Callable[..., tuple[int, str]]


def write_project(
    folder: Path,
    base_url: str,
    integrations: Mapping[str, Mapping[str, Any]] | None = None,
    ledger: Path | None = None,
) -> Path:
    """Write ``syncer.yaml`` and its sources in ``folder``; the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "courses.csv", COURSE_HEADER, [["C1", "Course 1"], ["C2", "Course 2"]])
    write_csv(folder / "stats.csv", STAT_HEADER, [STAT])
    api = {
        "base_url": base_url,
        "client_id": "${DOCTOR_CLIENT_ID}",
        "client_secret": "${DOCTOR_CLIENT_SECRET}",
    }
    if integrations is None:
        integrations = {"acme": {**ACME, "courses": courses_block(), "stats": stats_block()}}
    ledger_url = f"sqlite:///{ledger or folder / 'syncer.db'}"
    path = folder / "syncer.yaml"
    path.write_text(config_text(api, ledger_url, integrations), "utf-8")
    return path


@pytest.fixture
def doctor(monkeypatch: pytest.MonkeyPatch) -> Doctor:
    """Run `syncer doctor ARGS` in-process with the credential's variables set: (exit code, stdout)."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str]:
        outputs: list[str] = []
        try:
            result = run_cli(outputs, "doctor", *args)
        finally:
            reset_syncer_logger()
        assert SECRET not in "".join(outputs)
        assert result.stderr == ""
        return result.exit_code, result.stdout

    return run


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run_without_dac_override(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m syncer ARGS` in a process that file permissions bind, even when run as root."""
    command = [sys.executable, "-m", "syncer", *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder would not refuse writes")
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **env}, check=False
    )


def lines_of(output: str) -> list[str]:
    """The check lines (fixes and the summary left out)."""
    return [line for line in output.splitlines()[:-1] if not line.startswith(" ")]
