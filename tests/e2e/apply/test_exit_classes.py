"""Exit classes (issue 16 §1): 1 when a person must act, 4 only when rerunning is the fix.

Every situation runs with and without ``--debug``: the traceback is printed with ``--debug``
only, and the exit code is the same either way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from click.testing import Result

from syncer.ledger.migrate import SCHEMA_REVISION
from syncer.simulator import SimClient, SimulatorThread
from tests.e2e.apply.conftest import CLIENT_ID, POLL, SECRET, Project, operations

DEBUG = pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])


def run(project: Project, debug: bool, *args: str) -> Result:
    """``syncer [--debug] apply CONFIG --poll-seconds 0.01 ARGS``."""
    head = ["--debug"] if debug else []
    return project.cli(*head, "apply", str(project.config), *POLL, *args)


def check(result: Result, code: int, debug: bool, *needles: str) -> None:
    """The exit code, the message's words, and a traceback exactly when --debug was given."""
    text = result.stdout + result.stderr
    assert result.exit_code == code, text
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert ("Traceback (most recent call last)" in result.stderr) is debug, result.stderr
    assert SECRET not in text


def fast_failing(project: Project) -> None:
    """Make the client give up after about a second of retries."""
    project.config.write_text(project.config.read_text().replace("retry_seconds: 30", "retry_seconds: 1"))


# -- 1: a person must act --------------------------------------------------------------------


@DEBUG
def test_config_error(project: Project, debug: bool) -> None:
    project.config.write_text(project.config.read_text() + "bogus: 1\n")
    check(run(project, debug), 1, debug, f"{project.config}:", "bogus")


@DEBUG
def test_usage_error(project: Project, debug: bool) -> None:
    result = run(project, debug, "--integration", "nope")
    assert result.exit_code == 1 and "no integration named nope" in result.stderr, result.stderr


@DEBUG
def test_credentials_refused(project: Project, monkeypatch: pytest.MonkeyPatch, debug: bool) -> None:
    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret")
    result = run(project, debug)
    check(result, 1, debug, "invalid_client", "check `client_id` and `client_secret`")
    assert "wrong-secret" not in result.stderr


@DEBUG
def test_missing_scope(
    make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project], debug: bool
) -> None:
    scopes = frozenset({"integrations:read", "integrations:write", "bulkOperations:read"})
    project = make_project(make_sim(clients=(SimClient(CLIENT_ID, SECRET, scopes=scopes),)))
    check(run(project, debug), 1, debug, "invalid_scope", "grant it", "syncer doctor")
    assert operations(project.sim) == []


@DEBUG
def test_reserved_platform_name(project: Project, debug: bool) -> None:
    project.write_config(integration={**project.integration, "platform": "360Learning"})
    check(run(project, debug), 1, debug, "reservedPlatformName", "choose another one")


@DEBUG
def test_duplicate_external_platform(project: Project, debug: bool) -> None:
    # Another client created the same integration between our look-up and our create.
    project.sim.add_faults(
        [
            {
                "method": "POST",
                "path": "/api/v2/integrations",
                "status": 400,
                "code": "duplicateExternalPlatform",
                "message": "This platform is already integrated in this group",
            }
        ]
    )
    check(run(project, debug), 1, debug, "duplicateExternalPlatform", "put its id in the integration's `id:`")


@DEBUG
def test_unknown_group(project: Project, debug: bool) -> None:
    project.sim.add_faults(
        [{"method": "POST", "path": "/api/v2/integrations", "status": 404, "code": "groupNotFound"}]
    )
    check(run(project, debug), 1, debug, "groupNotFound", "`group:` is not a group of this platform")


def _ledger_url(project: Project, url: str) -> None:
    project.config.write_text(project.config.read_text().replace("sqlite:///syncer.db", url))


@DEBUG
def test_corrupt_ledger(project: Project, debug: bool) -> None:
    project.ledger.write_bytes(b"this is not a database, it is a text file" * 100)
    check(run(project, debug), 1, debug, "not a syncer ledger or is damaged", "backup")
    assert operations(project.sim) == []


@DEBUG
def test_truncated_ledger(project: Project, debug: bool) -> None:
    assert project.apply().exit_code == 0
    data = project.ledger.read_bytes()
    for extra in project.root.glob("syncer.db-*"):
        extra.unlink()  # the WAL and shared memory: only the main file, cut short
    project.ledger.write_bytes(data[: len(data) // 3])
    check(run(project, debug), 1, debug, "syncer.db")


@DEBUG
def test_ledger_newer_than_this_syncer(project: Project, debug: bool) -> None:
    assert project.apply().exit_code == 0
    with sqlite3.connect(project.ledger) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    result = run(project, debug)
    check(result, 1, debug, "9999", "newer than this syncer", "upgrade syncer", SCHEMA_REVISION)


@DEBUG
def test_ledger_folder_missing(project: Project, debug: bool) -> None:
    _ledger_url(project, "sqlite:///no/such/folder/syncer.db")
    check(run(project, debug), 1, debug, "folder", "does not exist", "create it")


@DEBUG
def test_unknown_dialect(project: Project, debug: bool) -> None:
    _ledger_url(project, "nosuchdb://user@host/db")
    check(run(project, debug), 1, debug, "nosuchdb", "`ledger:`")


@DEBUG
def test_missing_driver(project: Project, debug: bool) -> None:
    _ledger_url(project, "mssql+pymssql://user@127.0.0.1/db")
    check(run(project, debug), 1, debug, "driver is not installed")


@DEBUG
def test_read_only_ledger(project: Project, debug: bool) -> None:
    import os
    import shutil
    import subprocess
    import sys

    assert project.apply().exit_code == 0
    os.chmod(project.root, 0o555)
    os.chmod(project.ledger, 0o444)
    command = [
        sys.executable,
        "-m",
        "syncer",
        *(["--debug"] if debug else []),
        "apply",
        str(project.config),
        *POLL,
    ]
    if os.getuid() == 0:  # root writes anywhere unless it gives up the capability
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only for root")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ})
    finally:
        os.chmod(project.root, 0o755)
        os.chmod(project.ledger, 0o644)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "writable" in done.stderr
    assert ("Traceback (most recent call last)" in done.stderr) is debug


# -- 4: transient only ---------------------------------------------------------------------------


@DEBUG
def test_network_unreachable(make_project: Callable[..., Project], debug: bool) -> None:
    project = make_project("http://127.0.0.1:9")  # discard port: nothing listens
    fast_failing(project)
    check(run(project, debug), 4, debug, "cannot connect", "gave up")


@DEBUG
def test_timeouts_after_the_retry_budget(project: Project, debug: bool) -> None:
    fast_failing(project)
    text = project.config.read_text().replace("retry_seconds: 1", "retry_seconds: 1\n  timeout_seconds: 0.2")
    project.config.write_text(text)
    project.sim.add_faults([{"method": "GET", "path": "/api/v2/integrations", "delay": 1.0, "count": 20}])
    check(run(project, debug), 4, debug, "timed out", "gave up", "safe to rerun")


@DEBUG
def test_server_errors_after_the_retry_budget(project: Project, debug: bool) -> None:
    fast_failing(project)
    project.sim.add_faults([{"method": "PUT", "path_regex": "/courses$", "status": 503, "count": 50}])
    check(run(project, debug), 4, debug, "503", "gave up")


@DEBUG
def test_rate_limited_after_the_retry_budget(project: Project, debug: bool) -> None:
    fast_failing(project)
    project.sim.add_faults([{"method": "PUT", "path_regex": "/courses$", "status": 429, "count": 50}])
    check(run(project, debug), 4, debug, "429", "gave up")


@DEBUG
def test_course_import_ending_in_error(project: Project, debug: bool) -> None:
    project.write_config(stat_batch=1)  # batches still being prepared when the import fails
    project.sim.add_faults(
        [{"method": "PUT", "path_regex": "/courses$", "error_operation": True, "message": "Disk on fire"}]
    )
    result = run(project, debug)
    assert result.exit_code == 4, result.stdout + result.stderr
    assert "signal" not in result.stdout + result.stderr
    assert "operation ended in error: Disk on fire" in result.stdout
    assert "Traceback" not in result.stderr  # a finished run with failed operations: no exception


@DEBUG
def test_ledger_server_unreachable(project: Project, debug: bool) -> None:
    _ledger_url(project, "postgresql+psycopg://postgres@127.0.0.1:9/test?connect_timeout=2")
    check(run(project, debug), 4, debug, "127.0.0.1", "safe to rerun")


# -- 5 and 6 keep their codes under --debug too -------------------------------------------------


def test_locked_and_guard_keep_their_codes_under_debug(project: Project) -> None:
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.ledger.lock import acquire_lock
    from tests.e2e.apply.conftest import course_rows

    config = load_config(project.config)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        with acquire_lock(ledger, ["acme"], timeout=0):
            check(run(project, True), 5, True, "another syncer run holds the lock")
    finally:
        ledger.close()
    project.write_courses(course_rows(10))
    project.write_stats([])
    assert project.apply().exit_code == 0
    project.write_courses(course_rows(3))
    check(run(project, True), 6, True, "--allow-mass-archive")
