"""The ledger checks: the driver installed, the database reachable, its schema, and writable.

Never ``Ledger.open``: that migrates. The engine is the one syncer would use
(``create_ledger_engine``); a SQLite file that does not exist yet is not created (its folder is
tried instead), and the write test is a transaction that is always rolled back: a probe table
created, the ledger's state row set to itself, nothing committed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from syncer.doctor.checks import Check, CheckStatus
from syncer.ledger import Base, alembic_config
from syncer.ledger.base import describe_error
from syncer.ledger.migrate import create_ledger_engine
from syncer.secrets import redact_url

__all__ = ["check_ledger"]

LEDGER, WRITABLE = "ledger", "ledger writable"
_PROBE_TABLE = "syncer_doctor_probe"
_SQLITE_BUSY_MS = 2000  # a doctor does not wait 30 s behind a running apply
_SYNCER_TABLES = frozenset(Base.metadata.tables)
_URL_FIX = "write `ledger:` as sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB in the config"


def _user() -> str:
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    return "the user running syncer" + (f" (uid {uid})" if uid is not None else "")


def check_ledger(url: str) -> list[Check]:
    """The ledger checks, in order: reachable at a known schema, then writable."""
    where = redact_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        return [Check(LEDGER, CheckStatus.FAIL, f"{where}: not a database URL ({exc})", (_URL_FIX,))]
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        detail = f"{where}: {backend} is not supported"
        return [Check(LEDGER, CheckStatus.FAIL, detail, ("use SQLite or PostgreSQL: " + _URL_FIX,))]
    try:
        engine = create_ledger_engine(url)
    except ImportError as exc:
        driver = parsed.get_driver_name()
        detail = f"{where}: the {driver} driver is not installed ({exc.name or exc})"
        fix = "pip install 'syncer360[postgres]' (from a clone: pip install '.[postgres]')"
        if driver != "psycopg":
            fix = f"pip install {exc.name or driver}, or use postgresql+psycopg:// ({fix.split(' (')[0]})"
        return [Check(LEDGER, CheckStatus.FAIL, detail, (fix,))]
    except (SQLAlchemyError, ValueError) as exc:
        return [Check(LEDGER, CheckStatus.FAIL, f"{where}: {describe_error(exc, url)}", (_URL_FIX,))]
    try:
        if backend == "sqlite":
            return _check_sqlite(engine, parsed, where)
        return _check_server(engine, url, where)
    finally:
        engine.dispose()


# -- SQLite ------------------------------------------------------------------------------------


def _try_create_in(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (one is created and removed), else why not."""
    try:
        handle, name = tempfile.mkstemp(prefix=".syncer-doctor-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(handle)
    os.unlink(name)
    return None


def _try_open_for_writing(path: Path) -> str | None:
    """None when ``path`` opens for reading and writing (nothing is written), else why not."""
    try:
        with open(path, "r+b"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _check_sqlite(engine: Engine, parsed: URL, where: str) -> list[Check]:
    database = parsed.database
    if not database or database == ":memory:":
        fix = "point `ledger:` at a file (sqlite:///PATH) or a PostgreSQL database"
        return [Check(LEDGER, CheckStatus.WARN, f"{where}: in memory, forgotten when syncer exits", (fix,))]
    path = Path(database)
    folder = path.parent
    if not folder.is_dir():
        fix = f"create the folder {folder}, writable by {_user()}, or change `ledger:` in the config"
        return [Check(LEDGER, CheckStatus.FAIL, f"{path}: the folder {folder} does not exist", (fix,))]
    folder_problem = _try_create_in(folder)
    folder_fix = (
        f"make {folder} writable by {_user()}: SQLite creates the ledger there and writes its "
        f"-wal and -shm files beside it",
    )
    if not path.exists():
        if folder_problem is not None:
            detail = f"{path} does not exist and cannot be created in {folder}: {folder_problem}"
            return [Check(LEDGER, CheckStatus.FAIL, detail, folder_fix)]
        detail = f"{path} does not exist yet: the next run creates it (its folder is writable)"
        return [Check(LEDGER, CheckStatus.OK, detail)]
    schema, tables = _check_schema(engine, str(path))
    if folder_problem is not None:
        writable = Check(
            WRITABLE, CheckStatus.FAIL, f"{folder} is not writable: {folder_problem}", folder_fix
        )
        if schema.status is not CheckStatus.FAIL:
            return [schema, writable]
        # A WAL ledger cannot even be read without its -shm file, which it cannot create there.
        detail = f"{path} cannot be opened: its folder {folder} is not writable ({folder_problem})"
        return [
            Check(LEDGER, CheckStatus.FAIL, detail, folder_fix),
            Check(WRITABLE, CheckStatus.SKIP, "the ledger cannot be opened"),
        ]
    file_problem = _try_open_for_writing(path)
    if file_problem is not None:
        file_fix = (f"make {path} readable and writable by {_user()}",)
        detail = f"{path} cannot be written: {file_problem}"
        return [schema, Check(WRITABLE, CheckStatus.FAIL, detail, file_fix)]
    if tables is None:
        return [schema, Check(WRITABLE, CheckStatus.SKIP, "the ledger could not be read")]

    def begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    fix = f"make {path} and its folder {folder} writable by {_user()}"
    return [schema, _check_write(engine, str(path), tables, begin, str(path), fix)]


# -- PostgreSQL --------------------------------------------------------------------------------


def _check_server(engine: Engine, url: str, where: str) -> list[Check]:
    schema, tables = _check_schema(engine, url)
    if tables is None:
        return [schema, Check(WRITABLE, CheckStatus.SKIP, "the ledger could not be read")]
    try:
        with engine.connect() as conn:
            current = str(conn.execute(text("SELECT current_schema()")).scalar())
    except SQLAlchemyError as exc:
        return [schema, Check(WRITABLE, CheckStatus.FAIL, f"{where}: {describe_error(exc, url)}")]

    def begin(conn: Connection) -> None:
        conn.begin()
        conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")

    fix = (
        f"grant the database user of `ledger:` CREATE on the schema {current} and INSERT, UPDATE, "
        "DELETE on syncer's tables there"
    )
    return [schema, _check_write(engine, url, tables, begin, f"{where} (schema {current})", fix)]


# -- both --------------------------------------------------------------------------------------


def _revisions() -> tuple[str | None, set[str]]:
    """The head and every revision this syncer's migrations know."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), {script.revision for script in scripts.walk_revisions()}


def _check_schema(engine: Engine, url: str) -> tuple[Check, set[str] | None]:
    """Reachable, and at which revision; the tables found (None when it could not be read)."""
    where = redact_url(url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            revision = None
            if "alembic_version" in tables:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        detail = f"{where}: cannot read: {describe_error(exc, url)}"
        lowered = detail.lower()
        if "not a database" in lowered or "malformed" in lowered:
            fix = (
                "this file is not a SQLite database or is damaged: restore it from a backup, or move "
                "it aside and let the next run rebuild the ledger from the platform (docs/refresh.md)",
            )
        elif engine.dialect.name == "sqlite":
            fix = (f"check that {_user()} can read the file and its folder",)
        else:
            fix = (
                "check that the database server is up and reachable, and the user, password and "
                "database named in `ledger:`",
            )
        return Check(LEDGER, CheckStatus.FAIL, detail, fix), None
    head, known = _revisions()
    if revision is None:
        if tables & _SYNCER_TABLES:
            fix = (
                "it holds syncer's tables without their schema revision: restore it from a backup, or "
                "point `ledger:` at a new database and let the next run rebuild it from the platform",
            )
            return Check(LEDGER, CheckStatus.FAIL, f"{where}: not a syncer ledger, or damaged", fix), tables
        detail = f"{where}: reachable, no ledger in it yet: the next run creates its tables"
        return Check(LEDGER, CheckStatus.OK, detail), tables
    if revision == head:
        return Check(LEDGER, CheckStatus.OK, f"{where}: reachable, schema at the head ({head})"), tables
    if revision in known:
        detail = f"{where}: reachable, schema at {revision}, head {head}: will be migrated by the next run"
        return Check(LEDGER, CheckStatus.OK, detail), tables
    fix = (
        "upgrade syncer on this machine (pip install -U syncer360): a newer syncer wrote this ledger; "
        "or, if the database belongs to another application using Alembic, give syncer one of its own",
    )
    detail = f"{where}: schema at revision {revision}, unknown to this syncer (its head is {head})"
    return Check(LEDGER, CheckStatus.FAIL, detail, fix), tables


def _check_write(
    engine: Engine, url: str, tables: set[str], begin: Callable[[Connection], None], what: str, fix: str
) -> Check:
    """A write transaction, always rolled back: a probe table, and the ledger's state row set to itself."""
    try:
        with engine.connect() as conn:
            begin(conn)
            try:
                conn.exec_driver_sql(f"CREATE TABLE {_PROBE_TABLE} (x INTEGER)")
                if "ledger_state" in tables:
                    conn.exec_driver_sql("UPDATE ledger_state SET id = id")
            finally:
                conn.rollback()
    except SQLAlchemyError as exc:
        line = describe_error(exc, url)
        if "locked" in line.lower() or "lock timeout" in line.lower():
            detail = f"busy: another process is writing to it, so the write test could not run ({line})"
            return Check(WRITABLE, CheckStatus.WARN, detail)
        return Check(WRITABLE, CheckStatus.FAIL, f"{what}: a test write failed: {line}", (fix,))
    return Check(WRITABLE, CheckStatus.OK, f"{what}: a test write (rolled back) succeeded")
