"""Incremental SQL sources on PostgreSQL: a ``timestamptz`` cursor, an integer ``version`` cursor
with a numeric overlap, and a source in the ledger's own database (full reads digested on the
server, incremental ones mapped in the planner), each applied to the simulator with a
PostgreSQL ledger in the test's schema.

The warehouse tables live in the test's schema too. A source URL that differs from the ledger's
only by a harmless parameter (``connect_timeout``) is read as any other database; the very same
URL takes the on-server path (syncer/plan/query.py ``in_ledger``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from syncer.cli import cli
from syncer.simulator import SimulatorSettings, SimulatorThread
from syncer.sources.incremental import decode
from tests.project import COURSE_FIELDS, STAT_FIELDS, config_text, reset_syncer_logger

pytestmark = pytest.mark.postgres

API_ID = "c3" * 12
BASE = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
COURSES = 3
LEARNERS = 3
STATS = COURSES * LEARNERS


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """Fast operations, no rate limit."""
    return SimulatorSettings(op_seconds=0.02, write_rate=None, read_rate=None)


@pytest.fixture(autouse=True)
def _reset_logger() -> Iterator[None]:
    yield
    reset_syncer_logger()


def started(learner: int) -> str:
    return f"2025-03-{learner:02d}T08:00:00Z"


def mail(learner: int) -> str:
    return f"u{learner}@acme.example"


@dataclass
class Shop:
    """The warehouse tables, the config and the PostgreSQL ledger of one test."""

    root: Path
    admin: Engine
    schema: str
    ledger_url: str
    sim: SimulatorThread

    def run(self, sql: str, **params: Any) -> list[Any]:
        with self.admin.connect() as conn:
            conn.execute(text(f'SET search_path = "{self.schema}"'))
            result = conn.execute(text(sql), params)
            return list(result) if result.returns_rows else []

    def seed(self) -> None:
        """Courses C1..C3; statistic ``n`` (by course, learner) written at minute ``n``, version ``n + 1``."""
        self.run("CREATE TABLE courses (course_id text PRIMARY KEY, title text)")
        self.run(
            "CREATE TABLE stats (id serial PRIMARY KEY, course_id text, email text, pct integer,"
            " seconds integer, started text, finished text, updated_at timestamptz NOT NULL,"
            " version bigint NOT NULL)"
        )
        for c in range(1, COURSES + 1):
            self.run("INSERT INTO courses VALUES (:c, :t)", c=f"C{c}", t=f"Course {c}")
        n = 0
        for c in range(1, COURSES + 1):
            for u in range(1, LEARNERS + 1):
                self.run(
                    "INSERT INTO stats (course_id, email, pct, seconds, started, finished, updated_at,"
                    " version) VALUES (:c, :m, 50, 60, :s, :f, :at, :v)",
                    c=f"C{c}",
                    m=mail(u),
                    s=started(u),
                    f=f"2025-03-{u:02d}T09:00:00Z",
                    at=BASE + timedelta(minutes=n),
                    v=n + 1,
                )
                n += 1

    def change(self, n: int, pct: int, **moves: Any) -> tuple[str, str, str]:
        """Statistic ``n`` (0-based) gets ``pct`` and the cursor values in ``moves``; its key."""
        sets = ", ".join(["pct = :pct", *(f"{column} = :{column}" for column in moves)])
        self.run(f"UPDATE stats SET {sets} WHERE id = :id", pct=pct, id=n + 1, **moves)
        ((course, email, first),) = self.run(
            "SELECT course_id, email, started FROM stats WHERE id = :id", id=n + 1
        )
        return (course, email, first.replace("Z", ".000Z"))

    def write_config(self, source_url: str, **stats_sql: Any) -> Path:
        api = {
            "base_url": self.sim.base_url,
            "client_id": "demo-client",
            "client_secret": "${SYNCER_E2E_SECRET}",
        }
        columns = "course_id, email, pct, seconds, started, finished, updated_at, version"
        query = f"SELECT {columns} FROM stats ORDER BY id"
        sources = {
            "catalog": {"sql": {"url": source_url, "query": "SELECT course_id, title FROM courses"}},
            "progress": {"sql": {"url": source_url, "query": query, **stats_sql}},
        }
        acme = {
            "id": API_ID,
            "courses": {"source": "catalog", "fields": COURSE_FIELDS},
            "stats": {"source": "progress", "fields": STAT_FIELDS},
        }
        path = self.root / "syncer.yaml"
        path.write_text(config_text(api, self.ledger_url, {"acme": acme}, sources), encoding="utf-8")
        return path

    @property
    def config(self) -> Path:
        return self.root / "syncer.yaml"

    def apply(self, *args: str) -> Result:
        result = CliRunner().invoke(
            cli, ["apply", str(self.config), "--poll-seconds", "0.01", *args], prog_name="syncer"
        )
        assert result.exit_code == 0, result.stdout + result.stderr
        return result

    def plan(self) -> dict[str, Any]:
        result = CliRunner().invoke(cli, ["plan", str(self.config), "--format", "json"], prog_name="syncer")
        assert result.exit_code == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def cursor(self) -> Any:
        """The statistics cursor the ledger holds, decoded (None: none recorded)."""
        rows = self.run("SELECT value FROM source_cursors WHERE kind = 'stat' AND source = 'progress'")
        return decode(rows[0][0]) if rows and rows[0][0] is not None else None

    def sent(self) -> list[tuple[str, str, str]]:
        """The key of every statistic the platform received, in order."""
        ops = sorted(self.sim.state.operations.values(), key=lambda op: op.seq)
        return [
            (i["courseIdentifier"]["value"], i["userIdentifier"]["value"], i["firstActivityAt"])
            for op in ops
            if op.type.value == "importExternalStatistics"
            for i in op.items
        ]


@pytest.fixture
def shop(
    tmp_path: Path,
    pg_admin: Engine,
    pg_schema: str,
    pg_url: str,
    sim_thread: SimulatorThread,
    monkeypatch: pytest.MonkeyPatch,
) -> Shop:
    monkeypatch.setenv("SYNCER_E2E_SECRET", "demo-secret")
    sim_thread.state.add_integration(_id=API_ID, externalPlatform="LMS acme")
    made = Shop(tmp_path, pg_admin, pg_schema, pg_url, sim_thread)
    made.seed()
    return made


def elsewhere(url: str) -> str:
    """The same database under another URL: not the ledger's, for ``in_ledger``."""
    return f"{url}&connect_timeout=10"


def stat_read(plan: dict[str, Any]) -> dict[str, Any]:
    (read,) = [r for r in plan["reads"] if r["kind"] == "stat"]
    return read


def test_a_timestamptz_cursor(shop: Shop) -> None:
    shop.write_config(elsewhere(shop.ledger_url), cursor="updated_at")
    shop.apply()
    assert len(shop.sent()) == STATS
    recorded = shop.cursor()
    assert isinstance(recorded, datetime) and recorded.utcoffset() is not None
    assert recorded == BASE + timedelta(minutes=STATS - 1)

    later = BASE + timedelta(hours=5)
    changed = {
        shop.change(0, 70, updated_at=later),
        shop.change(2, 71, updated_at=later + timedelta(seconds=1)),
    }
    plan = shop.plan()
    read = stat_read(plan)
    assert read["full"] is False
    assert datetime.fromisoformat(read["since"]) == recorded - timedelta(minutes=5)
    assert datetime.fromisoformat(read["upto"]) == later + timedelta(seconds=1)
    counts = plan["integrations"][0]["stats"]
    assert (counts["changed"], counts["unchanged"]) == (2, 6)  # minutes 3..8: the overlap

    shop.apply()
    assert set(shop.sent()[STATS:]) == changed and len(shop.sent()) == STATS + 2
    assert shop.cursor() == later + timedelta(seconds=1)
    assert shop.plan()["has_changes"] is False


def test_an_integer_version_cursor_with_a_numeric_overlap(shop: Shop) -> None:
    shop.write_config(elsewhere(shop.ledger_url), cursor="version", overlap=2)
    shop.apply()
    assert shop.cursor() == STATS and isinstance(shop.cursor(), int)

    moved = {shop.change(0, 80, version=100), shop.change(1, 81, version=101)}
    late = shop.change(STATS - 2, 82)  # version 8, inside the overlap (from 9 - 2 = 7): read, sent
    missed = shop.change(3, 83)  # version 4, its version not moved: only a full read sees it
    plan = shop.plan()
    read = stat_read(plan)
    assert (read["full"], read["recorded"], read["since"], read["upto"]) == (False, "9", "7", "101")
    shop.apply()
    assert sorted(shop.sent()[STATS:]) == sorted({*moved, late})
    assert shop.cursor() == 101

    shop.apply("--full")
    assert shop.sent()[STATS + 3 :] == [missed]


def test_a_source_in_the_ledgers_own_database(shop: Shop) -> None:
    shop.write_config(shop.ledger_url, cursor="updated_at")
    first = shop.apply()
    assert "read in full (first read: no cursor recorded yet)" in first.stderr
    assert len(shop.sent()) == STATS

    # A full read of it is digested on the server: rows the ledger holds as synced are not mapped
    # (the catalog's 3, always read in full, and the 9 statistics).
    full = shop.apply("--full")
    assert "statistics 0, archives 0 to send; 0 invalid rows; 0 statistics held; 12 rows known unchanged" in (
        full.stderr
    )

    later = BASE + timedelta(days=1)
    changed = {shop.change(4, 90, updated_at=later), shop.change(7, 91, updated_at=later)}
    again = shop.apply()
    assert "read incrementally: rows with updated_at from" in again.stderr
    # Incremental: mapped in the planner (only the catalog's 3 rows known unmapped), only the changes sent.
    assert "statistics 2, archives 0 to send; 0 invalid rows; 0 statistics held; 3 rows known unchanged" in (
        again.stderr
    )
    assert set(shop.sent()[STATS:]) == changed and len(shop.sent()) == STATS + 2
    assert shop.cursor() == later
    assert shop.plan()["has_changes"] is False
