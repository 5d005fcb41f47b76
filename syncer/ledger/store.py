"""The ledger: what was sent, every bulk operation and its per-item results, runs and locks.

SQLAlchemy 2 models plus a small transactional repository. Every SQLAlchemy error is translated
into LedgerError here (the URL's password never shows). The schema is managed by the Alembic
scripts in ``migrations/``; ``Ledger.open`` upgrades to head.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from syncer.config import redact_url
from syncer.errors import LedgerError
from syncer.models import (
    ChangeAction,
    Effect,
    InvalidRow,
    ItemResult,
    OperationStatus,
    OperationType,
    Record,
    RecordKind,
    RecordStatus,
    UnsafeStat,
    dumps_canonical,
)

__all__ = [
    "Base",
    "Ledger",
    "OperationInfo",
    "OperationItem",
    "RecordCount",
    "RejectedRecord",
    "RunInfo",
    "RunStatus",
]

# An arbitrary constant: the PostgreSQL advisory lock key that serialises migrations.
_MIGRATION_LOCK_KEY = 360_0001
_NOT_SUBMITTED = "never submitted: the run stopped before the request was sent"


class RunStatus(StrEnum):
    """How a run ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ItemStatus(StrEnum):
    """The API's per-item result."""

    SUCCESS = "success"
    ERROR = "error"


def _enum(cls: type[StrEnum]) -> Enum:
    # Stored as text (portable; adding a value needs no ALTER TYPE); length leaves room to grow.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


def _now() -> datetime:
    return datetime.now(UTC)


# BIGINT on PostgreSQL; INTEGER (the rowid alias, the only autoincrementing type) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the ledger's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LedgerState(Base):
    """One row: the ledger generation, bumped by every write to records or operations."""

    __tablename__ = "ledger_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class RunRow(Base):
    """One syncer command run."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IntegrationRow(Base):
    """A config integration name and its 360Learning id."""

    __tablename__ = "integrations"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_id: Mapped[str | None] = mapped_column(String(24))
    platform: Mapped[str | None] = mapped_column(String(255))


class OperationRow(Base):
    """One bulk call, written ahead of its submission."""

    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    integration: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[OperationType] = mapped_column(_enum(OperationType))
    request_hash: Mapped[str] = mapped_column(String(64))
    item_count: Mapped[int] = mapped_column(Integer)
    location: Mapped[str | None] = mapped_column(Text)
    api_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[OperationStatus] = mapped_column(_enum(OperationStatus), index=True)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecordRow(Base):
    """The last state sent (or being sent) of one record."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("integration", "kind", "key"),
        # The planner's look-up by source digest (rows unchanged since they were sent are not
        # mapped again); status and live make it covering, so no table row is read. A digest is
        # keyed by its integration and kind (syncer/scan.py): they need not be in the index,
        # whose probes are then twice as fast.
        Index("ix_records_source_digest", "source_digest", "status", "live"),
        # The attempt prediction reads the other statistics of a (course, learner) pair.
        Index("ix_records_pair", "integration", "kind", "grp"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    integration: Mapped[str] = mapped_column(String(255))
    kind: Mapped[RecordKind] = mapped_column(_enum(RecordKind))
    key: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[RecordStatus] = mapped_column(_enum(RecordStatus))
    live: Mapped[bool] = mapped_column(Boolean, default=False)  # courses: imported, not archived
    last_operation_id: Mapped[int | None] = mapped_column(ForeignKey("operations.id"), index=True)
    message: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(Text)
    # A digest of the source row the content came from (file sources; None otherwise): see
    # syncer/scan.py. A row whose digest matches a synced record is unchanged without mapping.
    source_digest: Mapped[int | None] = mapped_column(BigInteger)
    # Statistics only (syncer/attempts.py): the (course, learner) pair as models.stat_group
    # writes it, the firstActivityAt, and the attempt the platform last confirmed for this
    # record (its lastActivityAt, and whether it is completed); None while never confirmed.
    grp: Mapped[str | None] = mapped_column(Text)
    first_at: Mapped[str | None] = mapped_column(Text)
    att_end: Mapped[str | None] = mapped_column(Text)
    att_done: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OperationItemRow(Base):
    """One item of a bulk call and its result."""

    __tablename__ = "operation_items"

    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[RecordKind] = mapped_column(_enum(RecordKind))
    record_key: Mapped[str] = mapped_column(Text)
    record_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    result_status: Mapped[ItemStatus | None] = mapped_column(_enum(ItemStatus))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(Text)


class LockRow(Base):
    """Who holds a lock (the OS or advisory lock is the real guard; this row names the holder)."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))


class InvalidRowRow(Base):
    """An invalid source row of the last plan of an integration."""

    __tablename__ = "invalid_rows"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    integration: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[RecordKind] = mapped_column(_enum(RecordKind))
    origin: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HeldRecordRow(Base):
    """A statistic the last plan of an integration held: its predicted effect is unsafe."""

    __tablename__ = "held_records"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    integration: Mapped[str] = mapped_column(String(255), index=True)
    key: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(16))
    effect: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


records = cast(Table, RecordRow.__table__)
held_records_table = cast(Table, HeldRecordRow.__table__)
operations = cast(Table, OperationRow.__table__)
operation_items = cast(Table, OperationItemRow.__table__)
runs = cast(Table, RunRow.__table__)
integrations_table = cast(Table, IntegrationRow.__table__)
invalid_rows_table = cast(Table, InvalidRowRow.__table__)
ledger_state = cast(Table, LedgerState.__table__)


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
    """How many records of one kind are in one status, per integration."""

    integration: str
    kind: RecordKind
    status: RecordStatus
    count: int


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


def request_hash(op_type: OperationType, items: Sequence[Record]) -> str:
    """The hash of a bulk request body: the type and the payloads in order."""
    import hashlib

    digest = hashlib.blake2b(op_type.value.encode(), digest_size=16)
    for item in items:
        digest.update(dumps_canonical(item.payload))
        digest.update(b"\n")
    return digest.hexdigest()


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value).decode()


class Ledger:
    """The repository over the ledger database. Methods are transactional and idempotent."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._where = redact_url(url)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Ledger:
        """Connect to the ledger at ``url`` and bring its schema to the migration head."""
        where = redact_url(url)
        try:
            engine = _create_engine(url)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise LedgerError(f"ledger {where}: cannot open: {_describe(exc, url)}") from exc
        ledger = cls(engine, url)
        try:
            with ledger.translate_errors("migrating"), _sqlite_open_lock(url):
                _upgrade(engine, url)
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

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[Connection]:
        # Bump the generation first: on SQLite this takes the write lock at once, so a
        # deferred transaction never fails to upgrade its read lock halfway.
        with self.translate_errors(doing), self._engine.begin() as conn:
            conn.execute(update(ledger_state).values(generation=ledger_state.c.generation + 1))
            yield conn

    def generation(self) -> int:
        """The ledger generation: it changes whenever records or operations change."""
        with self.translate_errors("reading the generation"), self._engine.connect() as conn:
            return int(conn.execute(select(ledger_state.c.generation)).scalar_one())

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

    def finish_run(self, run_id: int, status: RunStatus, summary: Mapping[str, Any] | None = None) -> None:
        """Record the end of a run with its summary."""
        with self.translate_errors("finishing a run"), self._engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(ended_at=_now(), status=status, summary=dict(summary or {}))
            )

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
                )
                for r in rows
            ]

    def get_integration_id(self, name: str) -> str | None:
        """The 360Learning id recorded for a config integration, if any."""
        with self.translate_errors("reading an integration"), self._engine.connect() as conn:
            return conn.execute(
                select(integrations_table.c.api_id).where(integrations_table.c.name == name)
            ).scalar_one_or_none()

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
        with self._write("preparing an operation") as conn:
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
            conn.execute(
                insert(operation_items),
                [
                    {
                        "operation_id": op_id,
                        "position": pos,
                        "kind": item.kind,
                        "record_key": item.key,
                        "record_hash": item.hash,
                        "payload": dict(item.payload),
                    }
                    for pos, item in enumerate(items)
                ],
            )
            if op_type is OperationType.ARCHIVE_COURSES:
                # The course record stays as it is (live, synced) until the archive succeeds;
                # it only learns which operation carries it.
                conn.execute(
                    update(records)
                    .where(
                        records.c.integration == integration,
                        records.c.kind == RecordKind.COURSE,
                        records.c.key == bindparam("k"),
                    )
                    .values(last_operation_id=op_id, updated_at=now),
                    [{"k": item.key} for item in items],
                )
                return op_id
            stmt = _upsert(self.dialect, records)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["integration", "kind", "key"],
                    set_={
                        "hash": stmt.excluded.hash,
                        "payload": stmt.excluded.payload,
                        "status": stmt.excluded.status,
                        "last_operation_id": stmt.excluded.last_operation_id,
                        "message": None,
                        "origin": stmt.excluded.origin,
                        "source_digest": stmt.excluded.source_digest,
                        "grp": stmt.excluded.grp,
                        "first_at": stmt.excluded.first_at,
                        "updated_at": stmt.excluded.updated_at,
                    },
                ),
                [
                    {
                        "integration": integration,
                        "kind": item.kind,
                        "key": item.key,
                        "hash": item.hash,
                        "payload": dict(item.payload),
                        "status": RecordStatus.PENDING,
                        "live": False,
                        "last_operation_id": op_id,
                        "message": None,
                        "origin": item.origin,
                        "source_digest": item.digest,
                        # grp and first_at: statistics only (the attempt prediction's pair)
                        "grp": item.group or None,
                        "first_at": item.order or None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for item in items
                ],
            )
            return op_id

    def mark_submitted(self, op_id: int, location: str, api_id: str) -> None:
        """Record the ``Location`` and API id right after the 202."""
        with self._write("recording a submission") as conn:
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
        with self._write("updating an operation") as conn:
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
        with self._write("recording results") as conn:
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
            items = {
                row.position: row
                for row in conn.execute(
                    select(operation_items.c.position, operation_items.c.record_key).where(
                        operation_items.c.operation_id == op_id
                    )
                )
            }
            item_updates: list[dict[str, Any]] = []
            ok_keys: list[dict[str, Any]] = []
            bad_keys: list[dict[str, Any]] = []
            for result in results:
                item = items.get(result.position)
                if item is None:
                    continue  # a result for an item we never sent: nothing to attach it to
                item_updates.append(
                    {
                        "p": result.position,
                        "rs": ItemStatus.SUCCESS if result.success else ItemStatus.ERROR,
                        "rid": result.resource_id,
                        "msg": result.message,
                    }
                )
                if result.success:
                    ok_keys.append({"k": item.record_key})
                else:
                    bad_keys.append({"k": item.record_key, "msg": result.message or "rejected"})
            if item_updates:
                conn.execute(
                    update(operation_items)
                    .where(
                        operation_items.c.operation_id == op_id,
                        operation_items.c.position == bindparam("p"),
                    )
                    .values(
                        result_status=bindparam("rs"),
                        resource_id=bindparam("rid"),
                        message=bindparam("msg"),
                    ),
                    item_updates,
                )
            kind = RecordKind.STAT if op_type is OperationType.IMPORT_STATS else RecordKind.COURSE
            # Only records still carried by this operation change: a later batch may have
            # taken a record over with newer content.
            target = (
                records.c.integration == integration,
                records.c.kind == kind,
                records.c.key == bindparam("k"),
                records.c.last_operation_id == op_id,
            )
            if ok_keys:
                values: dict[str, Any] = {
                    "status": RecordStatus.SYNCED,
                    "message": None,
                    "updated_at": now,
                }
                if op_type is OperationType.IMPORT_COURSES:
                    values["live"] = True
                elif op_type is OperationType.ARCHIVE_COURSES:
                    values["live"] = False
                else:  # the platform now holds this statistic's attempt as it was sent
                    values["att_end"] = records.c.payload["lastActivityAt"].as_string()
                    values["att_done"] = records.c.payload["progress"].as_float() >= 100
                conn.execute(update(records).where(*target).values(**values), ok_keys)
            if bad_keys:
                conn.execute(
                    update(records)
                    .where(*target)
                    .values(status=RecordStatus.REJECTED, message=bindparam("msg"), updated_at=now),
                    bad_keys,
                )
            conn.execute(
                update(operations)
                .where(operations.c.id == op_id)
                .values(
                    status=final_status,
                    success_count=len(ok_keys),
                    error_count=len(bad_keys),
                    error_message=error_message,
                    ended_at=now,
                )
            )

    def abandon_operation(self, op_id: int) -> None:
        """Close a prepared operation found never submitted; its records stay pending (resent)."""
        with self._write("abandoning an operation") as conn:
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

    def operation(self, op_id: int) -> OperationInfo:
        """One operation by id."""
        with self.translate_errors("reading an operation"), self._engine.connect() as conn:
            row = conn.execute(select(operations).where(operations.c.id == op_id)).mappings().one_or_none()
        if row is None:
            raise LedgerError(f"ledger {self._where}: operation {op_id} does not exist")
        return _operation_info(row)

    def unfinished_operations(self, integration: str | None = None) -> list[OperationInfo]:
        """Operations not yet completed or errored (prepared ones included), oldest first."""
        query = select(operations).where(
            operations.c.status.not_in([OperationStatus.COMPLETED, OperationStatus.ERROR])
        )
        if integration is not None:
            query = query.where(operations.c.integration == integration)
        with self.translate_errors("reading operations"), self._engine.connect() as conn:
            rows = conn.execute(query.order_by(operations.c.id)).mappings()
            return [_operation_info(r) for r in rows]

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
        """How many records per integration, kind and status."""
        query = (
            select(records.c.integration, records.c.kind, records.c.status, func.count())
            .group_by(records.c.integration, records.c.kind, records.c.status)
            .order_by(records.c.integration, records.c.kind, records.c.status)
        )
        with self.translate_errors("counting records"), self._engine.connect() as conn:
            return [
                RecordCount(integration, RecordKind(kind), RecordStatus(status), int(count))
                for integration, kind, status, count in conn.execute(query)
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

    def replace_invalid_rows(self, integrations: Iterable[str], rows: Iterable[InvalidRow]) -> None:
        """Replace the stored invalid rows of these integrations by those of the latest plan."""
        names = list(integrations)
        now = _now()
        with self.translate_errors("storing invalid rows"), self._engine.begin() as conn:
            conn.execute(invalid_rows_table.delete().where(invalid_rows_table.c.integration.in_(names)))
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(
                    {
                        "integration": row.integration,
                        "kind": row.kind,
                        "origin": row.origin,
                        "field": row.field,
                        "reason": row.reason,
                        "key": row.key,
                        "created_at": now,
                    }
                )
                if len(chunk) >= 5000:
                    conn.execute(insert(invalid_rows_table), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(invalid_rows_table), chunk)

    def invalid_rows(self, integration: str | None = None, limit: int = 1000) -> list[InvalidRow]:
        """The invalid rows of the last plan, in source order."""
        query = select(invalid_rows_table)
        if integration is not None:
            query = query.where(invalid_rows_table.c.integration == integration)
        query = query.order_by(invalid_rows_table.c.id).limit(limit)
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
                for r in conn.execute(query).mappings()
            ]

    def invalid_row_counts(self) -> dict[str, int]:
        """How many invalid rows the last plan found, per integration."""
        query = select(invalid_rows_table.c.integration, func.count()).group_by(
            invalid_rows_table.c.integration
        )
        with self.translate_errors("counting invalid rows"), self._engine.connect() as conn:
            return {name: int(count) for name, count in conn.execute(query)}

    def replace_held_records(self, integrations: Iterable[str], held: Iterable[UnsafeStat]) -> None:
        """Replace the held statistics of these integrations by those of the latest plan."""
        names = list(integrations)
        now = _now()
        h = held_records_table
        with self.translate_errors("storing held statistics"), self._engine.begin() as conn:
            conn.execute(h.delete().where(h.c.integration.in_(names)))
            chunk: list[dict[str, Any]] = []
            for stat in held:
                chunk.append(
                    {
                        "integration": stat.integration,
                        "key": stat.key,
                        "origin": stat.origin,
                        "action": stat.action.value,
                        "effect": stat.effect.value,
                        "reason": stat.reason,
                        "created_at": now,
                    }
                )
                if len(chunk) >= 5000:
                    conn.execute(insert(h), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(h), chunk)

    def held_records(self, integration: str | None = None, limit: int = 1000) -> list[UnsafeStat]:
        """The statistics the last plan held, in plan order."""
        h = held_records_table
        query = select(h)
        if integration is not None:
            query = query.where(h.c.integration == integration)
        query = query.order_by(h.c.id).limit(limit)
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
                for r in conn.execute(query).mappings()
            ]

    def held_counts(self) -> dict[str, int]:
        """How many statistics the last plan held, per integration."""
        h = held_records_table
        query = select(h.c.integration, func.count()).group_by(h.c.integration)
        with self.translate_errors("counting held statistics"), self._engine.connect() as conn:
            return {name: int(count) for name, count in conn.execute(query)}


def _operation_info(r: Any) -> OperationInfo:
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


def _upsert(dialect: str, table: Any) -> Any:
    # INSERT ... ON CONFLICT: the same construct on both dialects, each from its own module.
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise LedgerError(f"unsupported ledger database: {dialect} (use SQLite or PostgreSQL)")


def _describe(exc: BaseException, url: str) -> str:
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


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, json_serializer=_json_serializer, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if parsed.database and parsed.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, json_serializer=_json_serializer, pool_pre_ping=True)


@contextlib.contextmanager
def _sqlite_open_lock(url: str) -> Iterator[None]:
    """Serialise opening one SQLite ledger file across processes (a few milliseconds).

    Two runs starting together on a fresh file both switch it to WAL and migrate it; SQLite
    answers one of them "database is locked" at once (switching the journal mode does not wait
    on the busy timeout). An OS lock on ``<ledger>.open.lock``, released by the kernel if its
    holder dies, makes the second wait for the first and then find the schema at head.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    path = Path(str(parsed.database))
    try:
        fd = os.open(path.with_name(path.name + ".open.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield  # a read-only folder: nothing to serialise against, SQLite reports the rest
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def alembic_config(url: str | None = None) -> Any:
    """An Alembic Config whose script location is the installed ``migrations/`` folder."""
    from alembic.config import Config as AlembicConfig

    from syncer.resources import migrations_dir

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


SCHEMA_REVISION = "0003"
"""The newest migration in migrations/versions (a test checks): a ledger already there opens
without importing Alembic (a tenth of a second on every command)."""


def _at_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:  # no such table yet (a new ledger): let Alembic tell
        return None


def _upgrade(engine: Engine, url: str) -> None:
    if _at_revision(engine) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    if current is not None and current not in {
        s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()
    }:
        raise LedgerError(
            f"ledger {redact_url(url)} is at revision {current}, unknown to this syncer; upgrade syncer"
        )
    if engine.dialect.name == "sqlite":
        # One transaction, taken exclusively up front: a second process starting at the same
        # time waits (busy timeout), then finds the schema at head and does nothing.
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        return
    with _pg_migration_lock(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def _pg_migration_lock(engine: Engine) -> Iterator[None]:
    # Two processes starting together must not both migrate: a session-level advisory lock.
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
