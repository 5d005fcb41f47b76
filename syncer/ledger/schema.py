"""The ledger's schema: its tables as SQLAlchemy models, their enums, and their Table objects.

The Alembic scripts in ``migrations/`` create and change these tables (``migrations/env.py`` compares
them with ``Base.metadata``); the other modules of this package read and write them through the
Table objects at the end (``records``, ``operations``, ...).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from syncer.models import OperationStatus, OperationType, RecordKind, RecordStatus

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "DriftRow",
    "ForeignAttemptRow",
    "HeldRecordRow",
    "IntegrationGenerationRow",
    "IntegrationRow",
    "InvalidRowRow",
    "ItemStatus",
    "LedgerState",
    "LockRow",
    "OperationItemRow",
    "OperationRow",
    "PlatformCourseRow",
    "PlatformPacingRow",
    "PlatformSlotRow",
    "PlatformUserRow",
    "RecordRow",
    "RunRow",
    "RunStatus",
    "drift_table",
    "foreign_attempts_table",
    "generations_table",
    "held_records_table",
    "integrations_table",
    "invalid_rows_table",
    "ledger_state",
    "locks_table",
    "operation_items",
    "operations",
    "platform_courses_table",
    "platform_pacing_table",
    "platform_slots_table",
    "platform_users_table",
    "records",
    "runs",
]


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


SYNCED_ONLY = text(f"status = '{RecordStatus.SYNCED.value}'")
"""The condition of the partial digest index. A query uses the index when it asks for
``status = 'synced'``, as a literal or a bound parameter (SQLite plans with the bound value;
PostgreSQL's custom plans too): ``tests/ledger/test_ledger.py`` checks the planner's probe."""


def _enum(cls: type[StrEnum]) -> Enum:
    # Stored as text (portable; adding a value needs no ALTER TYPE); length leaves room to grow.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


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
    """One row: what the ledger knows of the platform as a whole (not per integration)."""

    __tablename__ = "ledger_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # When `syncer refresh --users` last listed the platform's learners: the learner check of
    # the plan is on from then (docs/refresh.md); None: never listed, the check is off.
    users_listed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IntegrationGenerationRow(Base):
    """An integration's ledger generation, bumped by every write to its records, operations or
    platform rows: a saved plan is stale once the generation of one of its integrations moved."""

    __tablename__ = "integration_generations"

    integration: Mapped[str] = mapped_column(String(255), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


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
    # The exit status the command ended with and, when an error stopped it, its one-line message
    # (already scrubbed of secrets); None while running, and for runs recorded before 0005.
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class IntegrationRow(Base):
    """A config integration name and its 360Learning id: the id is its identity, the name a label.

    ``group_id`` and ``platform`` let a renamed key be recognised without calling the API;
    ``refreshed_at``: when the platform was last read back for it (syncer/refresh).
    """

    __tablename__ = "integrations"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_id: Mapped[str | None] = mapped_column(String(24))
    platform: Mapped[str | None] = mapped_column(String(255))
    group_id: Mapped[str | None] = mapped_column(String(24))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
        # mapped again); live makes it covering, so no table row is read. A digest is keyed by
        # its integration and kind (syncer/sources/digest.py): they need not be in the index,
        # whose probes are then twice as fast. Synced records only (migration 0008): a digest is
        # a hash, so every entry lands on a random page; a pending record would have one written
        # on its insert and moved again when synced.
        Index(
            "ix_records_synced_digest",
            "source_digest",
            "live",
            sqlite_where=SYNCED_ONLY,
            postgresql_where=SYNCED_ONLY,
        ),
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
    # syncer/sources/digest.py. A row whose digest matches a synced record is unchanged without mapping.
    source_digest: Mapped[int | None] = mapped_column(BigInteger)
    # Statistics only (syncer/plan/attempts.py): the (course, learner) pair as models.stat_group
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


class PlatformPacingRow(Base):
    """A platform's write clock, shared by its runners (syncer/ledger/governor.py): the earliest
    moment, in seconds since the epoch on the database server's clock, of its next write."""

    __tablename__ = "platform_pacing"

    platform: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float)


class PlatformSlotRow(Base):
    """Who holds one of a platform's operation slots (the advisory lock is the guard): None when
    its last holder gave it back cleanly, so a new holder knows whether to look at the platform."""

    __tablename__ = "platform_slots"

    platform: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(255))


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


class PlatformCourseRow(Base):
    """An external course as the last refresh found it on the platform."""

    __tablename__ = "platform_courses"

    integration: Mapped[str] = mapped_column(String(255), primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    course_id: Mapped[str | None] = mapped_column(String(24))  # None: not on the platform
    status: Mapped[str] = mapped_column(String(16))  # published, archived, missing
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PlatformUserRow(Base):
    """A learner of the platform, as a refresh read it (its e-mail lowercased; never printed)."""

    __tablename__ = "platform_users"

    user_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    mail: Mapped[str | None] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(String(16))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ForeignAttemptRow(Base):
    """An attempt on the platform that no statistic of syncer's made (a launch, another tool).

    Keyed by the (course, learner) pair as ``records.grp`` writes it: the attempt prediction
    meets it like a confirmed attempt (syncer/plan/attempts.py).
    """

    __tablename__ = "foreign_attempts"
    __table_args__ = (Index("ix_foreign_attempts_pair", "integration", "grp"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    integration: Mapped[str] = mapped_column(String(255))
    grp: Mapped[str] = mapped_column(Text)
    first_at: Mapped[str] = mapped_column(Text)
    att_end: Mapped[str] = mapped_column(Text)
    att_done: Mapped[bool] = mapped_column(Boolean)
    attempt_id: Mapped[str | None] = mapped_column(String(24))


class DriftRow(Base):
    """A difference the last refresh of an integration found between the ledger and the platform."""

    __tablename__ = "drift"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    integration: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # course, stat, integration
    key: Mapped[str] = mapped_column(Text)
    what: Mapped[str] = mapped_column(String(32))  # archived, edited, missing, recreated, ...
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    restore: Mapped[bool] = mapped_column(Boolean)  # the next apply restores it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SourceCursorRow(Base):
    """Where an incremental SQL source's next read starts, per integration and kind reading it.

    ``value`` is the greatest cursor value of the last read whose records are all recorded (JSON
    with its type, syncer/sources/incremental.py); ``query_digest`` covers the query and the
    cursor column: when either changes, the next read is a full one (docs/incremental.md).
    """

    __tablename__ = "source_cursors"

    integration: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    query_digest: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)  # None: the source had no row yet
    full_read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A full read began sending and has not ended well: the next read is a full one again (rows
    # before ``value`` it found changed are not all on the platform).
    full_due: Mapped[bool] = mapped_column(Boolean, server_default=false())
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(Integer)


records = cast(Table, RecordRow.__table__)
held_records_table = cast(Table, HeldRecordRow.__table__)
operations = cast(Table, OperationRow.__table__)
operation_items = cast(Table, OperationItemRow.__table__)
runs = cast(Table, RunRow.__table__)
integrations_table = cast(Table, IntegrationRow.__table__)
invalid_rows_table = cast(Table, InvalidRowRow.__table__)
ledger_state = cast(Table, LedgerState.__table__)
generations_table = cast(Table, IntegrationGenerationRow.__table__)
locks_table = cast(Table, LockRow.__table__)
platform_pacing_table = cast(Table, PlatformPacingRow.__table__)
platform_slots_table = cast(Table, PlatformSlotRow.__table__)
platform_courses_table = cast(Table, PlatformCourseRow.__table__)
platform_users_table = cast(Table, PlatformUserRow.__table__)
foreign_attempts_table = cast(Table, ForeignAttemptRow.__table__)
drift_table = cast(Table, DriftRow.__table__)
source_cursors_table = cast(Table, SourceCursorRow.__table__)
