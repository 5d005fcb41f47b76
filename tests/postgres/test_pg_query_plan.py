"""An SQL source in the ledger's own database is read by digest on the server (syncer/plan/query.py).

The plan must be exactly the plan of a full mapping (the source read the ordinary way); only
the rows the ledger does not know as synced cross the wire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from syncer.config import Config, load_config
from syncer.errors import SourceError
from syncer.ledger import Ledger
from syncer.models import ChangeAction, FieldChange, RecordKind
from syncer.plan import build_plan
from syncer.plan.query import QueryStream, in_ledger
from syncer.plan.streams import Selection
from tests.plan.test_digest_plan import (
    NAME,
    course_line,
    outcome_of,
    plan_and_check,
    stat_key,
    stat_line,
    sync,
    write_config,
)

pytestmark = pytest.mark.postgres

COURSES = "SELECT course_id, title, tags, status, note FROM courses ORDER BY id"
STATS = "SELECT course_id, email, pct, seconds, started, finished, note FROM stats ORDER BY id;\n"
ROWS = 4 + 12


def _config(root: Path, url: str, source_url: str | None = None) -> Config:
    """The digest tests' config with both sources as queries on ``source_url`` and the ledger at ``url``."""

    def sql(query: str) -> str:
        return f'sql: {{url: "{source_url or url}", query: "{query.strip()}"}}'

    write_config(root, courses=sql(COURSES), stats=sql(STATS))
    path = root / "syncer.yaml"
    path.write_text(path.read_text("utf-8").replace("sqlite:///unused.db", url), "utf-8")
    return load_config(path)


class Tables:
    """The two source tables in the test's schema."""

    def __init__(self, admin: Engine, schema: str) -> None:
        self.admin, self.schema = admin, schema
        self.run(
            "CREATE TABLE courses (id serial PRIMARY KEY, course_id text, title text, tags text,"
            " status text, note text)"
        )
        self.run(
            "CREATE TABLE stats (id serial PRIMARY KEY, course_id text, email text, pct text,"
            " seconds text, started text, finished text, note text)"
        )
        for n in range(1, 5):
            self.add("courses", course_line(n).values)
        for c in range(1, 5):
            for u in range(1, 4):
                self.add("stats", stat_line(c, u).values)

    def run(self, sql: str, **params: Any) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'SET search_path = "{self.schema}"'))
            conn.execute(text(sql), params)

    def add(self, table: str, values: list[str] | None) -> None:
        assert values is not None
        names = ", ".join(f":v{i}" for i in range(len(values)))
        columns = (
            "course_id, title, tags, status, note"
            if table == "courses"
            else ("course_id, email, pct, seconds, started, finished, note")
        )
        self.run(
            f"INSERT INTO {table} ({columns}) VALUES ({names})", **{f"v{i}": v for i, v in enumerate(values)}
        )


@pytest.fixture
def tables(pg_admin: Engine, pg_schema: str) -> Tables:
    return Tables(pg_admin, pg_schema)


def test_only_what_changed_is_mapped_and_the_plan_is_the_full_mappings(
    tmp_path: Path, pg_url: str, tables: Tables
) -> None:
    config = _config(tmp_path, pg_url)
    ledger = Ledger.open(pg_url)
    try:
        snap, unmapped = plan_and_check(config, ledger)  # a first plan: every row mapped, with digests
        assert unmapped == 0 and snap["has_changes"]
        sync(config, ledger)
        snap, unmapped = plan_and_check(config, ledger)
        assert (snap["has_changes"], unmapped) == (False, ROWS)  # not one row fetched

        tables.run("UPDATE stats SET pct = '80' WHERE id = 5")
        tables.run("DELETE FROM courses WHERE id = 1")
        snap, unmapped = plan_and_check(config, ledger)
        assert unmapped == ROWS - 2
        assert [(c.action, c.key) for c in snap["changes"]] == [
            (ChangeAction.CHANGED, stat_key("C002", 2)),
            (ChangeAction.ARCHIVE, "C001"),
        ]
        assert snap["changes"][0].fields == (FieldChange("progress", 50, 80),)

        # A duplicate key across an unchanged row and a new one, an invalid row, a new statistic.
        tables.add("stats", stat_line(3, 1, pct=90, finished=10).values)
        tables.add("stats", [*stat_line(4, 4, note="x").values[:2], "lots", "1", "a", "b", ""])
        tables.add("stats", stat_line(4, 5).values)
        snap, unmapped = plan_and_check(config, ledger)
        assert unmapped < ROWS - 2
        assert snap["invalid_total"] > 0

        sync(config, ledger, outcome_of(["ok", "rejected", "pending"]))
        plan_and_check(config, ledger)
        plan_and_check(config, ledger, retry_rejected=True)
    finally:
        ledger.close()


def test_a_query_elsewhere_is_mapped_in_full(tmp_path: Path, pg_url: str, tables: Tables) -> None:
    # Another URL (here: another application_name) is another database as far as syncer knows.
    other = pg_url.replace("application_name=", "application_name=other_")
    config = _config(tmp_path, pg_url, other)
    assert not in_ledger(config.sources["progress"], pg_url)
    assert in_ledger(_config(tmp_path, pg_url).sources["progress"], pg_url)
    ledger = Ledger.open(pg_url)
    try:
        sync(config, ledger)
        snap, unmapped = plan_and_check(config, ledger)
        assert (snap["has_changes"], unmapped) == (False, 0)
    finally:
        ledger.close()


def test_a_faulty_query_is_reported_by_the_ordinary_reader(
    tmp_path: Path, pg_url: str, tables: Tables
) -> None:
    config = _config(tmp_path, pg_url)
    ledger = Ledger.open(pg_url)
    try:
        sync(config, ledger)
        path = tmp_path / "syncer.yaml"
        # The skim cannot digest it: the ordinary reader reads it and reports the error as usual.
        path.write_text(path.read_text("utf-8").replace("FROM stats", "FROM nope"), "utf-8")
        with pytest.raises(SourceError, match="nope"), build_plan(load_config(path), ledger):
            pass
    finally:
        ledger.close()


def test_a_row_that_moved_between_the_two_reads_is_a_source_error(
    tmp_path: Path, pg_url: str, tables: Tables
) -> None:
    config = _config(tmp_path, pg_url)
    integration = config.integrations[NAME]
    assert integration.stats is not None
    stream = QueryStream(integration, RecordKind.STAT, integration.stats, config.sources["progress"])
    with pytest.raises(SourceError, match="changed while the plan read them"):
        list(stream.runs(Selection([(3, 12345)])))
    with pytest.raises(SourceError, match="changed while the plan read them"):
        list(stream.runs(Selection([(ROWS + 1, 12345)])))  # fewer rows than the first read
