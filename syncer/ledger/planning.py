"""The plan's writes to the ledger's tables that work from the plan's own temporary tables.

A plan stages and compares in temporary tables of its own (syncer/plan/tables.py) and reads the
ledger's. It writes them in two ways only: the ``Ledger``'s methods (its invalid rows, its held
statistics), and the statements here, which join the plan's staged records: recording the
source digest of the records found unchanged, and adopting the statistics a refresh found on the
platform as they are (syncer/refresh).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, update
from sqlalchemy.engine import Connection

from syncer.ledger.schema import records
from syncer.ledger.writes import _upsert, bump_generations
from syncer.models import RecordStatus

__all__ = ["ADOPTED_COLUMNS", "COUNTED", "adopt_statistics", "remember_digests"]

COUNTED = {"preserve_rowcount": True}
"""Execution options of an INSERT ... SELECT whose rowcount is read: SQLAlchemy 2 reports -1 for
an INSERT on PostgreSQL (psycopg) unless asked to keep the driver's count."""

ADOPTED_COLUMNS = (
    "integration", "kind", "key", "hash", "payload", "status", "live", "origin", "source_digest",
    "grp", "first_at", "att_end", "att_done", "created_at", "updated_at",
)  # fmt: skip
"""The columns of ``records`` that ``adopt_statistics``'s query gives, in its order."""


def adopt_statistics(conn: Connection, rows: Any, integrations: Iterable[str]) -> int:
    """Record as synced the statistics a refresh found on the platform with the same content.

    ``rows`` is a SELECT of ``ADOPTED_COLUMNS`` over the plan's temporary tables, of the
    statistics of ``integrations`` (their generations are bumped); a key the
    ledger already holds is left alone (the ledger's own record wins). One statement, in the
    database: nothing per row in Python. Commits on ``conn``; returns how many were recorded.
    """
    stmt = _upsert(conn.dialect.name, records).from_select(list(ADOPTED_COLUMNS), rows)
    try:
        bump_generations(conn, integrations)
        count = conn.execute(stmt.on_conflict_do_nothing(), execution_options=COUNTED).rowcount
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return max(0, count or 0)


def remember_digests(conn: Connection, staged: Table, unchanged: ColumnElement[bool]) -> int:
    """Give synced records the source digest of the staged rows they were found unchanged against.

    ``staged`` has the columns ``integration``, ``kind``, ``key``, ``hash`` and ``digest`` (of
    the source row, NULL when unknown); ``unchanged`` selects its rows that were mapped and need
    nothing sent. A record is updated when it is synced with the same hash and another digest.
    Commits on ``conn`` (rolls back on failure); returns the number of records updated.
    """
    r, s = records.c, staged.c
    stmt = (
        update(records)
        .where(
            r.integration == s.integration,
            r.kind == s.kind,
            r.key == s.key,
            unchanged,
            s.digest.is_not(None),
            r.status == RecordStatus.SYNCED,
            r.hash == s.hash,
            r.source_digest.is_distinct_from(s.digest),
        )
        .values(source_digest=s.digest)
    )
    try:
        count = conn.execute(stmt).rowcount
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return max(0, count or 0)
