"""The ledger's connection: opening (engine and migration), closing, the generation, and errors.

``LedgerBase`` is the root of ``Ledger`` (syncer/ledger/store.py): it holds the engine and turns
every SQLAlchemy error into LedgerError (the URL's password never shows). The writes
(syncer/ledger/writes.py) and the reads (syncer/ledger/store.py) build on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Self

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from syncer.errors import LedgerError
from syncer.ledger.migrate import create_ledger_engine, sqlite_open_lock, upgrade
from syncer.ledger.schema import ledger_state
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
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise LedgerError(f"ledger {where}: cannot open: {_describe(exc, url)}") from exc
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
        except SQLAlchemyError as exc:
            raise LedgerError(f"ledger {self._where}: {doing} failed: {_describe(exc, self._where)}") from exc

    def generation(self) -> int:
        """The ledger generation: it changes whenever records or operations change."""
        with self.translate_errors("reading the generation"), self._engine.connect() as conn:
            return int(conn.execute(select(ledger_state.c.generation)).scalar_one())


def _describe(exc: BaseException, url: str) -> str:
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
