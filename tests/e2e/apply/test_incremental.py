"""Incremental SQL sources end to end: a SQLite warehouse read past its cursor, against the simulator.

The warehouse is a real SQLite file with a ``courses`` and a ``stats`` table, each with an
``updated_at`` text column ('YYYY-MM-DD HH:MM:SS') that grows when a row is written; the stats
source reads it incrementally (``cursor: updated_at``), the catalog too, with ``full_every``
(so that ``archive_missing`` may use it). What the platform received is read from the
simulator's own operations (their items), and where each cursor stands from the ledger's
``source_cursors``: a run that did not record every record of its read never moves it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from jsonschema import Draft202012Validator

from syncer.resources import schema_path
from syncer.simulator import SimulatorThread
from tests.e2e.apply.conftest import POLL, SECRET, Project, live_courses
from tests.e2e.refresh.conftest import by_hand
from tests.project import AUTHOR, COURSE_FIELDS, GROUP, config_text, course_id, courses_block, stats_block

ROOT = Path(__file__).resolve().parents[3]
DEADLINE = 60.0
BASE = datetime(2025, 6, 1, 10, 0)
COURSES = 4
LEARNERS = 3
STATS_QUERY = "SELECT course_id, email, pct, seconds, started, finished, updated_at FROM stats"
CATALOG_QUERY = "SELECT course_id, title, updated_at FROM courses"
IMPORT_STATS = "importExternalStatistics"
RECORDS_GONE = "the ledger holds none of its records (the integration was recreated on the platform)"
DRIFT_TO_RESTORE = "the last refresh found courses to restore"
FULL_DUE = "the last full read did not end (killed, interrupted or an operation failed)"


def stamp(minutes: float) -> str:
    """The warehouse's ``updated_at`` ``minutes`` after BASE."""
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def mail(learner: int) -> str:
    return f"learner{learner:02d}@acme.example"


def started(learner: int) -> str:
    return f"2025-03-{learner:02d}T08:00:00Z"


def api_time(text: str) -> str:
    """A warehouse time as the API and the ledger write it (milliseconds, Z)."""
    return text.replace("Z", ".000Z")


StatKey = tuple[str, str, str]  # course externalId, mail, firstActivityAt (as the API has it)


def plan_keys(plan: dict[str, Any]) -> set[StatKey]:
    """The keys of the statistics a plan changes."""
    keys = set()
    for change in plan["changes"]:
        if change["kind"] == "stat":
            _ctype, course, _utype, learner, first = json.loads(change["key"])
            keys.add((course, learner, first))
    return keys


class Warehouse:
    """The SQL source: 4 courses and one statistic per (course, learner), each row with its
    ``updated_at``; statistic ``n`` (0-based, by course then learner) was written at minute ``n``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run(
            "CREATE TABLE courses (course_id TEXT PRIMARY KEY, title TEXT NOT NULL, updated_at TEXT NOT NULL)"
        )
        self.run(
            "CREATE TABLE stats (id INTEGER PRIMARY KEY, course_id TEXT, email TEXT, pct INTEGER,"
            " seconds INTEGER, started TEXT, finished TEXT, updated_at TEXT NOT NULL)"
        )
        for c in range(1, COURSES + 1):
            self.run("INSERT INTO courses VALUES (?, ?, ?)", course_id(c), f"Course {c}", stamp(c - 1))
        n = 0
        for c in range(1, COURSES + 1):
            for u in range(1, LEARNERS + 1):
                self.add_stat(c, u, pct=50, at=stamp(n))
                n += 1

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def run(self, sql: str, *params: Any) -> None:
        with closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute(sql, params)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(sql, params).fetchall()

    def add_stat(self, course: int, learner: int, *, pct: int, at: str) -> StatKey:
        self.run(
            "INSERT INTO stats (course_id, email, pct, seconds, started, finished, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            course_id(course),
            mail(learner),
            pct,
            60 + learner,
            started(learner),
            f"2025-03-{learner:02d}T09:00:00Z",
            at,
        )
        return (course_id(course), mail(learner), api_time(started(learner)))

    def set_stat(self, n: int, *, pct: int, at: str | None = None) -> StatKey:
        """Statistic ``n`` (0-based) gets a new ``pct`` and, unless ``at`` is None, ``updated_at``."""
        row = self.rows("SELECT course_id, email, started FROM stats WHERE id = ?", n + 1)[0]
        if at is None:
            self.run("UPDATE stats SET pct = ? WHERE id = ?", pct, n + 1)
        else:
            self.run("UPDATE stats SET pct = ?, updated_at = ? WHERE id = ?", pct, at, n + 1)
        return (row[0], row[1], api_time(row[2]))


@dataclass
class Shop(Project):
    """A project whose two sources are queries on the warehouse, both with ``cursor: updated_at``."""

    warehouse: Warehouse | None = None
    stats_sql: dict[str, Any] = field(default_factory=lambda: {"cursor": "updated_at"})
    catalog_sql: dict[str, Any] = field(default_factory=lambda: {"cursor": "updated_at", "full_every": "7d"})
    stats_query: str = STATS_QUERY
    archive_missing: bool = True
    name: str = "acme"  # the integration's key
    beta: bool = False  # a second integration, reading the same sources
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def write_config(self, **changes: Any) -> Path:
        for key, value in changes.items():
            setattr(self, key, value)
        assert self.warehouse is not None
        api = {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": "${L360_CLIENT_SECRET}",
            "retry_seconds": 30,
            "batch_size": {"stats": self.stat_batch},
        }
        sources = {
            "catalog": {"sql": {"url": self.warehouse.url, "query": CATALOG_QUERY, **self.catalog_sql}},
            "progress": {"sql": {"url": self.warehouse.url, "query": self.stats_query, **self.stats_sql}},
        }
        acme = {
            **self.integration,
            "courses": courses_block(archive_missing=self.archive_missing, fields=COURSE_FIELDS),
            "stats": stats_block(),
        }
        integrations = {self.name: acme}
        if self.beta:
            integrations["beta"] = {**acme, "platform": "Beta Academy", "group": "64b7f0c2a1e4d5f6a7b8c9d2"}
        self.config.write_text(config_text(api, "sqlite:///syncer.db", integrations, sources))
        return self.config

    def plan_json(self, *args: str) -> dict[str, Any]:
        """``syncer plan --format json``: its data (exit 0 or 2)."""
        result = self.cli("plan", str(self.config), "--format", "json", *args)
        assert result.exit_code in (0, 2), result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def cursors(self) -> dict[str, tuple[Any, ...]]:
        """The ledger's cursors by source: (value, full_read_at, moved_at, run_id)."""
        rows = self.ledger_rows("SELECT source, value, full_read_at, moved_at, run_id FROM source_cursors")
        return {row[0]: tuple(row[1:]) for row in rows}

    def cursor(self, source: str = "progress") -> str | None:
        """The value recorded for ``source``, as the warehouse holds it."""
        stored = self.cursors()[source][0]
        return None if stored is None else str(json.loads(stored)["value"])

    def start_apply(self, *args: str, crash: str | None = None) -> subprocess.Popen[str]:
        """``python -m syncer apply`` in its own process (a crash point kills it with SIGKILL)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_TEST_")}
        env.update({"L360_CLIENT_SECRET": SECRET, "PYTHONPATH": str(ROOT)})
        if crash is not None:
            env["SYNCER_TEST_CRASH_AT"] = crash
        command = [sys.executable, "-m", "syncer", "apply", str(self.config), *POLL, *args]
        proc = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def process_apply(self, *args: str, crash: str | None = None) -> tuple[int, str]:
        """Run ``start_apply`` to its end: its exit status and stderr."""
        return finish(self.start_apply(*args, crash=crash))


def sent_stats(sim: SimulatorThread) -> list[tuple[StatKey, Any]]:
    """Every statistic the platform accepted in an operation, in order: its key and progress."""
    ops = sorted(sim.state.operations.values(), key=lambda op: op.seq)
    return [
        (
            (item["courseIdentifier"]["value"], item["userIdentifier"]["value"], item["firstActivityAt"]),
            item["progress"],
        )
        for op in ops
        if op.type.value == IMPORT_STATS
        for item in op.items
    ]


def progress_on_platform(sim: SimulatorThread) -> dict[tuple[str, str], list[float]]:
    """Per (course externalId, mail): the progress of each attempt the platform holds."""
    state = sim.snapshot()
    courses = {c["courseId"]: c["externalId"] for c in state["courses"]}
    return {
        (courses[a["courseId"]], a["user"].removeprefix("mail:")): [
            float(t["progress"]) for t in a["attempts"]
        ]
        for a in state["attempts"]
    }


def stat_read(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan's read of the statistics source."""
    (read,) = [r for r in plan["reads"] if r["kind"] == "stat"]
    return read


def course_read(plan: dict[str, Any]) -> dict[str, Any]:
    (read,) = [r for r in plan["reads"] if r["kind"] == "course"]
    return read


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a process with a deadline: its exit status and stderr."""
    try:
        _out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        raise AssertionError(f"syncer did not finish in {DEADLINE} s:\n{err}") from None
    return proc.returncode, err


def wait_until(what: str, condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll ``condition`` until it holds; fail at the deadline or when ``proc`` ends first."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended first:\n{finish(proc)[1]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)  # a polling interval: the condition decides


@pytest.fixture
def make_shop(
    make_sim: Callable[..., SimulatorThread], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Shop]]:
    """Shops (a warehouse, its config and ledger), each against a fresh simulator with some
    settings changed; a process a failed test left running is killed."""
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    made: list[Shop] = []

    def make(**sim_settings: Any) -> Shop:
        sim = make_sim(**sim_settings)
        root = tmp_path / f"shop{len(made)}"
        root.mkdir()
        shop = Shop(root, sim.base_url, sim, warehouse=Warehouse(root / "warehouse.db"))
        shop.write_config()
        made.append(shop)
        return shop

    yield make
    for shop in made:
        for proc in shop.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def shop(make_shop: Callable[..., Shop]) -> Shop:
    """A shop against a simulator with the platform's limits and fast operations."""
    return make_shop()


@pytest.fixture
def synced(shop: Shop) -> Shop:
    """The shop after a first (full) apply."""
    first = shop.apply()
    assert first.exit_code == 0, first.stdout + first.stderr
    return shop


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


# -- first read, then incremental ---------------------------------------------------------------


def test_first_apply_reads_all_and_records_the_cursor(shop: Shop) -> None:
    plan = shop.plan_json()
    read = stat_read(plan)
    assert read == {
        "integration": "acme",
        "kind": "stat",
        "source": "progress",
        "cursor": "updated_at",
        "full": True,
        "reason": "first read: no cursor recorded yet",
        "recorded": None,
        "since": None,
        "upto": stamp(COURSES * LEARNERS - 1),
        "null_cursors": 0,
    }
    assert course_read(plan)["full"] is True
    assert plan["integrations"][0]["stats"]["new"] == COURSES * LEARNERS
    assert shop.ledger_rows("SELECT count(*) FROM source_cursors") == [(0,)]  # plan moves nothing

    result = _ok(shop.apply())
    assert "cursor of source 'progress' (stats) recorded at updated_at = 2025-06-01 10:11:00" in result.stderr
    assert len(sent_stats(shop.sim)) == COURSES * LEARNERS
    assert shop.cursor() == stamp(COURSES * LEARNERS - 1)
    assert shop.cursor("catalog") == stamp(COURSES - 1)
    value, full_read_at, moved_at, run_id = shop.cursors()["progress"]
    assert json.loads(value) == {"type": "str", "value": stamp(11)}
    assert full_read_at is not None and moved_at is not None and run_id is not None

    again = shop.plan_json()
    read = stat_read(again)
    assert (read["full"], read["reason"], read["recorded"]) == (False, None, stamp(11))
    assert read["since"] == stamp(6)  # less the default overlap of 5 minutes
    assert read["upto"] == stamp(11)
    assert again["has_changes"] is False
    assert again["integrations"][0]["warnings"] == []
    # Statistics 6..11 lie in the overlap: read again, found unchanged.
    assert again["integrations"][0]["stats"]["unchanged"] == 6
    schema = Draft202012Validator(json.loads(schema_path("plan.schema.json").read_text("utf-8")))
    assert [e.message for e in schema.iter_errors(plan)] == []
    assert [e.message for e in schema.iter_errors(again)] == []
    line = (
        "read: acme statistics: source 'progress' read incrementally: rows with updated_at from "
        "2025-06-01 10:06:00 up to 2025-06-01 10:11:00 (recorded: 2025-06-01 10:11:00, less the overlap)"
    )
    assert line in shop.cli("plan", str(shop.config)).stdout.splitlines()
    assert f"> {line}" in shop.cli("plan", str(shop.config), "--format", "markdown").stdout.splitlines()


def test_an_incremental_apply_sends_exactly_the_changed_rows(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    first = len(sent_stats(shop.sim))
    changed = {
        shop.warehouse.set_stat(0, pct=70, at=stamp(60)),
        shop.warehouse.set_stat(4, pct=80, at=stamp(61)),
        shop.warehouse.set_stat(9, pct=90, at=stamp(62)),  # was in the overlap already
    }
    plan = shop.plan_json()
    read = stat_read(plan)
    assert (read["full"], read["recorded"], read["since"], read["upto"]) == (
        False,
        stamp(11),
        stamp(6),
        stamp(62),
    )
    counts = plan["integrations"][0]["stats"]
    # Read: the 3 changed and the 5 others of the overlap (6, 7, 8, 10, 11), found unchanged.
    assert (counts["changed"], counts["unchanged"], counts["new"]) == (3, 5, 0)
    assert plan_keys(plan) == changed

    result = _ok(shop.apply())
    assert "read incrementally: rows with updated_at from 2025-06-01 10:06:00 up to 2025-06-01 11:02:00" in (
        result.stderr
    )
    sent = sent_stats(shop.sim)[first:]
    assert sorted(key for key, _ in sent) == sorted(changed)
    assert sorted(progress for _, progress in sent) == [70, 80, 90]
    assert shop.cursor() == stamp(62)
    again = shop.plan_json()
    assert again["has_changes"] is False
    assert stat_read(again)["since"] == stamp(57)


def test_a_row_touched_without_change_is_read_and_not_sent(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    first = len(sent_stats(shop.sim))
    shop.warehouse.set_stat(1, pct=50, at=stamp(30))  # the same values, a new updated_at
    plan = shop.plan_json()
    assert plan["has_changes"] is False
    assert stat_read(plan)["upto"] == stamp(30)
    _ok(shop.apply())
    assert len(sent_stats(shop.sim)) == first
    assert shop.cursor() == stamp(30)  # recorded: nothing to send is not a reason to stay


# -- runs that did not record every record of their read ---------------------------------------


@pytest.mark.parametrize("step", ["after_prepare:1", "after_submit:1"])
def test_a_killed_run_leaves_the_cursor_and_the_next_sends_each_change_once(synced: Shop, step: str) -> None:
    shop = synced
    assert shop.warehouse is not None
    first = len(sent_stats(shop.sim))
    before = shop.cursors()["progress"]
    changed = {
        shop.warehouse.set_stat(2, pct=61, at=stamp(40)),
        shop.warehouse.set_stat(5, pct=62, at=stamp(41)),
    }
    code, err = shop.process_apply(crash=step)
    assert code == -signal.SIGKILL, err
    assert shop.cursors()["progress"] == before  # not moved: value, moved_at and run alike

    result = _ok(shop.apply())
    assert "rows with updated_at from 2025-06-01 10:06:00 up to 2025-06-01 10:41:00" in result.stderr
    sent = sent_stats(shop.sim)[first:]
    assert Counter(key for key, _ in sent) == dict.fromkeys(changed, 1)  # no duplicate, nothing lost
    platform = progress_on_platform(shop.sim)
    assert platform[(course_id(1), mail(3))] == [61.0]
    assert platform[(course_id(2), mail(3))] == [62.0]
    assert shop.cursor() == stamp(41)
    assert shop.plan_json()["has_changes"] is False


def test_a_failed_operation_leaves_the_cursor_and_the_next_run_sends(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    assert shop.sim is not None
    first = len(sent_stats(shop.sim))
    changed = shop.warehouse.set_stat(3, pct=77, at=stamp(50))
    shop.sim.add_faults(
        [{"method": "POST", "path_regex": "/stats$", "error_operation": True, "message": "boom"}]
    )
    failed = shop.apply()
    assert failed.exit_code == 4, failed.stderr
    assert (
        "acme: the cursor of source 'progress' stays at 2025-06-01 10:11:00: an operation of this "
        "integration did not complete; the next run reads the same rows again"
    ) in failed.stderr
    assert shop.cursor() == stamp(11)
    result = _ok(shop.apply())
    assert "rows with updated_at from 2025-06-01 10:06:00 up to 2025-06-01 10:50:00" in result.stderr
    # The failed operation applied nothing: the change was accepted once, by the second run.
    assert [key for key, _ in sent_stats(shop.sim)[first:]] == [changed, changed]
    assert progress_on_platform(shop.sim)[(course_id(2), mail(1))] == [77.0]
    assert shop.cursor() == stamp(50)


# -- archives: only full reads --------------------------------------------------------------------


def test_only_a_full_read_archives(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.warehouse.run("DELETE FROM courses WHERE course_id = ?", course_id(4))
    plan = shop.plan_json()
    assert course_read(plan)["full"] is False
    assert plan["integrations"][0]["archives"] == 0
    _ok(shop.apply())
    assert course_id(4) in live_courses(shop.sim)

    full = shop.plan_json("--full")
    assert (course_read(full)["full"], course_read(full)["reason"]) == (True, "--full")
    assert (stat_read(full)["full"], stat_read(full)["reason"]) == (True, "--full")
    assert full["integrations"][0]["archives"] == 1
    _ok(shop.apply("--full"))
    assert live_courses(shop.sim) == {course_id(n) for n in range(1, COURSES)}


def test_full_every_due_reads_in_full_and_archives(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.warehouse.run("DELETE FROM courses WHERE course_id = ?", course_id(2))
    assert course_read(shop.plan_json())["full"] is False  # the last full read is fresh
    with closing(sqlite3.connect(shop.ledger)) as conn, conn:
        conn.execute(
            "UPDATE source_cursors SET full_read_at = '2025-01-01 00:00:00.000000' WHERE source = 'catalog'"
        )
    plan = shop.plan_json()
    read = course_read(plan)
    assert (read["full"], read["reason"]) == (True, "full_every 7d: last full read 2025-01-01 00:00 UTC")
    assert stat_read(plan)["full"] is False  # the stats source has no full_every
    assert plan["integrations"][0]["archives"] == 1
    _ok(shop.apply())
    assert course_id(2) not in live_courses(shop.sim)
    assert course_read(shop.plan_json())["full"] is False  # full_read_at is now


def test_a_changed_query_reads_in_full(synced: Shop) -> None:
    shop = synced
    shop.write_config(stats_query=STATS_QUERY + " WHERE pct >= 0")
    plan = shop.plan_json()
    read = stat_read(plan)
    assert (read["full"], read["reason"]) == (
        True,
        "the query, the cursor column, the field rules or syncer's version changed since the last read",
    )
    assert read["recorded"] == stamp(11)
    assert plan["has_changes"] is False
    assert plan["integrations"][0]["stats"]["unchanged"] == COURSES * LEARNERS
    _ok(shop.apply())
    assert stat_read(shop.plan_json())["full"] is False


def test_a_changed_field_rule_reads_in_full(synced: Shop) -> None:
    """Rows before the cursor map to other records once a field rule changes: an incremental
    read would re-map only the rows written since, and the plan would hide the rest."""
    shop = synced
    config = yaml.safe_load(shop.config.read_text())
    config["integrations"]["acme"]["stats"]["fields"]["timeSpent"] = {"column": "seconds", "unit": "min"}
    shop.config.write_text(yaml.safe_dump(config, sort_keys=False))
    plan = shop.plan_json()
    read = stat_read(plan)
    assert (read["full"], read["reason"]) == (
        True,
        "the query, the cursor column, the field rules or syncer's version changed since the last read",
    )
    stats = plan["integrations"][0]["stats"]
    assert (stats["unchanged"], plan["changes_total"] + plan["held_total"]) == (0, COURSES * LEARNERS)
    assert course_read(plan)["full"] is False  # the catalog's rules did not change


def test_rows_without_a_cursor_are_counted_by_full_reads(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    nulled = STATS_QUERY.replace(
        "updated_at FROM",
        f"CASE WHEN course_id = '{course_id(1)}' THEN NULL ELSE updated_at END AS updated_at FROM",
    )
    shop.write_config(stats_query=nulled)  # a changed query: read in full
    full = shop.plan_json()
    assert (stat_read(full)["full"], stat_read(full)["null_cursors"]) == (True, LEARNERS)
    result = shop.apply()
    _ok(result)
    assert (
        f"acme: source 'progress': {LEARNERS} rows have no updated_at (NULL): only full reads read them "
        "(--full, full_every), incremental ones never do"
    ) in result.stderr
    after = stat_read(shop.plan_json())
    assert (after["full"], after["null_cursors"]) == (False, 0)  # an incremental read does not count


def test_an_incremental_read_of_no_row_does_not_warn(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.write_config(stats_sql={"cursor": "updated_at", "overlap": "0s"})
    # The row holding the recorded value is gone: nothing lies at or past the cursor.
    shop.warehouse.run("DELETE FROM stats WHERE updated_at = ?", stamp(11))
    plan = shop.plan_json()
    read = stat_read(plan)
    assert (read["full"], read["since"], read["upto"]) == (False, stamp(11), None)
    assert plan["integrations"][0]["warnings"] == []
    result = shop.cli("plan", str(shop.config))
    assert "gave no statistics" not in result.stdout + result.stderr
    assert (
        "read: acme statistics: source 'progress' read incrementally: rows with updated_at from "
        "2025-06-01 10:11:00 (no row has a greater one)"
    ) in result.stdout
    _ok(shop.apply())
    assert shop.cursor() == stamp(11)  # nothing read: it stays


def test_an_overlap_of_the_other_kind_fails_the_first_plan(shop: Shop) -> None:
    # Found by the first (full) read's greatest value, not by the next run once apply recorded it.
    shop.write_config(stats_sql={"cursor": "updated_at", "overlap": 5})
    result = shop.cli("plan", str(shop.config))
    assert result.exit_code == 1, result.stderr
    assert "cursor column 'updated_at' holds date-times, but overlap is a number" in result.stderr
    assert shop.ledger_rows("SELECT * FROM source_cursors") == []


# -- saved plans --------------------------------------------------------------------------------


def test_a_saved_incremental_plan_reads_the_same_window(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    first = len(sent_stats(shop.sim))
    changed = {
        shop.warehouse.set_stat(0, pct=65, at=stamp(20)),
        shop.warehouse.set_stat(1, pct=66, at=stamp(21)),
    }
    planfile = shop.root / "plan.json"
    made = shop.cli("plan", str(shop.config), "--out", str(planfile))
    assert made.exit_code == 0, made.stderr
    saved = json.loads(planfile.read_text())
    assert {(r["kind"], r["full"]) for r in saved["reads"]} == {("course", False), ("stat", False)}
    assert "progress" not in saved["sources"]  # fingerprinted by its window instead

    # Written after the plan, past its window: not the plan's business, the next run's.
    late = shop.warehouse.add_stat(4, 1, pct=40, at=stamp(90))
    shop.warehouse.run("INSERT INTO courses VALUES (?, ?, ?)", course_id(5), "Course 5", stamp(90))
    result = _ok(shop.apply(str(planfile)))
    assert "rows with updated_at from 2025-06-01 10:06:00 up to 2025-06-01 10:21:00" in result.stderr
    assert sorted(key for key, _ in sent_stats(shop.sim)[first:]) == sorted(changed)
    assert shop.cursor() == stamp(21)  # the plan's upper bound, not the source's newest row

    plan = shop.plan_json()
    assert stat_read(plan)["since"] == stamp(16)
    assert plan_keys(plan) == {late}
    _ok(shop.apply())
    assert shop.cursor() == stamp(90)


def test_a_saved_incremental_plan_is_stale_when_a_row_of_its_window_changed(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.warehouse.set_stat(0, pct=65, at=stamp(20))
    planfile = shop.root / "plan.json"
    assert shop.cli("plan", str(shop.config), "--out", str(planfile)).exit_code == 0
    operations = len(shop.sim.state.operations) if shop.sim else 0
    shop.warehouse.set_stat(7, pct=55)  # inside the window, its updated_at unchanged
    result = shop.apply(str(planfile))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {planfile}: the rows of source 'progress' the plan read changed since it was made; "
        "run syncer plan again\n"
    )
    assert shop.sim is not None and len(shop.sim.state.operations) == operations
    assert shop.cursor() == stamp(11)


def test_plan_never_moves_the_cursor_and_full_goes_with_the_plan(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.warehouse.set_stat(0, pct=99, at=stamp(80))
    before = shop.cursors()
    planfile = shop.root / "plan.json"
    for args in ((), ("--full",), ("--format", "json"), ("--out", str(planfile))):
        assert shop.cli("plan", str(shop.config), *args).exit_code == 0
    assert shop.cursors() == before
    refused = shop.apply(str(planfile), "--full")
    assert refused.exit_code == 1
    assert (
        refused.stderr
        == "Error: --full goes with the plan: run syncer plan --full --out PLANFILE, apply that\n"
    )
    assert shop.cursors() == before


def test_a_saved_full_plan_archives(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.warehouse.run("DELETE FROM courses WHERE course_id = ?", course_id(3))
    planfile = shop.root / "plan.json"
    assert shop.cli("plan", str(shop.config), "--full", "--out", str(planfile)).exit_code == 0
    _ok(shop.apply(str(planfile)))
    assert course_id(3) not in live_courses(shop.sim)
    full_read_at = shop.cursors()["catalog"][1]
    assert full_read_at is not None and not full_read_at.startswith("2025-01")


# -- more reasons for a full read; runs that stop before the end --------------------------------


def test_a_source_that_had_no_row_is_read_in_full_until_it_has_one(shop: Shop) -> None:
    assert shop.warehouse is not None
    shop.warehouse.run("DELETE FROM stats")
    _ok(shop.apply())
    assert shop.cursors()["progress"][0] is None  # recorded: read, no row
    read = stat_read(shop.plan_json())
    assert (read["full"], read["reason"]) == (True, "the last read found no row")
    key = shop.warehouse.add_stat(1, 1, pct=30, at=stamp(5))
    plan = shop.plan_json()
    assert (stat_read(plan)["full"], plan_keys(plan)) == (True, {key})
    _ok(shop.apply())
    assert shop.cursor() == stamp(5)
    assert stat_read(shop.plan_json())["full"] is False


def test_retry_rejected_reads_in_full(synced: Shop) -> None:
    result = _ok(synced.apply("--retry-rejected"))
    assert (
        "acme statistics: source 'progress' read in full (--retry-rejected: rejected rows may lie before "
        "the cursor); apply records updated_at = 2025-06-01 10:11:00"
    ) in result.stderr


def test_a_guard_that_refuses_leaves_every_cursor(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    for n in range(COURSES + 1, 13):
        shop.warehouse.run(
            "INSERT INTO courses VALUES (?, ?, ?)", course_id(n), f"Course {n}", stamp(100 + n)
        )
    _ok(shop.apply())
    assert len(live_courses(shop.sim)) == 12
    before = shop.cursors()
    shop.warehouse.run("DELETE FROM courses WHERE course_id > ?", course_id(6))  # 6 of 12 go
    refused = shop.apply("--full")
    assert refused.exit_code == 6, refused.stderr
    assert shop.cursors() == before
    _ok(shop.apply("--full", "--allow-mass-archive"))
    assert len(live_courses(shop.sim)) == 6
    assert shop.cursors()["catalog"][1] != before["catalog"][1]  # a new full read


def test_a_run_stopped_by_a_signal_leaves_the_cursor(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop(op_seconds=0.5)
    assert shop.warehouse is not None and shop.sim is not None
    sim = shop.sim
    _ok(shop.apply())
    before = shop.cursors()
    first = len(sent_stats(sim))
    changed = shop.warehouse.set_stat(10, pct=88, at=stamp(70))
    proc = shop.start_apply()

    def in_flight() -> bool:
        ops = sim.snapshot()["operations"]
        return len(ops) > 2 and ops[-1]["status"] not in ("completed", "error")

    wait_until("the statistics operation in flight", in_flight, proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 4, err
    assert "stopped by a signal" in err
    assert shop.cursors() == before
    _ok(shop.apply())
    assert [key for key, _ in sent_stats(sim)[first:]] == [changed]
    assert shop.cursor() == stamp(70)


def test_an_integration_recreated_on_the_platform_is_filled_again_in_full(synced: Shop) -> None:
    shop = synced
    assert shop.sim is not None
    [(old_id,)] = shop.ledger_rows("select api_id from integrations")
    by_hand(shop.sim, "DELETE", f"/api/v2/integrations/{old_id}")
    made = by_hand(
        shop.sim,
        "POST",
        "/api/v2/integrations",
        {"externalPlatform": "Acme Academy", "groupId": GROUP, "authorId": AUTHOR},
    )
    assert shop.cli("refresh", str(shop.config)).exit_code == 0
    plan = shop.plan_json()
    reasons = [(r["kind"], r["full"], r["reason"]) for r in plan["reads"]]
    assert reasons == [(kind, True, RECORDS_GONE) for kind in ("course", "stat")]
    _ok(shop.apply())
    attempts = [a for a in shop.sim.snapshot()["attempts"] if a["integrationId"] == made["_id"]]
    assert len(attempts) == COURSES * LEARNERS
    assert shop.ledger_rows("select count(*) from records where status != 'synced'") == [(0,)]


def test_a_course_archived_by_hand_is_restored_by_a_full_read(synced: Shop) -> None:
    """Drift to restore is put right by reading the catalog in full: the drifted course's row
    may lie before the cursor, and an incremental read would leave it archived."""
    shop = synced
    assert shop.sim is not None and shop.warehouse is not None
    shop.warehouse.run("UPDATE courses SET updated_at = ? WHERE course_id != ?", stamp(-60), course_id(1))
    _ok(shop.apply("--full"))  # C002..C004 now lie well before the cursor (minute 0)
    course = next(c for c in shop.sim.snapshot()["courses"] if c["externalId"] == course_id(2))
    by_hand(shop.sim, "PUT", f"/api/v2/courses/{course['courseId']}/archive", {"archived": True})
    assert shop.cli("refresh", str(shop.config)).exit_code == 0
    plan = shop.plan_json()
    read = course_read(plan)
    assert (read["full"], read["reason"]) == (True, DRIFT_TO_RESTORE)
    assert stat_read(plan)["full"] is False
    _ok(shop.apply())
    assert course_id(2) in live_courses(shop.sim)
    after = shop.plan_json()
    assert after["drift"] == [] and course_read(after)["full"] is False


def test_a_full_read_that_did_not_complete_is_read_in_full_again(synced: Shop) -> None:
    """A full read finds what an incremental one cannot (here, a row changed without moving its
    cursor): when its operation fails, the next run, even without --full, reads every row again."""
    shop = synced
    assert shop.sim is not None and shop.warehouse is not None
    first = len(sent_stats(shop.sim))
    quiet = shop.warehouse.set_stat(0, pct=44)  # updated_at not moved: before the cursor
    assert shop.plan_json()["has_changes"] is False  # an incremental read cannot see it
    shop.sim.add_faults([{"method": "POST", "path_regex": "/stats$", "error_operation": True}])
    failed = shop.apply("--full")
    assert failed.exit_code == 4, failed.stderr
    assert (
        "acme: source 'progress' was read in full, but an operation of this integration did not "
        "complete; the next run reads every row again"
    ) in failed.stderr
    plan = shop.plan_json()
    assert (stat_read(plan)["full"], stat_read(plan)["reason"], plan_keys(plan)) == (True, FULL_DUE, {quiet})
    _ok(shop.apply())
    assert [key for key, _ in sent_stats(shop.sim)[first:]] == [quiet, quiet]  # the failed one, then this
    assert progress_on_platform(shop.sim)[(course_id(1), mail(1))] == [44.0]
    assert shop.cursor() == stamp(11)


def test_a_full_read_killed_midway_is_read_in_full_again(synced: Shop) -> None:
    """A --full run killed before every batch of its plan reached the platform: it was marked
    before its first send, so the next run (without --full) reads every row again."""
    shop = synced
    assert shop.sim is not None and shop.warehouse is not None
    shop.write_config(stat_batch=1)  # one operation per (course, learner) pair
    quiet = {shop.warehouse.set_stat(0, pct=44), shop.warehouse.set_stat(1, pct=45)}  # cursor not moved
    code, err = shop.process_apply("--full", crash="after_prepare:1")  # the second batch never prepared
    assert code == -signal.SIGKILL, err
    assert stat_read(shop.plan_json())["reason"] == FULL_DUE
    _ok(shop.apply())
    assert stat_read(shop.plan_json())["full"] is False
    platform = progress_on_platform(shop.sim)
    assert (platform[(course_id(1), mail(1))], platform[(course_id(1), mail(2))]) == ([44.0], [45.0]), quiet


# -- whose cursor ---------------------------------------------------------------------------------


def test_a_renamed_integration_keeps_its_cursors(synced: Shop) -> None:
    shop = synced
    before = shop.cursors()
    shop.write_config(name="academy")
    plan = shop.plan_json()
    assert plan["renamed"] == [{"from": "acme", "to": "academy"}]
    read = stat_read(plan)
    assert (read["integration"], read["full"], read["recorded"]) == ("academy", False, stamp(11))
    _ok(shop.apply())
    assert shop.ledger_rows("SELECT DISTINCT integration FROM source_cursors") == [("academy",)]
    assert shop.cursors()["progress"][0] == before["progress"][0]


def test_each_integration_reading_a_source_has_its_own_cursor(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.write_config(beta=True)
    _ok(shop.apply("--integration", "beta"))  # beta's first read: in full
    shop.warehouse.set_stat(0, pct=75, at=stamp(30))
    _ok(shop.apply("--integration", "beta"))

    def held(integration: str) -> str:
        rows = shop.ledger_rows(
            f"SELECT value FROM source_cursors WHERE integration = '{integration}' AND source = 'progress'"
        )
        return str(json.loads(rows[0][0])["value"])

    assert (held("acme"), held("beta")) == (stamp(11), stamp(30))  # acme has not sent that row yet
    plan = shop.plan_json("--integration", "acme")
    assert stat_read(plan)["since"] == stamp(6)
    assert len(plan_keys(plan)) == 1
    _ok(shop.apply("--integration", "acme"))
    assert held("acme") == stamp(30)


def test_apply_simulate_leaves_the_ledger_s_cursors(synced: Shop) -> None:
    shop = synced
    assert shop.warehouse is not None
    shop.warehouse.set_stat(0, pct=75, at=stamp(30))
    before = shop.cursors()
    result = shop.apply("--simulate")
    # (3: the simulated platform does not hold the course the real one does: it rejects the statistic)
    assert result.exit_code in (0, 3), result.stderr
    assert "recorded at updated_at = 2025-06-01 10:30:00" in result.stderr  # in the throw-away ledger
    assert shop.cursors() == before
