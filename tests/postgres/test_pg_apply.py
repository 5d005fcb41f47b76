"""`syncer plan` and `syncer apply` end to end on a PostgreSQL ledger, against the simulator.

Runners are real ``syncer`` subprocesses sharing one ledger schema. To make "at the same time"
deterministic, a run is parked while it holds its lock: its courses come from a PostgreSQL table
that the test keeps locked (``LOCK TABLE ... ACCESS EXCLUSIVE``) until it lets the run go.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, Engine, text

from syncer.cli import cli
from syncer.ledger import Ledger
from syncer.simulator import SimulatorSettings, SimulatorThread
from tests.project import config_text, courses_block, stats_block

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
IDS = {"alpha": "a1" * 12, "beta": "b2" * 12}
COURSES = 5
USERS = 4


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """Fast operations, and no rate limit: several runners share one simulated platform."""
    return SimulatorSettings(op_seconds=0.05, write_rate=None, read_rate=None)


@pytest.fixture
def platform(sim_thread: SimulatorThread) -> SimulatorThread:
    for name, api_id in IDS.items():
        sim_thread.state.add_integration(_id=api_id, externalPlatform=f"LMS {name}")
    return sim_thread


@pytest.fixture
def warehouse(pg_admin: Engine, pg_schema: str) -> None:
    """Per integration, a courses table and a statistics table in the test's schema."""
    with pg_admin.connect() as conn:
        for name in IDS:
            conn.execute(
                text(
                    f'CREATE TABLE "{pg_schema}".{name}_courses AS SELECT '
                    f"'{name.upper()}-' || n AS course_id, 'Course ' || n AS title "
                    f"FROM generate_series(1, {COURSES}) AS n"
                )
            )
            conn.execute(
                text(
                    f'CREATE TABLE "{pg_schema}".{name}_stats AS SELECT '
                    f"'{name.upper()}-' || c AS course_id, 'u' || u || '@{name}.example' AS email, "
                    "50 AS pct, 60 AS seconds, '2025-01-0' || u || 'T10:00:00Z' AS started, "
                    "'2025-01-0' || u || 'T11:00:00Z' AS finished "
                    f"FROM generate_series(1, {COURSES}) AS c, generate_series(1, {USERS}) AS u"
                )
            )


def write_config(path: Path, pg_url: str, base_url: str, *, stats: bool) -> Path:
    """Both integrations reading the warehouse tables; statistics only when asked (each kind is
    one bulk call, and each call costs a poll of about a second)."""
    api = {"base_url": base_url, "client_id": "demo-client", "client_secret": "${SYNCER_E2E_SECRET}"}
    sources = {
        f"{name}_{what}": {"sql": {"url": pg_url, "query": f"SELECT * FROM {name}_{what} ORDER BY 1, 2"}}
        for name in IDS
        for what in ("courses", "stats")
    }
    integrations = {
        name: {
            "id": api_id,
            "courses": courses_block(f"{name}_courses", archive_missing=True),
            **({"stats": stats_block(f"{name}_stats")} if stats else {}),
        }
        for name, api_id in IDS.items()
    }
    path.write_text(config_text(api, pg_url, integrations, sources), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, pg_url: str, platform: SimulatorThread, warehouse: None) -> Path:
    """Courses and statistics of both integrations; the ledger migrated up front."""
    Ledger.open(pg_url).close()  # so that the test can watch the locks table at once
    return write_config(tmp_path / "syncer.yaml", pg_url, platform.base_url, stats=True)


@pytest.fixture
def courses_config(tmp_path: Path, pg_url: str, platform: SimulatorThread, warehouse: None) -> Path:
    """Courses only: one bulk call per run."""
    Ledger.open(pg_url).close()
    return write_config(tmp_path / "courses.yaml", pg_url, platform.base_url, stats=False)


def syncer(*args: str) -> subprocess.Popen[str]:
    """Start ``syncer ARGS`` as its own process (a runner on its own host, as far as it knows)."""
    env = {
        **os.environ,
        "SYNCER_E2E_SECRET": "demo-secret",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "syncer", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, out, err


def wait_for(what: str, condition: Any, *procs: subprocess.Popen[str]) -> None:
    """Poll ``condition`` until true; fail at the deadline or when a watched process ended."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{what}: the process ended first: {finish(proc)}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_until(proc: subprocess.Popen[str], word: str) -> str:
    """Read the process's stderr up to the first line holding ``word`` (it ends: a failure)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if word in line:
            return line
    raise AssertionError(f"the process ended without saying {word!r}: {finish(proc)}")


def holder_pid(admin: Engine, schema: str, integration: str) -> int | None:
    with admin.connect() as conn:
        return conn.execute(
            text(f'SELECT pid FROM "{schema}".locks WHERE name = :n'), {"n": f"integration:{integration}"}
        ).scalar_one_or_none()


@contextlib.contextmanager
def parked(admin: Engine, schema: str, integration: str) -> Iterator[Connection]:
    """Hold the integration's courses table locked: a run reading it waits until the block ends."""
    with admin.connect() as conn:
        conn.execute(text("BEGIN"))
        conn.execute(text(f'LOCK TABLE "{schema}".{integration}_courses IN ACCESS EXCLUSIVE MODE'))
        try:
            yield conn
        finally:
            conn.execute(text("COMMIT"))


def runs(admin: Engine, schema: str) -> list[Any]:
    with admin.connect() as conn:
        return list(
            conn.execute(
                text(f'SELECT id, pid, status, started_at, ended_at FROM "{schema}".runs ORDER BY id')
            )
        )


def operations(admin: Engine, schema: str) -> list[Any]:
    with admin.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT integration, type, run_id, status, item_count, created_at "
                    f'FROM "{schema}".operations ORDER BY id'
                )
            )
        )


def courses_on_platform(platform: SimulatorThread) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in IDS}
    by_id = {v: k for k, v in IDS.items()}
    for course in platform.snapshot()["courses"]:
        out[by_id[course["integrationId"]]].append(course["externalId"])
    return {k: sorted(v) for k, v in out.items()}


def test_plan_then_apply_then_nothing_left(
    config: Path, platform: SimulatorThread, pg_admin: Engine, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCER_E2E_SECRET", "demo-secret")
    planned = CliRunner().invoke(cli, ["plan", str(config), "--format", "json", "--detailed-exitcode"])
    assert planned.exit_code == 2, planned.stderr
    counts = {
        i["name"]: (i["courses"]["new"], i["stats"]["new"])
        for i in json.loads(planned.stdout)["integrations"]
    }
    assert counts == {"alpha": (COURSES, COURSES * USERS), "beta": (COURSES, COURSES * USERS)}

    code, out, err = finish(syncer("apply", str(config)))
    assert code == 0, err
    assert courses_on_platform(platform) == {
        name: sorted(f"{name.upper()}-{n}" for n in range(1, COURSES + 1)) for name in IDS
    }
    ops = operations(pg_admin, pg_schema)
    assert sorted((o.integration, o.type, o.status, o.item_count) for o in ops) == [
        ("alpha", "importExternalCourses", "completed", COURSES),
        ("alpha", "importExternalStatistics", "completed", COURSES * USERS),
        ("beta", "importExternalCourses", "completed", COURSES),
        ("beta", "importExternalStatistics", "completed", COURSES * USERS),
    ]
    assert "demo-secret" not in out + err

    assert [r.status for r in runs(pg_admin, pg_schema)] == ["succeeded"]
    again = CliRunner().invoke(cli, ["plan", str(config), "--detailed-exitcode"])
    assert again.exit_code == 0, again.stderr  # everything synced: nothing left to send


def test_runners_on_two_integrations_proceed_in_parallel(
    courses_config: Path, platform: SimulatorThread, pg_admin: Engine, pg_schema: str
) -> None:
    with parked(pg_admin, pg_schema, "alpha"):
        alpha = syncer("apply", str(courses_config), "--integration", "alpha")
        wait_for(
            "alpha to hold its lock", lambda: holder_pid(pg_admin, pg_schema, "alpha") == alpha.pid, alpha
        )
        # While alpha holds its lock (and waits on its source), beta runs from start to end.
        code, _, err = finish(syncer("apply", str(courses_config), "--integration", "beta"))
        assert code == 0, err
        assert alpha.poll() is None
        assert courses_on_platform(platform)["beta"] == [f"BETA-{n}" for n in range(1, COURSES + 1)]
    code, _, err = finish(alpha)
    assert code == 0, err
    first, second = runs(pg_admin, pg_schema)  # alpha's run began before beta's and ended after it
    assert first.pid == alpha.pid
    assert first.started_at < second.started_at < second.ended_at < first.ended_at
    assert courses_on_platform(platform)["alpha"] == [f"ALPHA-{n}" for n in range(1, COURSES + 1)]


def test_runners_on_one_integration_never_interleave(
    courses_config: Path, platform: SimulatorThread, pg_admin: Engine, pg_schema: str
) -> None:
    with parked(pg_admin, pg_schema, "alpha"):
        first = syncer("apply", str(courses_config), "--integration", "alpha")
        wait_for(
            "the first run to hold the lock",
            lambda: holder_pid(pg_admin, pg_schema, "alpha") == first.pid,
            first,
        )
        code, _, err = finish(syncer("apply", str(courses_config), "--integration", "alpha"))
        assert code == 5, err
        assert "another syncer run holds the lock on integration:alpha" in err
        assert f"pid {first.pid} since" in err
        waiting = syncer(
            "apply", str(courses_config), "--integration", "alpha", "--lock-timeout", str(DEADLINE)
        )
        # It says that it waits, and waits as long as the first run is parked.
        assert "waiting up to 60 s for the lock on integration:alpha" in read_until(waiting, "waiting")
        assert waiting.poll() is None and first.poll() is None
    assert finish(first)[0] == 0
    code, _, err = finish(waiting)
    assert code == 0, err
    one, two = runs(pg_admin, pg_schema)
    assert one.ended_at <= two.started_at  # the second began only after the first had ended
    ops = operations(pg_admin, pg_schema)
    assert {o.run_id for o in ops} == {one.id}  # the second found everything sent: nothing twice
    assert len(ops) == 1


def test_saved_plan_is_stale_only_for_its_own_integration(
    courses_config: Path, pg_url: str, platform: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each integration has its own ledger generation: an apply of beta leaves alpha's plan valid;
    a write for alpha makes it stale."""
    monkeypatch.setenv("SYNCER_E2E_SECRET", "demo-secret")
    run = CliRunner().invoke
    fast = ("--poll-seconds", "0.01")
    planfile = courses_config.with_name("alpha.plan.json")
    made = run(cli, ["plan", str(courses_config), "--integration", "alpha", "--out", str(planfile)])
    assert made.exit_code == 0, made.stderr
    beta = run(cli, ["apply", str(courses_config), "--integration", "beta", *fast])
    assert beta.exit_code == 0, beta.stderr
    alpha = run(cli, ["apply", str(courses_config), str(planfile), *fast])
    assert alpha.exit_code == 0, alpha.stderr
    assert courses_on_platform(platform)["alpha"] == [f"ALPHA-{n}" for n in range(1, COURSES + 1)]

    made = run(cli, ["plan", str(courses_config), "--integration", "alpha", "--out", str(planfile)])
    assert made.exit_code == 0, made.stderr
    ledger = Ledger.open(pg_url)
    try:
        ledger.restore_courses("alpha", resend=["ALPHA-1"])  # a write for alpha
    finally:
        ledger.close()
    refused = run(cli, ["apply", str(courses_config), str(planfile), *fast])
    assert refused.exit_code == 1
    assert "the ledger changed for integration 'alpha' since the plan was made" in refused.stderr
