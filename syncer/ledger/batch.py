"""One batch's rows written through the driver's bulk paths: its items, its records, its results.

A first sync writes every record twice (ahead of its submission, then its result), 10,000 at a
time. SQLAlchemy's per-row parameter processing (a dict per row, each value through its type's
bind processor) cost more than the database's own work, so these writes hand plain tuples to the
driver: ``executemany`` on SQLite (``exec_driver_sql``), ``COPY`` on PostgreSQL (psycopg's
``cursor.copy``; the records through a temporary table and one ``INSERT ... SELECT ... ON
CONFLICT``). Values that are the same for the whole batch (time, statuses, booleans) go through
their column's bind processor once, so the rows are exactly those the Core statements wrote.
Only ``LedgerWrites`` (syncer/ledger/writes.py) calls these, inside its transactions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from syncer.ledger.schema import ItemStatus, operation_items, records
from syncer.models import CanonicalJson, ItemResult, OperationType, Record, RecordKind, RecordStatus

__all__ = ["insert_items", "mark_carried", "payload_text", "record_item_results", "upsert_pending"]

_UPSERT_SET = (
    "hash = excluded.hash, payload = excluded.payload, status = excluded.status, "
    "last_operation_id = excluded.last_operation_id, message = NULL, origin = excluded.origin, "
    "source_digest = excluded.source_digest, grp = excluded.grp, first_at = excluded.first_at, "
    "updated_at = excluded.updated_at"
)
_RECORD_COLUMNS = (
    'integration, kind, "key", hash, payload, status, live, last_operation_id, message, origin, '
    "source_digest, grp, first_at, created_at, updated_at"
)
_ITEM_COLUMNS = "operation_id, position, kind, record_key, record_hash, payload"


# What the platform now holds of a statistic sent and accepted: its attempt's lastActivityAt and
# whether it is completed. Taken from the item as the results echo it (the record carried by this
# operation holds the same payload), so the database need not parse each payload twice; where the
# result does not carry it, from the stored payload (the Core expressions
# records.c.payload[...].as_string()/.as_float()).
_ATTEMPT = {
    "sqlite": (
        "att_end = COALESCE(?, CAST(JSON_EXTRACT(payload, '$.\"lastActivityAt\"') AS VARCHAR)), "
        "att_done = COALESCE(?, (CAST(JSON_EXTRACT(payload, '$.\"progress\"') AS FLOAT) >= 100))"
    ),
    "postgresql": (
        "att_end = COALESCE(?, CAST(payload ->> 'lastActivityAt' AS VARCHAR)), "
        "att_done = COALESCE(?, (CAST((payload ->> 'progress') AS FLOAT) >= 100))"
    ),
}


def _attempt(sent: Mapping[str, Any], done: Mapping[bool, Any]) -> tuple[Any, Any]:
    """(att_end, att_done) of a statistic from the item sent; None for what it does not hold."""
    end = sent.get("lastActivityAt")
    progress = sent.get("progress")
    finished = None
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        finished = done[progress >= 100]
    return (None if end is None else str(end)), finished


def payload_text(item: Record) -> str:
    """A record's payload as the ledger stores it (the engine's JSON serializer: orjson, key order kept)."""
    payload = item.payload
    if type(payload) is CanonicalJson:
        return payload.text
    return orjson.dumps(payload if type(payload) is dict else dict(payload)).decode()


def _bound(conn: Connection, column: Column[Any], value: Any) -> Any:
    """``value`` as ``column``'s type hands it to the driver (once per batch, not per row)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process(value) if process is not None else value


def _sql(conn: Connection, statement: str) -> str:
    # Written with ? placeholders (SQLite's); psycopg takes %s.
    return statement if conn.dialect.paramstyle == "qmark" else statement.replace("?", "%s")


@contextlib.contextmanager
def _driver_errors(conn: Connection, statement: str) -> Iterator[Any]:
    """The driver's cursor; its errors become SQLAlchemy's, as ``LedgerBase.translate_errors`` expects."""
    dbapi = conn.dialect.loaded_dbapi
    driver = conn.connection.driver_connection
    try:
        with contextlib.closing(driver.cursor()) as cursor:  # type: ignore[union-attr]
            yield cursor
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


def _copy(conn: Connection, statement: str, rows: Iterator[tuple[Any, ...]]) -> None:
    """PostgreSQL: ``COPY ... FROM STDIN`` of ``rows`` (psycopg 3)."""
    with _driver_errors(conn, statement) as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def insert_items(conn: Connection, op_id: int, items: Sequence[Record]) -> list[str]:
    """Write a batch's operation items; returns their payloads as stored (for ``upsert_pending``)."""
    texts = [payload_text(item) for item in items]
    kinds = _kinds(conn, items)
    rows = (
        (op_id, pos, kinds[item.kind], item.key, item.hash, text)
        for pos, (item, text) in enumerate(zip(items, texts, strict=True))
    )
    if conn.dialect.name == "postgresql":
        _copy(conn, f"COPY operation_items ({_ITEM_COLUMNS}) FROM STDIN", rows)
    else:
        conn.exec_driver_sql(
            f"INSERT INTO operation_items ({_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", list(rows)
        )
    return texts


def upsert_pending(
    conn: Connection,
    integration: str,
    op_id: int,
    items: Sequence[Record],
    texts: Sequence[str],
    now: datetime,
) -> None:
    """Write a batch's records as pending, carried by ``op_id`` (``texts``: their stored payloads)."""
    kinds = _kinds(conn, items)
    stamp = _bound(conn, records.c.created_at, now)
    pending = _bound(conn, records.c.status, RecordStatus.PENDING)
    live = _bound(conn, records.c.live, False)
    if conn.dialect.name == "postgresql":
        _upsert_pending_pg(conn, (integration, pending, live, op_id, stamp, stamp), items, texts, kinds)
        return
    # grp and first_at: statistics only (the attempt prediction's pair)
    conn.exec_driver_sql(
        f"INSERT INTO records ({_RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?) "
        f'ON CONFLICT (integration, kind, "key") DO UPDATE SET {_UPSERT_SET}',
        [
            (
                integration,
                kinds[item.kind],
                item.key,
                item.hash,
                text,
                pending,
                live,
                op_id,
                item.origin,
                item.digest,
                item.group or None,
                item.order or None,
                stamp,
                stamp,
            )
            for item, text in zip(items, texts, strict=True)
        ],
    )


def _kinds(conn: Connection, items: Sequence[Record]) -> dict[RecordKind, Any]:
    return {kind: _bound(conn, records.c.kind, kind) for kind in {item.kind for item in items}}


def _upsert_pending_pg(
    conn: Connection,
    constants: tuple[Any, ...],
    items: Sequence[Record],
    texts: Sequence[str],
    kinds: dict[RecordKind, Any],
) -> None:
    # One INSERT ... ON CONFLICT may not touch a row twice: a key given twice keeps its last
    # values at its first position, as one upsert per row in order would leave it.
    last: dict[tuple[RecordKind, str], int] = {}
    for pos, item in enumerate(items):
        last[(item.kind, item.key)] = pos
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE syncer_batch_records (pos integer, kind text, key text, hash text, "
        "payload text, origin text, source_digest bigint, grp text, first_at text) ON COMMIT DROP"
    )
    _copy(
        conn,
        "COPY syncer_batch_records FROM STDIN",
        (
            (
                first,
                kinds[items[pos].kind],
                items[pos].key,
                items[pos].hash,
                texts[pos],
                items[pos].origin,
                items[pos].digest,
                items[pos].group or None,
                items[pos].order or None,
            )
            for first, pos in enumerate(last.values())
        ),
    )
    # (integration, status, live, last_operation_id, created_at, updated_at): the same for all
    conn.exec_driver_sql(
        f"INSERT INTO records ({_RECORD_COLUMNS}) "
        "SELECT %s, kind, key, hash, CAST(payload AS JSON), %s, %s, %s, NULL, origin, source_digest, "
        "grp, first_at, %s, %s FROM syncer_batch_records ORDER BY pos "
        f'ON CONFLICT (integration, kind, "key") DO UPDATE SET {_UPSERT_SET}',
        constants,
    )


def mark_carried(
    conn: Connection, integration: str, op_id: int, items: Sequence[Record], now: datetime
) -> None:
    """Archives: each course record only learns which operation carries it (it stays live and synced)."""
    course = _bound(conn, records.c.kind, RecordKind.COURSE)
    stamp = _bound(conn, records.c.updated_at, now)
    conn.exec_driver_sql(
        _sql(
            conn,
            "UPDATE records SET last_operation_id = ?, updated_at = ? "
            'WHERE integration = ? AND kind = ? AND "key" = ?',
        ),
        [(op_id, stamp, integration, course, item.key) for item in items],
    )


def record_item_results(
    conn: Connection,
    integration: str,
    op_id: int,
    op_type: OperationType,
    results: Sequence[ItemResult],
    now: datetime,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Write each result on its item and its record; returns (keys accepted, (key, message) rejected).

    Only records still carried by this operation change: a later batch may have taken a record
    over with newer content. A result for a position never sent is ignored.
    """
    statement = "SELECT position, record_key FROM operation_items WHERE operation_id = ?"
    with _driver_errors(conn, statement) as cursor:
        cursor.execute(_sql(conn, statement), (op_id,))
        keys: dict[int, str] = dict(cursor.fetchall())
    success = _bound(conn, operation_items.c.result_status, ItemStatus.SUCCESS)
    error = _bound(conn, operation_items.c.result_status, ItemStatus.ERROR)
    item_rows: list[tuple[Any, ...]] = []
    ok: list[str] = []
    attempts: list[tuple[Any, Any]] = []  # statistics: (att_end, att_done) of each key in ``ok``
    bad: list[tuple[str, str]] = []
    stats = op_type is OperationType.IMPORT_STATS
    done = {flag: _bound(conn, records.c.att_done, flag) for flag in (True, False)}
    for result in results:
        key = keys.get(result.position)
        if key is None:
            continue  # a result for an item we never sent: nothing to attach it to
        item_rows.append(
            (success if result.success else error, result.resource_id, result.message, op_id, result.position)
        )
        if result.success:
            ok.append(key)
            if stats:
                attempts.append(_attempt(result.input, done))
        else:
            bad.append((key, result.message or "rejected"))
    if item_rows:
        conn.exec_driver_sql(
            _sql(
                conn,
                "UPDATE operation_items SET result_status = ?, resource_id = ?, message = ? "
                "WHERE operation_id = ? AND position = ?",
            ),
            item_rows,
        )
    kind = _bound(conn, records.c.kind, RecordKind.STAT if stats else RecordKind.COURSE)
    stamp = _bound(conn, records.c.updated_at, now)
    target = 'WHERE integration = ? AND kind = ? AND "key" = ? AND last_operation_id = ?'
    if ok:
        synced = _bound(conn, records.c.status, RecordStatus.SYNCED)
        if stats:  # the platform now holds this attempt as it was sent
            conn.exec_driver_sql(
                _sql(
                    conn,
                    f"UPDATE records SET status = ?, message = NULL, updated_at = ?, "
                    f"{_ATTEMPT[conn.dialect.name]} {target}",
                ),
                [
                    (synced, stamp, end, finished, integration, kind, key, op_id)
                    for key, (end, finished) in zip(ok, attempts, strict=True)
                ],
            )
        else:  # imported courses are live, archived ones no longer
            live = _bound(conn, records.c.live, op_type is OperationType.IMPORT_COURSES)
            conn.exec_driver_sql(
                _sql(
                    conn, f"UPDATE records SET status = ?, message = NULL, updated_at = ?, live = ? {target}"
                ),
                [(synced, stamp, live, integration, kind, key, op_id) for key in ok],
            )
            # The ledger's record is now newer than what the last refresh saw of the course.
            conn.exec_driver_sql(
                _sql(conn, "DELETE FROM platform_courses WHERE integration = ? AND external_id = ?"),
                [(integration, key) for key in ok],
            )
    if bad:
        rejected = _bound(conn, records.c.status, RecordStatus.REJECTED)
        conn.exec_driver_sql(
            _sql(conn, f"UPDATE records SET status = ?, message = ?, updated_at = ? {target}"),
            [(rejected, message, stamp, integration, kind, key, op_id) for key, message in bad],
        )
    return ok, bad
