"""The ledger's connection: opening (engine and migration), closing, the generations, and errors.

``LedgerBase`` is the root of ``Ledger`` (syncer/ledger/store.py): it holds the engine and turns
every SQLAlchemy error into LedgerError when it may pass (server unreachable, busy, connection
lost: exit 4) or LedgerUnusableError when a person must act (cannot be opened or created,
corrupt, read-only, newer, refused credentials: exit 1), with what to do next; the URL's password
never shows. The writes
(syncer/ledger/writes.py) and the reads (syncer/ledger/store.py) build on it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from syncer.errors import LedgerError, LedgerUnusableError
from syncer.ledger.migrate import create_ledger_engine, sqlite_open_lock, upgrade
from syncer.ledger.schema import generations_table
from syncer.secrets import redact_url

__all__ = ["LedgerBase"]


class LedgerBase:
    """An open ledger database: its engine, error translation and generation (no reads or writes)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._where = redact_url(url)

    @classmethod
    def open(cls, url: str) -> Self:
        """Connect to the ledger at ``url`` and bring its schema to the migration head."""
        where = redact_url(url)
        try:
            engine = create_ledger_engine(url)
        except ImportError as exc:
            raise LedgerUnusableError(
                f"ledger {where}: the database driver is not installed ({exc.name or exc}); "
                "for PostgreSQL: pip install 'syncer[postgres]'"
            ) from exc
        except (SQLAlchemyError, ValueError) as exc:
            raise LedgerUnusableError(
                f"ledger {where}: cannot open: {describe_error(exc, url)}; use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/DB in `ledger:`"
            ) from exc
        if engine.dialect.name not in _DIALECTS:
            engine.dispose()
            raise LedgerUnusableError(
                f"ledger {where}: {engine.dialect.name} is not supported; use SQLite or PostgreSQL"
            )
        ledger = cls(engine, url)
        try:
            with ledger.translate_errors("migrating"), sqlite_open_lock(url):
                upgrade(engine, url)
        except BaseException:
            engine.dispose()
            raise
        return ledger

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for the planner's staging queries)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """The database dialect name (``sqlite``, ``postgresql``)."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    @contextlib.contextmanager
    def translate_errors(self, doing: str) -> Iterator[None]:
        """Turn SQLAlchemy errors raised inside the block into LedgerError."""
        try:
            yield
        except (SQLAlchemyError, sqlite3.Error, UnicodeDecodeError) as exc:
            # sqlite3's own errors and a UnicodeDecodeError escape unwrapped from the connect
            # hook's PRAGMAs when the file's pages are damaged.
            raise ledger_error(exc, self._where, self._engine.url.database, doing) from exc

    def generations(self, integrations: Iterable[str]) -> dict[str, int]:
        """The generation of each of ``integrations`` (0 when never written): it changes whenever
        the integration's records or operations change, and never for another integration's."""
        names = sorted(set(integrations))
        found: dict[str, int] = {}
        if names:
            t = generations_table
            with self.translate_errors("reading the generation"), self._engine.connect() as conn:
                query = select(t.c.integration, t.c.generation).where(t.c.integration.in_(names))
                found = {str(name): int(value) for name, value in conn.execute(query)}
        return {name: found.get(name, 0) for name in names}

    def generation(self, integrations: Iterable[str] | None = None) -> int:
        """The sum of the generations of ``integrations`` (of all when None): it grows whenever one
        of them is written, as no generation ever goes down."""
        if integrations is not None:
            return sum(self.generations(integrations).values())
        with self.translate_errors("reading the generation"), self._engine.connect() as conn:
            total = conn.execute(select(func.coalesce(func.sum(generations_table.c.generation), 0)))
            return int(total.scalar_one())


_DIALECTS = ("sqlite", "postgresql")

# PostgreSQL SQLSTATE classes and codes that a rerun may get past (08: connection exception,
# 40: transaction rollback such as a deadlock or serialization failure, 53: insufficient
# resources, 57P0x: the server shutting down or restarting); any other refusal needs a person.
_PG_TRANSIENT = ("08", "40", "53", "57P01", "57P02", "57P03")
# SQLite: only a busy database passes by itself; a file that cannot be opened, is read-only,
# damaged or full stays so until someone acts.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "busy")


def ledger_error(exc: Exception, where: str, database: str | None, doing: str) -> LedgerError:
    """The LedgerError for ``exc``: transient (exit 4) or needing a person (exit 1), with the fix.

    ``where`` is the ledger's URL with its password masked; ``database`` its SQLite file, if any.
    """
    detail = describe_error(exc, where)
    prefix = f"ledger {where}: {doing} failed: {detail}"
    orig = exc if isinstance(exc, sqlite3.Error | UnicodeDecodeError) else getattr(exc, "orig", None)
    if isinstance(orig, UnicodeDecodeError):
        return LedgerUnusableError(f"{prefix}; {_sqlite_fix('corrupt', database)}")
    if isinstance(orig, sqlite3.Error):
        text_ = str(orig).lower()
        if any(mark in text_ for mark in _SQLITE_TRANSIENT):
            return LedgerError(f"{prefix}; another process holds it busy: safe to rerun")
        return LedgerUnusableError(f"{prefix}; {_sqlite_fix(text_, database)}")
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str):
        if state.startswith(_PG_TRANSIENT):
            return LedgerError(f"{prefix}; the database server may be down or restarting: safe to rerun")
        return LedgerUnusableError(f"{prefix}; {_pg_fix(state)}")
    if _unreachable(detail):
        return LedgerError(f"{prefix}; check that the database server is up and reachable: safe to rerun")
    if getattr(exc, "connection_invalidated", False):
        return LedgerError(f"{prefix}; the connection was lost: safe to rerun")
    return LedgerUnusableError(f"{prefix}; check the `ledger:` URL and the database")


def _unreachable(detail: str) -> bool:
    # A refused or timed-out connection to a server, before any SQLSTATE exists.
    text_ = detail.lower()
    return any(
        mark in text_
        for mark in ("connection refused", "timeout", "timed out", "could not connect", "connection failed")
    ) and not any(mark in text_ for mark in ("password authentication", "does not exist", "no password"))


def _sqlite_fix(text_: str, database: str | None) -> str:
    path = Path(database) if database else None
    folder = path.parent if path is not None else None
    uid = os.getuid() if hasattr(os, "getuid") else None
    user = f" (uid {uid})" if uid is not None else ""
    if "unable to open" in text_ and folder is not None and not folder.is_dir():
        return f"the folder {folder} does not exist: create it, or change `ledger:` in the config"
    if "readonly" in text_ or "read-only" in text_ or "unable to open" in text_:
        return (
            f"make {path} and its folder {folder} readable and writable by the user running syncer{user}"
            " (SQLite writes its journal beside the file)"
        )
    if "not a database" in text_ or "malformed" in text_ or "no such table" in text_ or "corrupt" in text_:
        return (
            f"{path} is not a syncer ledger or is damaged: restore it from a backup, or move it aside "
            "and let the next run rebuild it from the platform (docs/refresh.md)"
        )
    if "full" in text_:
        return f"the disk holding {path} is full: free some space"
    return f"check {path} and its folder {folder}"


def _pg_fix(state: str) -> str:
    if state.startswith("28"):
        return "the database refused the user or password in `ledger:`: fix them"
    if state == "3D000":
        return "the database named in `ledger:` does not exist: create it or fix the URL"
    if state.startswith("42501") or state == "42501":
        return "the database user lacks a privilege on the ledger's schema: grant it"
    if state == "25006":
        return "the database is read-only (a replica?): point `ledger:` at the primary"
    if state.startswith("42"):
        return "the ledger's tables are not what this syncer expects: is it a syncer ledger?"
    return "check the `ledger:` URL and the database"


def describe_error(exc: BaseException, url: str) -> str:
    """The first line of an error's message, with the password of ``url`` masked."""
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip().splitlines()
    text_ = message[0] if message else type(exc).__name__
    try:
        password = make_url(url).password
    except Exception:  # an unparsable URL has nothing more to hide than itself
        password = None
    if password:
        text_ = text_.replace(str(password), "***")
    return text_
