"""Staging: desired records into the plan's staged table, by executemany or COPY, and archives.

``Desired`` is what a plan is asked for (one mapping stream per integration and kind). Its
records and invalid rows are inserted in chunks (``Inserter``: executemany straight to the
driver, or ``COPY ... FROM STDIN`` on PostgreSQL with psycopg 3); the live courses a source no
longer has are staged as archives by one INSERT ... SELECT from the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Table, and_, exists, func, literal, literal_column, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from syncer.config import Tolerance
from syncer.errors import LedgerError
from syncer.ledger import Ledger, operations, records
from syncer.ledger.planning import COUNTED
from syncer.models import InvalidRow, OperationType, Record, RecordKind, RecordStatus, StagedRow
from syncer.plan.query import QueryStream
from syncer.plan.streams import FileStream
from syncer.plan.tables import INVALID, OK, STAGED_COLUMNS, STAGED_RECORD_COLUMNS, Tally
from syncer.sources.digest import Unscannable

__all__ = ["Desired", "Inserter", "copy_rows", "copy_sql", "stage_all", "stage_archives", "stage_items"]

_CHUNK = 5000
"""Rows per insert."""


@dataclass(frozen=True)
class Desired:
    """The desired courses or statistics of one integration, as mapping streams them."""

    integration: str
    kind: RecordKind
    # StagedRow: mapping's fast path; a list: a run of StagedRows (streams.stage_runs)
    items: Iterable[Record | InvalidRow | StagedRow | list[StagedRow]]
    archive_missing: bool = False  # courses: archive live courses this stream no longer has
    tolerance: Tolerance = field(default_factory=Tolerance)  # invalid rows that do not fail a run
    # A file read by digest: only the rows the ledger does not know as synced are mapped (then
    # ``items`` is not used; a file that cannot be cut is mapped whole from ``file.classic()``).
    # A QueryStream: an SQL source in the ledger's own database, digested on the server.
    file: FileStream | QueryStream | None = None
    # Statistics whose predicted effect is unsafe are sent anyway (stats.on_unsafe_change: send).
    send_unsafe: bool = False
    source: str = ""  # the source's name in the config, for messages
    incremental: bool = False  # an incremental read of an SQL source: rows not read are not gone


class Inserter:
    """executemany straight to the driver: SQLAlchemy's per-row parameter handling would cost
    more than the insert itself at a million rows (the statement itself is still SQLAlchemy's).
    On PostgreSQL with psycopg 3 the rows go through ``COPY ... FROM STDIN`` instead, several
    times faster than executemany."""

    def __init__(self, conn: Connection, table: Table) -> None:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(STAGED_COLUMNS))
        self._conn = conn
        self._sql = str(compiled)
        self._positional = bool(compiled.positional)
        if self._positional and tuple(compiled.positiontup or ()) != STAGED_COLUMNS:
            raise LedgerError("staging insert: unexpected parameter order")  # a guard, never seen
        self._copy = copy_sql(conn, table, STAGED_COLUMNS)

        self.table = table
        self._stream_sql: dict[tuple[int, str, str], str | None] = {}
        self.seen: Callable[[int], object] | None = None  # told how many valid rows each insert staged

    def records(self, stream: int, integration: str, kind: str, rows: list[StagedRow]) -> None:
        """Insert valid records of one stream; SQLite gets the stream's constants as literals.

        Binding three fewer parameters per row saves a third of the insert's time.
        """
        if self.seen is not None:
            self.seen(len(rows))
        sql = self._stream_sql.get((stream, integration, kind), "")
        if sql == "":
            sql = self._stream_sql[(stream, integration, kind)] = self._literal_sql(stream, integration, kind)
        if sql is None:
            self([(stream, integration, kind, *row, OK, None, None) for row in rows])
        else:
            self._conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]

    def _literal_sql(self, stream: int, integration: str, kind: str) -> str | None:
        dialect = self._conn.dialect
        if self._copy is not None or dialect.name != "sqlite":
            return None
        constants = {"integration": integration, "kind": kind, "state": OK}
        # SQLite string literals: quotes doubled, nothing else to escape.
        values: dict[str, Any] = {
            k: literal_column("'" + v.replace("'", "''") + "'") for k, v in constants.items()
        }
        values["stream"] = literal_column(str(int(stream)))
        statement = self.table.insert().values(values)
        compiled = statement.compile(dialect=dialect, column_keys=list(STAGED_RECORD_COLUMNS))
        if not compiled.positional or tuple(compiled.positiontup or ()) != STAGED_RECORD_COLUMNS:
            return None
        return str(compiled)

    def __call__(self, rows: list[tuple[Any, ...]]) -> None:
        if self._copy is not None:
            copy_rows(self._conn, self._copy, rows)
            return
        params: Any = rows if self._positional else [dict(zip(STAGED_COLUMNS, r, strict=True)) for r in rows]
        self._conn.exec_driver_sql(self._sql, params)


def copy_sql(conn: Connection, table: Table, columns: Sequence[str]) -> str | None:
    """``COPY table (columns) FROM STDIN`` on PostgreSQL with psycopg 3; None elsewhere."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return None
    quote = conn.dialect.identifier_preparer.quote
    return f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"


def copy_rows(conn: Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
    if not conn.in_transaction():
        conn.begin()  # so that the plan's next commit (or rollback) covers these rows
    driver: Any = conn.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        # Raised by the driver itself, past SQLAlchemy: wrap it as SQLAlchemy would, so that
        # the ledger's error translation applies.
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc


def stage_all(ledger: Ledger, conn: Connection, insert: Inserter, stream: int, d: Desired) -> tuple[int, int]:
    """Map and stage every row of a file, with digests; the ordinary way if it cannot be cut."""
    assert d.file is not None
    name, kind = d.integration, d.kind.value
    try:
        return stage_items(ledger, insert, stream, name, kind, d.file.runs(None))
    except Unscannable:
        s = insert.table.c
        with ledger.translate_errors("staging records"):
            conn.execute(insert.table.delete().where(s.integration == name, s.kind == kind))
        return stage_items(ledger, insert, stream, name, kind, d.file.classic())


def stage_items(
    ledger: Ledger,
    insert: Inserter,
    stream: int,
    name: str,
    kind: str,
    items: Iterable[Record | InvalidRow | StagedRow | list[StagedRow]],
) -> tuple[int, int]:
    """Stage one stream's records and invalid rows: (valid records, invalid rows)."""
    count = invalid = 0
    dumps = orjson.dumps
    # Valid records and invalid rows go in separately; each keeps its own order (ids rise
    # with the source's order within each, which is all that duplicates and detail use).
    chunk: list[StagedRow] = []
    bad: list[tuple[Any, ...]] = []
    append = chunk.append
    for item in items:
        if type(item) is list:  # a run of StagedRows
            chunk.extend(item)
        elif type(item) is tuple:  # a StagedRow: key, hash, payload, origin, group, order, activity, digest
            append(item)
        elif type(item) is Record:
            payload = dumps(item.payload, option=orjson.OPT_SORT_KEYS).decode()  # canonical, as mapped ones
            append((item.key, item.hash, payload, item.origin, item.group, item.order, item.activity,
                    item.digest))  # fmt: skip
        elif isinstance(item, InvalidRow):
            # A known key keeps its course from being archived.
            bad.append((stream, name, kind, item.key or "", None, None, item.origin, "", "", "", None,
                        INVALID, item.field, item.reason))  # fmt: skip
            invalid += 1
            continue
        else:
            raise TypeError(f"expected Record or InvalidRow, got {type(item).__name__}")
        if len(chunk) >= _CHUNK:
            count += len(chunk)
            with ledger.translate_errors("staging records"):
                insert.records(stream, name, kind, chunk)
            chunk.clear()
        if len(bad) >= _CHUNK:
            with ledger.translate_errors("staging records"):
                insert(bad)
            bad.clear()
    count += len(chunk)
    with ledger.translate_errors("staging records"):
        if chunk:
            insert.records(stream, name, kind, chunk)
        if bad:
            insert(bad)
    return count, invalid


def stage_archives(
    conn: Connection,
    s: Table,
    stream: int,
    integration: str,
    retry_rejected: bool,
    tally: Tally,
    skim: Table | None,
) -> None:
    """Stage the live courses the source no longer has.

    All staged keys count as present, and so do the records whose source row is in the file
    unchanged (its digest is in ``skim``, the file's digests, when it was read by digest).
    """
    r = records.c
    present: ColumnElement[bool] = exists().where(
        s.c.integration == integration, s.c.kind == RecordKind.COURSE.value, s.c.key == r.key
    )
    if skim is not None:
        present = or_(present, exists().where(skim.c.digest == r.source_digest))
    refused_archive = and_(
        r.status == RecordStatus.REJECTED, operations.c.type == OperationType.ARCHIVE_COURSES
    )
    query = (
        select(
            literal(stream),
            literal(integration),
            literal(RecordKind.ARCHIVE.value),
            r.key,
            r.origin,
            literal(""),
            literal(""),
            literal(""),
            literal(OK),
        )
        .select_from(records.outerjoin(operations, operations.c.id == r.last_operation_id))
        .where(r.integration == integration, r.kind == RecordKind.COURSE, r.live == true(), ~present)
    )
    if not retry_rejected:
        # An archive the API refused is tried again only on request.
        query = query.where(or_(~refused_archive, operations.c.id.is_(None)))
    added = conn.execute(
        s.insert().from_select(
            ["stream", "integration", "kind", "key", "origin", "grp", "ord", "activity", "state"], query
        ),
        execution_options=COUNTED,
    ).rowcount
    if added is None or added < 0:  # a driver that does not say: count them
        added = conn.execute(
            select(func.count()).where(s.c.integration == integration, s.c.kind == RecordKind.ARCHIVE.value)
        ).scalar_one()
    key = (integration, RecordKind.ARCHIVE.value, OK)
    tally[key] = tally.get(key, 0) + int(added)
