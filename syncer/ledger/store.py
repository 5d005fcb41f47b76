"""The Ledger, the repository over the ledger database, and every read of it.

``Ledger`` = ``LedgerBase`` (syncer/ledger/base.py: opening, closing, errors, generation) +
``LedgerWrites`` (syncer/ledger/writes.py: every write) + the reads below, which return the
dataclasses of syncer/ledger/rows.py. The run locks are in syncer/ledger/lock.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, Table, and_, case, func, select
from sqlalchemy.engine import Connection

from syncer.errors import LedgerError
from syncer.ledger.cursors import LedgerCursors
from syncer.ledger.rows import (
    OperationInfo,
    OperationItem,
    RecordCount,
    RejectedRecord,
    RunInfo,
    operation_info,
)
from syncer.ledger.schema import (
    ItemStatus,
    RunStatus,
    held_records_table,
    integrations_table,
    invalid_rows_table,
    operation_items,
    operations,
    records,
    runs,
)
from syncer.models import (
    ChangeAction,
    Effect,
    InvalidRow,
    OperationStatus,
    RecordKind,
    RecordStatus,
    UnsafeStat,
)

__all__ = ["Ledger"]


class Ledger(LedgerCursors):
    """The repository over the ledger database. Methods are transactional and idempotent."""

    # -- runs and integrations -------------------------------------------------------------

    def last_runs(self, limit: int = 5) -> list[RunInfo]:
        """The most recent runs, newest first."""
        with self.translate_errors("reading runs"), self._engine.connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(limit)).mappings()
            return [
                RunInfo(
                    id=r["id"],
                    command=r["command"],
                    host=r["host"],
                    pid=r["pid"],
                    started_at=r["started_at"],
                    ended_at=r["ended_at"],
                    status=RunStatus(r["status"]),
                    summary=r["summary"],
                    exit_code=r["exit_code"],
                    error=r["error"],
                )
                for r in rows
            ]

    def get_integration_id(self, name: str) -> str | None:
        """The 360Learning id recorded for a config integration, if any."""
        with self.translate_errors("reading an integration"), self._engine.connect() as conn:
            return conn.execute(
                select(integrations_table.c.api_id).where(integrations_table.c.name == name)
            ).scalar_one_or_none()

    # -- operations ------------------------------------------------------------------------

    def operation(self, op_id: int) -> OperationInfo:
        """One operation by id."""
        with self.translate_errors("reading an operation"), self._engine.connect() as conn:
            row = conn.execute(select(operations).where(operations.c.id == op_id)).mappings().one_or_none()
        if row is None:
            raise LedgerError(f"ledger {self._where}: operation {op_id} does not exist")
        return operation_info(row)

    def unfinished_operations(self, integration: str | None = None) -> list[OperationInfo]:
        """Operations not yet completed or errored (prepared ones included), oldest first."""
        query = select(operations).where(
            operations.c.status.not_in([OperationStatus.COMPLETED, OperationStatus.ERROR])
        )
        if integration is not None:
            query = query.where(operations.c.integration == integration)
        with self.translate_errors("reading operations"), self._engine.connect() as conn:
            rows = conn.execute(query.order_by(operations.c.id)).mappings()
            return [operation_info(r) for r in rows]

    def known_api_ids(self, api_ids: Iterable[str]) -> set[str]:
        """Those of ``api_ids`` that an operation of this ledger already carries.

        A lost submission must never adopt one of these: they belong to other batches, even
        when their content is identical (a retried rejection, a resend after an ``error``).
        """
        wanted = sorted(set(api_ids))
        found: set[str] = set()
        with self.translate_errors("reading operations"), self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):  # stay far below bound-parameter limits
                chunk = wanted[start : start + 500]
                found.update(
                    str(v)
                    for v in conn.execute(
                        select(operations.c.api_id).where(operations.c.api_id.in_(chunk))
                    ).scalars()
                )
        return found

    def operation_items(self, op_id: int) -> list[OperationItem]:
        """The items of an operation in request order, with their results."""
        query = (
            select(operation_items)
            .where(operation_items.c.operation_id == op_id)
            .order_by(operation_items.c.position)
        )
        with self.translate_errors("reading operation items"), self._engine.connect() as conn:
            return [
                OperationItem(
                    position=r["position"],
                    kind=RecordKind(r["kind"]),
                    key=r["record_key"],
                    hash=r["record_hash"],
                    payload=r["payload"],
                    result_status=None if r["result_status"] is None else ItemStatus(r["result_status"]),
                    resource_id=r["resource_id"],
                    message=r["message"],
                )
                for r in conn.execute(query).mappings()
            ]

    # -- status queries --------------------------------------------------------------------

    def record_counts(self) -> list[RecordCount]:
        """How many records per integration, kind and status; of synced courses, how many archived."""
        # A course archived by syncer (or adopted archived by a refresh) stays `synced`: its last
        # operation, the archive, succeeded; `live` false tells it from a course on the platform.
        archived = case((and_(records.c.kind == RecordKind.COURSE, ~records.c.live), 1), else_=0)
        query = (
            select(records.c.integration, records.c.kind, records.c.status, func.count(), func.sum(archived))
            .group_by(records.c.integration, records.c.kind, records.c.status)
            .order_by(records.c.integration, records.c.kind, records.c.status)
        )
        with self.translate_errors("counting records"), self._engine.connect() as conn:
            return [
                RecordCount(
                    integration,
                    RecordKind(kind),
                    RecordStatus(status),
                    int(count),
                    int(gone or 0) if status == RecordStatus.SYNCED else 0,
                )
                for integration, kind, status, count, gone in conn.execute(query)
            ]

    def rejected_records(self, integration: str | None = None, limit: int = 1000) -> list[RejectedRecord]:
        """Records the API refused, with its message, newest first."""
        query = select(records).where(records.c.status == RecordStatus.REJECTED)
        if integration is not None:
            query = query.where(records.c.integration == integration)
        query = query.order_by(records.c.updated_at.desc(), records.c.id).limit(limit)
        with self.translate_errors("reading rejected records"), self._engine.connect() as conn:
            return [
                RejectedRecord(
                    integration=r["integration"],
                    kind=RecordKind(r["kind"]),
                    key=r["key"],
                    origin=r["origin"],
                    message=r["message"],
                    updated_at=r["updated_at"],
                )
                for r in conn.execute(query).mappings()
            ]

    def invalid_rows(self, integration: str | None = None, limit: int = 1000) -> list[InvalidRow]:
        """The invalid rows of the last plan, in source order."""
        with self.translate_errors("reading invalid rows"), self._engine.connect() as conn:
            return [
                InvalidRow(
                    integration=r["integration"],
                    kind=RecordKind(r["kind"]),
                    origin=r["origin"],
                    field=r["field"],
                    reason=r["reason"],
                    key=r["key"],
                )
                for r in conn.execute(_plan_rows(invalid_rows_table, integration, limit)).mappings()
            ]

    def invalid_row_counts(self) -> dict[str, int]:
        """How many invalid rows the last plan found, per integration."""
        with self.translate_errors("counting invalid rows"), self._engine.connect() as conn:
            return _counts_by_integration(conn, invalid_rows_table)

    def held_records(self, integration: str | None = None, limit: int = 1000) -> list[UnsafeStat]:
        """The statistics the last plan held, in plan order."""
        with self.translate_errors("reading held statistics"), self._engine.connect() as conn:
            return [
                UnsafeStat(
                    integration=r["integration"],
                    key=r["key"],
                    origin=r["origin"],
                    action=ChangeAction(r["action"]),
                    effect=Effect(r["effect"]),
                    reason=r["reason"],
                )
                for r in conn.execute(_plan_rows(held_records_table, integration, limit)).mappings()
            ]

    def held_counts(self) -> dict[str, int]:
        """How many statistics the last plan held, per integration."""
        with self.translate_errors("counting held statistics"), self._engine.connect() as conn:
            return _counts_by_integration(conn, held_records_table)


def _plan_rows(table: Table, integration: str | None, limit: int) -> Select[Any]:
    """The rows the last plan stored in ``table`` (invalid rows, held statistics), in plan order."""
    query = select(table)
    if integration is not None:
        query = query.where(table.c.integration == integration)
    return query.order_by(table.c.id).limit(limit)


def _counts_by_integration(conn: Connection, table: Table) -> dict[str, int]:
    query = select(table.c.integration, func.count()).group_by(table.c.integration)
    return {name: int(count) for name, count in conn.execute(query)}
