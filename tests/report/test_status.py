"""``syncer status`` tells the truth about runs: died, exit codes, counts, errors, lock liveness.

A run recorded as running whose process is gone shows as ``died`` (decided at read time from the
lock holders); every finished run shows its exit code, counts and error; archived courses are
counted as archived; each lock holder shows its heartbeat and whether it is alive.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from syncer.apply import IntegrationOutcome, RunReport
from syncer.ledger import Ledger, RunStatus
from syncer.ledger.lock import acquire_lock, holder_alive, read_holders
from syncer.ledger.schema import locks_table, runs
from syncer.models import ItemResult, OperationStatus, OperationType, Record, RecordKind, content_hash
from syncer.report import render_status, status_data
from tests.e2e.apply.conftest import (
    Project,
    _reset_syncer_logger,
    make_project,
    make_sim,
    project,
    sim_settings,
    stat_rows,
)
from tests.postgres.conftest import pg_admin, pg_schema, pg_url
from tests.postgres.test_pg_locks import DEADLINE
from tests.postgres.test_pg_locks import Holder as Child

__all__ = [  # fixtures used here
    "_reset_syncer_logger",
    "make_project",
    "make_sim",
    "pg_admin",
    "pg_schema",
    "pg_url",
    "project",
    "sim_settings",
]

HERE = socket.gethostname()
DEAD_PID = 2**31 - 1  # above every pid_max: no process ever has it


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def left_behind(ledger: Ledger, *, host: str = HERE, pid: int = DEAD_PID, name: str = "ledger") -> int:
    """A run recorded as running and its holder row, as a SIGKILL leaves them; its run id."""
    run_id = ledger.start_run("apply", host=host, pid=pid)
    with ledger.engine.begin() as conn:
        moment = conn.execute(runs.select().where(runs.c.id == run_id)).mappings().one()["started_at"]
        conn.execute(
            insert(locks_table).values(
                name=name, host=host, pid=pid, started_at=moment, heartbeat_at=moment, run_id=run_id
            )
        )
    return run_id


def test_a_running_run_whose_process_is_gone_shows_as_died(ledger: Ledger) -> None:
    left_behind(ledger)
    data = status_data(ledger)
    [run] = data["runs"]
    assert (run["status"], run["exit_code"], run["error"], run["counts"]) == ("died", None, None, {})
    [lock] = data["locks"]
    assert lock["alive"] is False and lock["pid"] == DEAD_PID
    assert lock["heartbeat_at"] == lock["since"] and lock["heartbeat_age_seconds"] >= 0
    text = render_status(ledger)
    assert f"apply died started {run['started_at']} on {HERE} pid {DEAD_PID}: its process is gone" in text
    assert "s ago): dead: its run is gone (`syncer unlock CONFIG` clears the row)" in text
    assert ledger.last_runs()[0].status is RunStatus.RUNNING  # decided at read time, not written


def test_a_run_without_holder_row_is_alive_while_its_process_is(ledger: Ledger) -> None:
    ledger.start_run("apply")  # this process, no lock: the library's run_apply
    ledger.start_run("apply", pid=DEAD_PID)  # a killed run whose row the next run replaced
    ledger.start_run("refresh", host="elsewhere", pid=os.getpid())  # another host, no holder
    assert [r["status"] for r in status_data(ledger)["runs"]] == ["died", "died", "running"]


def test_another_hosts_run_lives_as_long_as_its_lock(ledger: Ledger) -> None:
    lock = acquire_lock(ledger, ["acme"])
    with ledger.engine.begin() as conn:  # make the holder row another machine's
        conn.execute(update(locks_table).values(host="elsewhere", pid=1))
    ledger.start_run("apply", host="elsewhere", pid=1)
    [holder] = read_holders(ledger)
    assert holder_alive(ledger, holder)  # pid 1 exists here too: only the lock can tell
    data = status_data(ledger)
    assert (data["runs"][0]["status"], data["locks"][0]["alive"]) == ("running", True)
    assert "elsewhere pid 1 since" in render_status(ledger) and "s ago): alive" in render_status(ledger)

    lock.release()  # removes only this process's rows: the "other host's" row stays behind
    data = status_data(ledger)
    assert (data["runs"][0]["status"], data["locks"][0]["alive"]) == ("died", False)


def test_a_dead_holder_on_this_host_is_not_probed(ledger: Ledger) -> None:
    with acquire_lock(ledger, ["acme"]):  # the lock is held: a probe would say "alive"
        left_behind(ledger, name="other")
        dead = next(h for h in read_holders(ledger) if h.name == "other")
        assert not holder_alive(ledger, dead)


def finished(ledger: Ledger, status: RunStatus, summary: dict[str, object], **outcome: object) -> None:
    run_id = ledger.start_run("apply")
    ledger.finish_run(run_id, status, summary, **outcome)  # type: ignore[arg-type]


def test_finished_runs_show_exit_code_counts_and_error(ledger: Ledger) -> None:
    acme = {"operations": 2, "synced": 509, "rejected": 0, "failed_operations": 0, "invalid": 5, "held": 0}
    report = {"resumed": 0, "submissions": 2, "peak_in_flight": 1, "integrations": {"acme": acme}}
    finished(ledger, RunStatus.SUCCEEDED, report, exit_code=0)
    finished(ledger, RunStatus.FAILED, {}, exit_code=4, error="POST /bulk -> 503\n  gave up after 30 s")
    finished(ledger, RunStatus.INTERRUPTED, {}, exit_code=4, error="stopped by a signal")
    newest, failed, ok = status_data(ledger)["runs"]
    assert (ok["status"], ok["exit_code"], ok["error"]) == ("succeeded", 0, None)
    assert ok["counts"] == {**acme, "resumed": 0, "submissions": 2, "peak_in_flight": 1}
    assert (failed["status"], failed["exit_code"]) == ("failed", 4)
    assert failed["error"] == "POST /bulk -> 503 / gave up after 30 s"  # stored on one line
    assert (newest["status"], newest["exit_code"]) == ("interrupted", 4)
    lines = render_status(ledger).splitlines()
    assert any(
        line.startswith(f"  #{ok['id']} apply succeeded (exit 0) started ")
        and line.endswith("| operations 2, synced 509, invalid 5, submissions 2, peak in flight 1")
        for line in lines
    )
    assert any(
        line.startswith(f"  #{failed['id']} apply failed (exit 4) started ")
        and line.endswith("| error: POST /bulk -> 503 / gave up after 30 s")
        for line in lines
    )
    assert json.loads(render_status(ledger, "json"))["runs"] == status_data(ledger)["runs"]


def course(key: str) -> Record:
    payload = {"externalId": key, "name": key}
    return Record("acme", RecordKind.COURSE, key, payload, content_hash(payload), f"courses.csv:{key}")


def sent(ledger: Ledger, op_type: OperationType, items: list[Record]) -> None:
    op_id = ledger.prepare_operation(None, "acme", op_type, items)
    ledger.mark_submitted(op_id, f"https://x/api/v2/bulk/operations/{op_id:024x}", f"{op_id:024x}")
    results = [ItemResult(i, True, f"r{i}", None, {}) for i in range(len(items))]
    ledger.record_results(op_id, OperationStatus.COMPLETED, results)


def test_archived_courses_are_counted_as_archived(ledger: Ledger) -> None:
    sent(ledger, OperationType.IMPORT_COURSES, [course("a"), course("b"), course("c")])
    sent(ledger, OperationType.ARCHIVE_COURSES, [course("c")])
    counts = {(c.kind, c.status): (c.count, c.archived) for c in ledger.record_counts()}
    assert counts == {(RecordKind.COURSE, "synced"): (3, 1)}  # the count itself is unchanged
    assert status_data(ledger)["integrations"]["acme"]["records"] == {"course": {"synced": 2, "archived": 1}}
    assert "  acme: courses archived 1, synced 2 | invalid 0 | held 0" in render_status(ledger).splitlines()
    sent(ledger, OperationType.ARCHIVE_COURSES, [course("a"), course("b")])
    assert status_data(ledger)["integrations"]["acme"]["records"] == {"course": {"archived": 3}}


def test_cursors_say_where_the_next_read_starts_or_that_it_is_a_full_one(ledger: Ledger) -> None:
    ledger.move_cursor("acme", "stat", "progress", query_digest="q", value="2025-06-01 10:00:00", full=True)
    ledger.move_cursor("acme", "course", "catalog", query_digest="q", value=7, full=True)
    ledger.begin_full_read("acme", "course", "catalog", query_digest="q")  # killed midway
    text = render_status(ledger)
    assert (
        "  acme stats from 'progress': next read from 2025-06-01 10:00:00 less the overlap (recorded " in text
    )
    assert (
        "  acme courses from 'catalog': next read in full (the last full read did not end) (recorded " in text
    )
    cursors = {c["source"]: c for c in status_data(ledger)["cursors"]}
    assert (cursors["progress"]["full_due"], cursors["catalog"]["full_due"]) == (False, True)


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        pytest.param({}, 0, id="done"),
        pytest.param({"rejected": 1}, 3, id="rejected"),
        pytest.param({"invalid": 9, "invalid_beyond_tolerance": True}, 3, id="invalid-beyond"),
        pytest.param({"invalid": 2}, 0, id="invalid-tolerated"),
        pytest.param({"held": 1}, 3, id="held"),
        pytest.param({"failed_operations": 1, "rejected": 1}, 4, id="failed-operation-wins"),
    ],
)
def test_run_report_exit_code(outcome: dict[str, object], code: int) -> None:
    report = RunReport(1, {"acme": IntegrationOutcome("acme", **outcome)})  # type: ignore[arg-type]
    assert report.exit_code == code


# -- real runs -----------------------------------------------------------------------------------


def last_run(project: Project) -> dict[str, object]:
    data = json.loads(project.cli("status", str(project.config), "--format", "json").stdout)
    return data["runs"][0]  # type: ignore[no-any-return]


def test_apply_records_its_exit_codes_4_0_3(project: Project) -> None:
    assert project.sim is not None
    project.sim.add_faults(
        [{"method": "POST", "path_regex": "/stats$", "error_operation": True, "message": "Disk on fire"}]
    )
    assert project.apply().exit_code == 4
    run = last_run(project)
    assert (run["status"], run["exit_code"], run["error"]) == ("succeeded", 4, None)  # ran to its end
    assert run["counts"]["failed_operations"] == 1  # type: ignore[index]

    assert project.apply().exit_code == 0
    run = last_run(project)
    assert (run["command"], run["status"], run["exit_code"], run["error"]) == ("apply", "succeeded", 0, None)
    assert run["counts"]["synced"] == 12  # type: ignore[index]

    rows = stat_rows(4, 3)
    rows[0][3] = "0"  # timeSpent 0 is invalid, beyond tolerate_invalid 0
    project.write_stats(rows)
    assert project.apply().exit_code == 3
    run = last_run(project)
    assert (run["status"], run["exit_code"]) == ("succeeded", 3)
    assert run["counts"]["invalid"] == 1  # type: ignore[index]
    text = project.cli("status", str(project.config)).stdout
    assert [line.split(" started ")[0] for line in text.splitlines() if " apply " in line] == [
        f"  #{n} apply succeeded (exit {code})" for n, code in ((3, 3), (2, 0), (1, 4))
    ]


def test_a_failed_run_records_its_exit_code_and_error(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret-4b1d")
    assert project.apply().exit_code == 1
    assert project.cli("refresh", str(project.config)).exit_code == 1
    data = json.loads(project.cli("status", str(project.config), "--format", "json").stdout)
    refresh, apply = data["runs"][:2]
    for run, command in ((refresh, "refresh"), (apply, "apply")):
        assert (run["command"], run["status"], run["exit_code"]) == (command, "failed", 1)
        assert "invalid_client" in run["error"] and "\n" not in run["error"]
        assert "wrong-secret-4b1d" not in run["error"]
    assert "wrong-secret-4b1d" not in project.ledger.read_bytes().decode("latin-1")


# -- a real SIGKILL ------------------------------------------------------------------------------


@pytest.fixture
def killed_run() -> Callable[[str], None]:
    """Start a run holding the lock in a child process, check it shows alive, SIGKILL it."""

    def run(url: str) -> None:
        ledger = Ledger.open(url)  # migrated before the child opens it
        child = Child(url, ["acme"])
        try:
            assert child.line().startswith("locked")
            data = status_data(ledger)
            assert [(r["status"], r["pid"]) for r in data["runs"]] == [("running", child.proc.pid)]
            assert [(h["pid"], h["alive"]) for h in data["locks"]] == [(child.proc.pid, True)]
            os.kill(child.proc.pid, signal.SIGKILL)
            child.proc.wait(DEADLINE)  # reaped: its pid is gone
            data = status_data(ledger)
            assert [(r["status"], r["exit_code"]) for r in data["runs"]] == [("died", None)]
            assert [(h["pid"], h["alive"]) for h in data["locks"]] == [(child.proc.pid, False)]
        finally:
            child.stop()
            ledger.close()

    return run


def test_a_sigkilled_run_shows_as_died(tmp_path: Path, killed_run: Callable[[str], None]) -> None:
    killed_run(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.mark.postgres
def test_a_sigkilled_run_shows_as_died_on_postgresql(
    pg_url: str,
    killed_run: Callable[[str], None],
) -> None:
    killed_run(pg_url)
