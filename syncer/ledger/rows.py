"""What the ledger's reads return: frozen dataclasses of runs, operations, items and records.

Callers get these, never SQLAlchemy rows; ``operation_info`` builds one from a row of ``operations``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncer.ledger.schema import ItemStatus, RunStatus
from syncer.models import OperationStatus, OperationType, RecordKind, RecordStatus

__all__ = [
    "OperationInfo",
    "OperationItem",
    "RecordCount",
    "RejectedRecord",
    "RunInfo",
    "operation_info",
]


@dataclass(frozen=True, slots=True)
class OperationInfo:
    """An operation as the ledger knows it."""

    id: int
    run_id: int | None
    integration: str
    type: OperationType
    request_hash: str
    item_count: int
    location: str | None
    api_id: str | None
    status: OperationStatus
    success_count: int
    error_count: int
    error_message: str | None
    created_at: datetime
    submitted_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class OperationItem:
    """One item of an operation, with its result once known."""

    position: int
    kind: RecordKind
    key: str
    hash: str
    payload: Mapping[str, Any]
    result_status: ItemStatus | None
    resource_id: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class RecordCount:
    """How many records of one kind are in one status, per integration.

    ``archived``: how many of ``count`` are courses synced by an archive (no longer live).
    """

    integration: str
    kind: RecordKind
    status: RecordStatus
    count: int
    archived: int = 0


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record the API refused, with its message."""

    integration: str
    kind: RecordKind
    key: str
    origin: str
    message: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as recorded."""

    id: int
    command: str
    host: str
    pid: int
    started_at: datetime
    ended_at: datetime | None
    status: RunStatus
    summary: Mapping[str, Any] | None
    exit_code: int | None = None  # how the command ended; None while running (or before 0005)
    error: str | None = None  # the one-line message of the error that stopped it


def operation_info(r: Any) -> OperationInfo:
    """An OperationInfo from a row of the ``operations`` table."""
    return OperationInfo(
        id=r["id"],
        run_id=r["run_id"],
        integration=r["integration"],
        type=OperationType(r["type"]),
        request_hash=r["request_hash"],
        item_count=r["item_count"],
        location=r["location"],
        api_id=r["api_id"],
        status=OperationStatus(r["status"]),
        success_count=r["success_count"],
        error_count=r["error_count"],
        error_message=r["error_message"],
        created_at=r["created_at"],
        submitted_at=r["submitted_at"],
        ended_at=r["ended_at"],
    )
