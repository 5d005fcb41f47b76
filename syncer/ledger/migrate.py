"""Opening a ledger database: its engine, the SQLite open lock, and the Alembic migration to head.

``Ledger.open`` (syncer/ledger/base.py) calls these in order. The Alembic scripts are found through
``syncer.resources.migrations_dir`` (a checkout's ``migrations/`` or a wheel's ``syncer/_data``);
Alembic itself is imported only when a ledger is not at ``SCHEMA_REVISION``, and not for a new
SQLite ledger either (``_create_new``: the models at that revision).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from syncer.errors import LedgerUnusableError
from syncer.resources import migrations_dir
from syncer.secrets import redact_url

__all__ = [
    "SCHEMA_REVISION",
    "alembic_config",
    "create_ledger_engine",
    "sqlite_open_lock",
    "upgrade",
]

# An arbitrary constant: the PostgreSQL advisory lock key that serialises migrations.
_MIGRATION_LOCK_KEY = 360_0001


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_ledger_engine(url: str) -> Engine:
    """The engine of the ledger at ``url``: JSON by orjson; on SQLite, foreign keys, WAL, busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, json_serializer=_json_serializer, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if parsed.database and parsed.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, json_serializer=_json_serializer, pool_pre_ping=True)


@contextlib.contextmanager
def sqlite_open_lock(url: str) -> Iterator[None]:
    """Serialise opening one SQLite ledger file across processes (a few milliseconds).

    Two runs starting together on a fresh file both switch it to WAL and migrate it; SQLite
    answers one of them "database is locked" at once (switching the journal mode does not wait
    on the busy timeout). An OS lock on ``<ledger>.open.lock`` (the ``filelock`` library:
    ``flock`` or ``msvcrt``), released by the kernel if its holder dies, makes the second wait for
    the first and then find the schema at head.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    path = Path(str(parsed.database))
    # filelock would create a missing folder: leave that to SQLite's own error about the ledger.
    lock = FileLock(
        path.with_name(path.name + ".open.lock"), mode=0o600, thread_local=False, preserve_lock_file=True
    )
    try:
        if not path.parent.is_dir():
            raise FileNotFoundError(path.parent)
        lock.acquire()  # blocks, polling, until the holder releases it or dies
    except OSError:
        yield  # a read-only or missing folder: nothing to serialise against, SQLite reports the rest
        return
    try:
        yield
    finally:
        lock.release(force=True)


def alembic_config(url: str | None = None) -> Any:
    """An Alembic Config whose script location is the installed ``migrations/`` folder."""
    # Imported here, not at the top: a ledger already at SCHEMA_REVISION opens without Alembic.
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


SCHEMA_REVISION = "0009"
"""The newest migration in migrations/versions (a test checks): a ledger already there opens
without importing Alembic (a tenth of a second on every command)."""


def _at_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:  # no such table yet (a new ledger): let Alembic tell
        return None


def upgrade(engine: Engine, url: str) -> None:
    """Bring the ledger's schema to the Alembic head; one process at a time migrates."""
    if _at_revision(engine) == SCHEMA_REVISION:
        return
    if engine.dialect.name == "sqlite" and _create_new(engine):
        return
    # Imported here, past the check above: Alembic takes a tenth of a second to import.
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    if current is not None and current not in {
        s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()
    }:
        raise LedgerUnusableError(
            f"ledger {redact_url(url)} is at schema revision {current}, newer than this syncer knows "
            f"(its newest is {head}): a newer syncer wrote it; upgrade syncer (pip install -U syncer)"
        )
    if engine.dialect.name == "sqlite":
        # One transaction, taken exclusively up front: a second process starting at the same
        # time waits (busy timeout), then finds the schema at head and does nothing.
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        return
    with _pg_migration_lock(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _create_new(engine: Engine) -> bool:
    """Create a new SQLite ledger (a file with no table yet) at ``SCHEMA_REVISION``; False if it has tables.

    The schema comes from the models (syncer/ledger/schema.py), with the rows the migrations
    insert and Alembic's version row, in one exclusive transaction: a process starting at the
    same time waits, then finds it at head. No Alembic: the run that creates a ledger, often the
    first sync, does not carry its 11 MB of modules. Tests check that such a ledger equals a
    migrated one (``alembic check``, the same tables, indexes and rows).
    """
    from syncer.ledger.schema import Base, ledger_state

    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        if conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'table'").scalar():
            conn.rollback()
            return False
        Base.metadata.create_all(conn)
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES (?)", (SCHEMA_REVISION,))
        conn.execute(ledger_state.insert().values(id=1))
        conn.commit()
    return True


@contextlib.contextmanager
def _pg_migration_lock(engine: Engine) -> Iterator[None]:
    # Two processes starting together must not both migrate: a session-level advisory lock.
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
