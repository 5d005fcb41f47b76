"""A PostgreSQL table as a source: rows stream from a server-side cursor, errors are located."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text

from syncer.config import Secret, SourceConfig, SourceKind
from syncer.errors import SourceError
from syncer.sources import SQL_BATCH_ROWS, load_columns, load_rows

pytestmark = pytest.mark.postgres

ROWS = SQL_BATCH_ROWS * 3 + 7  # several fetches, and a partial last one


def sql_source(url: str, query: str) -> SourceConfig:
    return SourceConfig(name="lms", kind=SourceKind.SQL, url=Secret(url), query=query)


@pytest.fixture
def warehouse(pg_admin: Engine, pg_schema: str, pg_url: str) -> str:
    with pg_admin.connect() as conn:
        conn.execute(
            text(f'CREATE TABLE "{pg_schema}".progress (id int PRIMARY KEY, email text, pct numeric)')
        )
        conn.execute(
            text(
                f'INSERT INTO "{pg_schema}".progress '
                "SELECT n, 'u' || n || '@x.io', n / 10.0 FROM generate_series(1, :rows) AS n"
            ),
            {"rows": ROWS},
        )
    return pg_url


def _last_query(admin: Engine, schema: str) -> str:
    with admin.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT query FROM pg_stat_activity "
                    "WHERE application_name = :s AND pid <> pg_backend_pid()"
                ),
                {"s": schema},
            ).scalar_one()
        )


def test_table_rows_columns_and_origins(warehouse: str) -> None:
    source = sql_source(warehouse, "SELECT email, pct AS progress FROM progress ORDER BY id")
    assert load_columns(source) == ["email", "progress"]
    rows = list(load_rows(source))
    assert len(rows) == ROWS
    assert rows[0].origin == "lms row 1" and rows[-1].origin == f"lms row {ROWS}"
    assert rows[41].values["email"] == "u42@x.io"
    assert float(rows[41].values["progress"]) == 4.2


def test_rows_come_from_a_server_side_cursor(pg_admin: Engine, pg_schema: str, warehouse: str) -> None:
    rows = load_rows(sql_source(warehouse, "SELECT id FROM progress ORDER BY id"))
    first = next(rows)
    assert first.values == {"id": 1}
    # The session is parked on a named cursor, fetching a batch at a time: the whole result
    # never crosses the wire at once.
    assert _last_query(pg_admin, pg_schema).upper().startswith("FETCH FORWARD")
    rest = [row.values["id"] for row in rows]
    assert rest == list(range(2, ROWS + 1))


def test_closing_early_ends_the_session(pg_admin: Engine, pg_schema: str, warehouse: str) -> None:
    rows = load_rows(sql_source(warehouse, "SELECT id FROM progress"))
    next(rows)
    rows.close()
    # The client hangs up at once; the server notices a moment later: wait for it, with a deadline.
    deadline = time.monotonic() + 10
    while _sessions(pg_admin, pg_schema):
        assert time.monotonic() < deadline, "the source's session outlived close()"
        time.sleep(0.02)


def _sessions(admin: Engine, schema: str) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :s"), {"s": schema}
            ).scalar_one()
        )


def test_query_error_is_a_source_error(warehouse: str) -> None:
    with pytest.raises(
        SourceError, match=r'^source \'lms\' \(postgresql\+psycopg://.*\): relation "nope" does not exist'
    ):
        list(load_rows(sql_source(warehouse, "SELECT * FROM nope")))
