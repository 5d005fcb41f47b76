"""The ledger checks of `syncer doctor`, on SQLite files in every state: never migrated, never written."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text

from syncer.doctor import CheckStatus
from syncer.doctor.ledger import check_ledger
from syncer.ledger import Ledger, alembic_config


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def outcome(url: str) -> list[tuple[str, CheckStatus, str]]:
    return [(check.name, check.status, check.detail) for check in check_ledger(url)]


def test_at_head_reachable_and_writable_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    ledger = Ledger.open(url_of(path))
    generation = ledger.generation()
    ledger.close()
    (schema, writable) = check_ledger(url_of(path))
    assert schema.status is CheckStatus.OK and "schema at the head" in schema.detail
    assert (writable.status, writable.detail) == (
        CheckStatus.OK,
        f"{path}: a test write (rolled back) succeeded",
    )
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "syncer_doctor_probe" not in tables
    ledger = Ledger.open(url_of(path))
    assert ledger.generation() == generation
    ledger.close()
    assert not list(tmp_path.glob(".syncer-doctor-*"))


def test_behind_head_will_be_migrated_and_is_not(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    command.upgrade(alembic_config(url_of(path)), "0001")
    schema, writable = check_ledger(url_of(path))
    assert schema.status is CheckStatus.OK
    assert "schema at 0001, head " in schema.detail and schema.detail.endswith(
        "will be migrated by the next run"
    )
    assert writable.status is CheckStatus.OK
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def test_newer_than_this_syncer(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    Ledger.open(url_of(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    schema = check_ledger(url_of(path))[0]
    assert schema.status is CheckStatus.FAIL
    assert "schema at revision 9999, unknown to this syncer" in schema.detail
    assert schema.fix[0].startswith("upgrade syncer on this machine (pip install -U syncer360)")


def test_syncer_tables_without_a_revision_are_not_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    Ledger.open(url_of(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE alembic_version")
    schema = check_ledger(url_of(path))[0]
    assert (schema.status, schema.detail) == (
        CheckStatus.FAIL,
        f"{path}: not a syncer ledger, or damaged",
    )


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    path.write_bytes(b"this is not SQLite" * 100)
    schema, writable = check_ledger(url_of(path))
    assert schema.status is CheckStatus.FAIL
    assert "file is not a database" in schema.detail
    assert "not a SQLite database or is damaged" in schema.fix[0]
    assert writable.status is CheckStatus.SKIP


def test_an_empty_database_gets_its_tables_at_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    sqlite3.connect(path).close()
    assert outcome(url_of(path)) == [
        (
            "ledger",
            CheckStatus.OK,
            f"{path}: reachable, no ledger in it yet: the next run creates its tables",
        ),
        ("ledger writable", CheckStatus.OK, f"{path}: a test write (rolled back) succeeded"),
    ]


@pytest.mark.parametrize(
    ("url", "status", "detail", "fix"),
    [
        pytest.param(
            "mysql://u@h/db",
            CheckStatus.FAIL,
            "mysql://u@h/db: mysql is not supported",
            "use SQLite or PostgreSQL: write `ledger:` as sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB in the config",
            id="unsupported",
        ),
        pytest.param(
            "sqlite://",
            CheckStatus.WARN,
            "sqlite://: in memory, forgotten when syncer exits",
            "point `ledger:` at a file (sqlite:///PATH) or a PostgreSQL database",
            id="memory",
        ),
        pytest.param(
            "not a url",
            CheckStatus.FAIL,
            None,
            "write `ledger:` as sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB in the config",
            id="not-a-url",
        ),
    ],
)
def test_urls(url: str, status: CheckStatus, detail: str | None, fix: str) -> None:
    (check,) = check_ledger(url)
    assert check.status is status
    if detail is not None:
        assert check.detail == detail
    assert check.fix == (fix,)


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        pytest.param(
            "postgresql+psycopg://u:pw@127.0.0.1/db",
            "pip install 'syncer360[postgres]' (from a clone: pip install '.[postgres]')",
            id="psycopg",
        ),
        pytest.param(
            "postgresql+pg8000://u:pw@127.0.0.1/db",
            "pip install pg8000, or use postgresql+psycopg:// (pip install 'syncer360[postgres]')",
            id="another",
        ),
    ],
)
def test_a_missing_driver_says_what_to_install(url: str, fix: str) -> None:
    driver = url.split("+", 1)[1].split(":", 1)[0]
    if importlib.util.find_spec(driver) is not None:
        pytest.skip(f"{driver} is installed here")
    (check,) = check_ledger(url)
    assert check.status is CheckStatus.FAIL
    masked = url.replace(":pw@", ":***@")
    assert check.detail == f"{masked}: the {driver} driver is not installed ({driver})"
    assert check.fix == (fix,)


def test_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "syncer.db"
    (check,) = check_ledger(url_of(path))
    assert (check.status, check.detail) == (
        CheckStatus.FAIL,
        f"{path}: the folder {path.parent} does not exist",
    )
    assert check.fix[0].startswith(
        f"create the folder {path.parent}, writable by the user running syncer (uid "
    )
    assert not path.parent.exists()


def test_postgresql_schema_empty_then_at_head(pg_url: str, pg_schema: str) -> None:
    where = pg_url.split("?", 1)[0]
    first = outcome(pg_url)
    assert [(name, status) for name, status, _ in first] == [
        ("ledger", CheckStatus.OK),
        ("ledger writable", CheckStatus.OK),
    ]
    assert first[0][2].endswith("reachable, no ledger in it yet: the next run creates its tables")
    assert f"(schema {pg_schema}): a test write (rolled back) succeeded" in first[1][2]
    assert where in first[1][2]
    Ledger.open(pg_url).close()
    schema, writable = check_ledger(pg_url)
    assert schema.status is CheckStatus.OK and "schema at the head" in schema.detail
    assert writable.status is CheckStatus.OK
    assert "syncer_doctor_probe" not in _pg_tables(pg_url)


def test_postgresql_user_without_privileges(pg_admin: Engine, pg_url: str, pg_schema: str) -> None:
    Ledger.open(pg_url).close()
    role = f"{pg_schema}_reader"
    with pg_admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {pg_schema} TO {role}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {pg_schema} TO {role}"))
    try:
        schema, writable = check_ledger(pg_url.replace("postgres@", f"{role}@", 1))
        assert schema.status is CheckStatus.OK
        assert writable.status is CheckStatus.FAIL
        assert "permission denied for schema" in writable.detail
        assert writable.fix == (
            f"grant the database user of `ledger:` CREATE on the schema {pg_schema} and INSERT, UPDATE, "
            "DELETE on syncer's tables there",
        )
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def _pg_tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
