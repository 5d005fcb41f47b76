"""Every write of the Ledger: runs, integrations, operations with their items and results, records.

``LedgerWrites`` adds them to ``LedgerBase``; ``Ledger`` (syncer/ledger/store.py) inherits them.
Each is one transaction; those that change an integration's records or operations bump that
integration's generation first (``integration_generations``), and on SQLite take the write lock at
once (``BEGIN IMMEDIATE``). Runs and locks belong to no integration and bump nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from syncer.errors import LedgerError, LedgerUnusableError
from syncer.ledger.base import LedgerBase
from syncer.ledger.batch import insert_items, mark_carried, record_item_results, upsert_pending
from syncer.ledger.schema import (
    RunStatus,
    generations_table,
    held_records_table,
    integrations_table,
    invalid_rows_table,
    operations,
    records,
    runs,
)
from syncer.models import (
    InvalidRow,
    ItemResult,
    OperationStatus,
    OperationType,
    Record,
    RecordStatus,
    UnsafeStat,
    payload_json,
)

__all__ = ["LedgerWrites", "bump_generations", "request_hash", "take_write_lock"]

_NOT_SUBMITTED = "never submitted: the run stopped before the request was sent"


def _now() -> datetime:
    return datetime.now(UTC)


def _one_line(message: str, limit: int = 2000) -> str:
    """``message`` on one line (``status`` prints one line per run), cut at ``limit`` characters."""
    text = " / ".join(line.strip() for line in message.splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_ANALYZE_AFTER = 1_000
"""Records written by one process before the PostgreSQL ledger's first ``ANALYZE records``."""


def request_hash(op_type: OperationType, items: Sequence[Record]) -> str:
    """The hash of a bulk request body: the type and the payloads in order."""
    digest = hashlib.blake2b(op_type.value.encode(), digest_size=16)
    for item in items:
        digest.update(payload_json(item.payload))
        digest.update(b"\n")
    return digest.hexdigest()


def take_write_lock(conn: Connection) -> None:
    """SQLite: start ``conn``'s transaction as ``BEGIN IMMEDIATE``, holding the write lock at once,
    so that a deferred transaction never fails to upgrade its read lock halfway. A no-op on
    PostgreSQL (row locks) and when ``conn`` is already inside a transaction of the driver."""
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    if driver is not None and not getattr(driver, "in_transaction", True):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def journal_in_memory(conn: Connection) -> Iterator[None]:
    """SQLite: keep ``conn``'s statement journals in memory for one write transaction.

    With foreign keys on, each row's statement of an ``executemany`` opens a statement journal
    (the pages it changes, to undo that row alone); SQLite keeps one in memory up to 64 KiB, then
    moves it to a temporary file for the rest of the transaction. One large statement was enough:
    every later row of the batch then wrote its pages to that file, 1.4 million writes (3 GB) for a
    first sync of 100,000 statistics, a quarter of its CPU time in system calls. Each journal is
    a few pages; ``temp_store=MEMORY`` keeps them off the disk. Set back afterwards: on a pooled
    connection a later read may sort a million rows, which must spill to a file, not to memory.
    Changing ``temp_store`` drops the connection's temporary tables: the writes have none.
    """
    driver = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
    if driver is None:
        yield
        return
    driver.execute("PRAGMA temp_store=MEMORY")
    try:
        yield
    finally:
        if not conn.invalidated:
            conn.connection.driver_connection.execute("PRAGMA temp_store=DEFAULT")  # type: ignore[union-attr]


def bump_generations(conn: Connection, integrations: Iterable[str]) -> None:
    """Add one to the generation of each of ``integrations`` (a row is created at 1)."""
    names = sorted(set(integrations))  # sorted: two writers lock the rows in the same order
    if not names:
        return
    stmt = _upsert(conn.dialect.name, generations_table)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["integration"], set_={"generation": generations_table.c.generation + 1}
        ),
        [{"integration": name, "generation": 1} for name in names],
    )


class LedgerWrites(LedgerBase):
    """The writes of the ledger, each in one transaction."""

    @contextlib.contextmanager
    def _write(self, doing: str, *integrations: str, op_id: int | None = None) -> Iterator[Connection]:
        """One write transaction that bumps the generation of ``integrations`` (and of the
        integration of operation ``op_id``) first; ``bump_generations`` bumps more later."""
        with (
            self.translate_errors(doing),
            self._engine.connect() as conn,
            journal_in_memory(conn),
            conn.begin(),
        ):
            take_write_lock(conn)
            names = list(integrations)
            if op_id is not None:
                owner = conn.execute(
                    select(operations.c.integration).where(operations.c.id == op_id)
                ).scalar_one_or_none()
                if owner is not None:
                    names.append(owner)
            bump_generations(conn, names)
            yield conn

    # -- runs and integrations -------------------------------------------------------------

    def start_run(self, command: str, *, host: str | None = None, pid: int | None = None) -> int:
        """Record the start of a run; return its id."""
        with self.translate_errors("starting a run"), self._engine.begin() as conn:
            result = conn.execute(
                insert(runs).values(
                    command=command,
                    host=host or socket.gethostname(),
                    pid=os.getpid() if pid is None else pid,
                    started_at=_now(),
                    status=RunStatus.RUNNING,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        summary: Mapping[str, Any] | None = None,
        *,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record the end of a run: its summary, exit code and the error that stopped it, if any.

        ``error`` is stored on one line (its lines joined with `` / ``), at most 2,000 characters;
        callers pass messages already scrubbed of secrets.
        """
        with self.translate_errors("finishing a run"), self._engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    ended_at=_now(),
                    status=status,
                    summary=dict(summary or {}),
                    exit_code=exit_code,
                    error=None if error is None else _one_line(error),
                )
            )

    def set_integration_id(self, name: str, api_id: str, platform: str | None = None) -> None:
        """Record the 360Learning id of a config integration."""
        with self.translate_errors("recording an integration"), self._engine.begin() as conn:
            stmt = _upsert(self.dialect, integrations_table).values(
                name=name, api_id=api_id, platform=platform
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name"], set_={"api_id": api_id, "platform": platform}
                )
            )

    # -- operations ------------------------------------------------------------------------

    def prepare_operation(
        self, run_id: int | None, integration: str, op_type: OperationType, items: Sequence[Record]
    ) -> int:
        """Write a batch ahead of its submission: the operation, its items, records pending."""
        now = _now()
        with self._write("preparing an operation", integration) as conn:
            op_id = int(
                conn.execute(
                    insert(operations).values(
                        run_id=run_id,
                        integration=integration,
                        type=op_type,
                        request_hash=request_hash(op_type, items),
                        item_count=len(items),
                        status=OperationStatus.PREPARED,
                        success_count=0,
                        error_count=0,
                        created_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            if not items:
                return op_id
            texts = insert_items(conn, op_id, items)
            if op_type is OperationType.ARCHIVE_COURSES:
                # The course record stays as it is (live, synced) until the archive succeeds;
                # it only learns which operation carries it.
                mark_carried(conn, integration, op_id, items, now)
                return op_id
            upsert_pending(conn, integration, op_id, items, texts, now)
        self._keep_statistics(len(items))
        return op_id

    def _keep_statistics(self, written: int) -> None:
        """PostgreSQL: ``ANALYZE records`` each time this process has doubled what it wrote.

        A first sync fills a table the server has never analysed; without statistics its planner
        looks a record up by key through the (integration, kind, grp) index, a scan of every
        record of the integration per row: 10,000 results took 12 s to record instead of 0.2 s.
        ANALYZE samples a bounded number of rows, a fraction of a second even on a large table.
        """
        if self.dialect != "postgresql":
            return
        self._written = getattr(self, "_written", 0) + written
        if self._written < max(_ANALYZE_AFTER, 2 * getattr(self, "_analyzed_at", 0)):
            return
        self._analyzed_at = self._written
        with self.translate_errors("analysing the records table"), self._engine.begin() as conn:
            conn.execute(text("ANALYZE records"))

    def mark_submitted(self, op_id: int, location: str, api_id: str) -> None:
        """Record the ``Location`` and API id right after the 202."""
        with self._write("recording a submission", op_id=op_id) as conn:
            conn.execute(
                update(operations)
                .where(operations.c.id == op_id, operations.c.status == OperationStatus.PREPARED)
                .values(
                    location=location,
                    api_id=api_id,
                    status=OperationStatus.PENDING,
                    submitted_at=_now(),
                )
            )

    def update_operation_status(
        self, op_id: int, status: OperationStatus, *, error_message: str | None = None
    ) -> None:
        """Record a non-terminal status seen while polling (terminal ones go through record_results)."""
        if status.finished:
            raise ValueError("use record_results for a finished operation")
        with self._write("updating an operation", op_id=op_id) as conn:
            conn.execute(
                update(operations)
                .where(
                    operations.c.id == op_id,
                    operations.c.status.not_in([OperationStatus.COMPLETED, OperationStatus.ERROR]),
                )
                .values(status=status, error_message=error_message)
            )

    def record_results(
        self,
        op_id: int,
        final_status: OperationStatus,
        results: Sequence[ItemResult],
        error_message: str | None = None,
    ) -> None:
        """Record how an operation ended, in one transaction; recording it twice changes nothing."""
        if not final_status.finished:
            raise ValueError(f"{final_status} is not a final status")
        now = _now()
        with self._write("recording results", op_id=op_id) as conn:
            op = conn.execute(select(operations).where(operations.c.id == op_id)).mappings().one_or_none()
            if op is None:
                raise LedgerError(f"ledger {self._where}: operation {op_id} does not exist")
            if OperationStatus(op["status"]).finished:
                conn.rollback()  # already recorded: keep the generation as it was
                return
            op_type = OperationType(op["type"])
            integration = op["integration"]
            if final_status is OperationStatus.ERROR:
                message = error_message or "the operation ended in error"
                conn.execute(
                    update(records)
                    .where(records.c.last_operation_id == op_id, records.c.status == RecordStatus.PENDING)
                    .values(message=message, updated_at=now)
                )
                conn.execute(
                    update(operations)
                    .where(operations.c.id == op_id)
                    .values(status=final_status, error_message=message, ended_at=now)
                )
                return
            ok, bad = record_item_results(conn, integration, op_id, op_type, results, now)
            conn.execute(
                update(operations)
                .where(operations.c.id == op_id)
                .values(
                    status=final_status,
                    success_count=len(ok),
                    error_count=len(bad),
                    error_message=error_message,
                    ended_at=now,
                )
            )

    def abandon_operation(self, op_id: int) -> None:
        """Close a prepared operation found never submitted; its records stay pending (resent)."""
        with self._write("abandoning an operation", op_id=op_id) as conn:
            done = conn.execute(
                update(operations)
                .where(operations.c.id == op_id, operations.c.status == OperationStatus.PREPARED)
                .values(status=OperationStatus.ERROR, error_message=_NOT_SUBMITTED, ended_at=_now())
            )
            if done.rowcount:
                conn.execute(
                    update(records)
                    .where(records.c.last_operation_id == op_id, records.c.status == RecordStatus.PENDING)
                    .values(message=_NOT_SUBMITTED)
                )

    # -- what the last plan found: invalid rows, held statistics ----------------------------

    def replace_invalid_rows(self, integrations: Iterable[str], rows: Iterable[InvalidRow]) -> None:
        """Replace the stored invalid rows of these integrations by those of the latest plan."""
        values = (
            {
                "integration": row.integration,
                "kind": row.kind,
                "origin": row.origin,
                "field": row.field,
                "reason": row.reason,
                "key": row.key,
            }
            for row in rows
        )
        self._replace_plan_rows(invalid_rows_table, integrations, values, "storing invalid rows")

    def replace_held_records(self, integrations: Iterable[str], held: Iterable[UnsafeStat]) -> None:
        """Replace the held statistics of these integrations by those of the latest plan."""
        values = (
            {
                "integration": stat.integration,
                "key": stat.key,
                "origin": stat.origin,
                "action": stat.action.value,
                "effect": stat.effect.value,
                "reason": stat.reason,
            }
            for stat in held
        )
        self._replace_plan_rows(held_records_table, integrations, values, "storing held statistics")

    def _replace_plan_rows(
        self, table: Table, integrations: Iterable[str], values: Iterable[dict[str, Any]], doing: str
    ) -> None:
        """Delete these integrations' rows of ``table``, insert ``values`` in chunks: one transaction."""
        names = list(integrations)
        now = _now()
        with self.translate_errors(doing), self._engine.begin() as conn:
            conn.execute(table.delete().where(table.c.integration.in_(names)))
            chunk: list[dict[str, Any]] = []
            for row in values:
                chunk.append({**row, "created_at": now})
                if len(chunk) >= 5000:
                    conn.execute(insert(table), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(table), chunk)


def _upsert(dialect: str, table: Any) -> Any:
    # INSERT ... ON CONFLICT: the same construct on both dialects, each from its own module.
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise LedgerUnusableError(f"unsupported ledger database: {dialect} (use SQLite or PostgreSQL)")
