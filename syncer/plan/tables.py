"""The plan's temporary tables in the ledger database: their definitions, the values they hold, their tuning.

A plan stages its desired records in ``syncer_staged_*`` (one row per record or invalid row, with
its ``state``), notes in ``syncer_actions_*`` what each staged record needs unless it is unchanged
(its ``action``), and reads a file by digest through two ``syncer_src_*`` tables of digests. They
are TEMPORARY: they go with the plan's connection (``Plan.discard``).
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    text,
    type_coerce,
)
from sqlalchemy.engine import Connection

from syncer.models import ChangeAction

# The state of a staged row.
OK, INVALID, DUPLICATE = "ok", "invalid", "duplicate"
# Actions that are no ChangeAction: a rejected record not retried, an unchanged one (counted,
# never written to the actions table), and the key of a row skipped by digest (never in a plan).
SKIPPED, UNCHANGED, ALSO_MAPPED = "skipped", "unchanged", "also-mapped"
SENDS = [a.value for a in (ChangeAction.NEW, ChangeAction.CHANGED, ChangeAction.RESEND, ChangeAction.RETRY)]
"""The actions whose records the plan sends."""

Tally = dict[tuple[str, str, str], int]
"""Staged rows per (integration, kind, state), kept as they are written: the summaries then
need no scan of a million-row staging table."""


STAGED_COLUMNS = (
    "stream", "integration", "kind", "key", "hash", "payload", "origin",
    "grp", "ord", "activity", "digest", "state", "field", "reason",
)  # fmt: skip
"""The staged table's columns that an insert fills, in the order of a staged row's tuple."""
STAGED_RECORD_COLUMNS = ("key", "hash", "payload", "origin", "grp", "ord", "activity", "digest")
"""The columns of a StagedRow (a valid record, as mapping streams it)."""


def staging_tables(plan_id: str) -> tuple[Table, Table]:
    """The staged records, and what each needs when it is not unchanged (id -> action)."""
    metadata = MetaData()
    actions = Table(
        f"syncer_actions_{plan_id[:12]}",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("action", String(16), nullable=False),
        # Copied from the staged row: the summaries then read this small table alone instead
        # of seeking each row of the big one.
        Column("integration", String(255), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("grp", Text, nullable=False),
        # Statistics: the attempt the platform last confirmed for the record (syncer/plan/attempts.py),
        # read by the same join with the ledger.
        Column("own_end", Text),
        Column("own_done", Boolean),
        prefixes=["TEMPORARY"],
    )
    return _staging_table(f"syncer_staged_{plan_id[:12]}", metadata), actions


def _staging_table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        # The source stream's position in the plan: details and invalid rows are listed in the
        # order of (stream, id), even after a stream is staged again (skim.settle_duplicates).
        Column("stream", Integer, nullable=False),
        Column("integration", String(255), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("key", Text, nullable=False),
        Column("hash", String(64)),
        Column("payload", Text),  # JSON text as orjson wrote it: parsed again only when sent
        Column("origin", Text, nullable=False),
        Column("grp", Text, nullable=False),
        Column("ord", Text, nullable=False),
        Column("activity", Text, nullable=False),
        Column("digest", BigInteger),  # of the source row (file sources), recorded when sent
        Column("state", String(16), nullable=False),
        Column("field", Text),
        Column("reason", Text),
        prefixes=["TEMPORARY"],
    )


def digest_table(name: str) -> Table:
    """(ordinal, digest) of records of a file read by digest."""
    return Table(
        name,
        MetaData(),
        Column("ord", Integer, primary_key=True, autoincrement=False),
        Column("digest", BigInteger, nullable=False),
        prefixes=["TEMPORARY"],
    )


def sort_threads(conn: Connection) -> None:
    """SQLite: let big sorts (the digests' and the staged index builds) use helper threads, and
    give the plan's temporary tables a 16 MB page cache.

    The other cores are idle then (mapping workers run at other times); SQLite's default is no
    helper thread, and the index builds are among the longest steps of a plan. The default
    2 MB cache makes every probe of the file's digests and every staged row read a system call
    (16 MB saves 10% of a plan; 64 MB no more, for 50 MB of RSS). Set back to SQLite's default
    once the plan is made: apply holds its batches in memory meanwhile.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA threads={min(4, os.cpu_count() or 1)}")
        conn.exec_driver_sql("PRAGMA temp.cache_size=-16384")
    elif conn.dialect.name == "postgresql":
        # The plan's statements run once each over many rows: compiling them (JIT, on from a
        # cost of 100,000) took 0.3-0.7 s a statement, 3.4 s of a 19 s plan of 1,000,000 rows
        # with 10% changed, and never paid back.
        conn.exec_driver_sql("SET jit = off")


def end_sorts(conn: Connection) -> None:
    """SQLite: back to the default cache once the plan is made; PostgreSQL: JIT back (``sort_threads``)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA temp.cache_size=-2000")
        # apply's first read of the batches sorts the statistics to send (product.md §4 order):
        # with helper threads that sort held ~100 MB at once for a million statistics.
        conn.exec_driver_sql("PRAGMA threads=0")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("RESET jit")


def analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL: give a freshly filled temporary table statistics (autovacuum never analyzes
    temporary tables); without them the joins below are planned blind and run 2-3x slower."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.quote(table.name)}"))


def json_of(conn: Connection, column: Any) -> Any:
    """A text column holding JSON, as JSON for the dialect's operators (``doc["field"]``, ``doc[0]``):
    PostgreSQL needs the cast, SQLite reads JSON text as it is."""
    return cast(column, JSON) if conn.dialect.name == "postgresql" else type_coerce(column, JSON)
