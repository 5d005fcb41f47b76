"""Initial ledger schema: runs, integrations, records, operations and their items, locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 22:03:41.121371
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "integrations",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("api_id", sa.String(length=24), nullable=True),
        sa.Column("platform", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_integrations")),
    )
    op.create_table(
        "invalid_rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("course", "stat", "archive", name="recordkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invalid_rows")),
    )
    with op.batch_alter_table("invalid_rows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invalid_rows_integration"), ["integration"], unique=False)

    op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_state")),
    )
    # The single generation row: every write to records or operations bumps it.
    ledger_state = sa.table(
        "ledger_state", sa.column("id", sa.Integer()), sa.column("generation", sa.BigInteger())
    )
    op.bulk_insert(ledger_state, [{"id": 1, "generation": 0}])
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "succeeded",
                "failed",
                "interrupted",
                name="runstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_locks_run_id_runs")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "importExternalCourses",
                "importExternalStatistics",
                "archiveExternalCourses",
                name="operationtype",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("api_id", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "prepared",
                "pending",
                "queued",
                "running",
                "completed",
                "error",
                name="operationstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_operations_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operations_integration"), ["integration"], unique=False)
        batch_op.create_index(batch_op.f("ix_operations_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_operations_status"), ["status"], unique=False)

    op.create_table(
        "operation_items",
        sa.Column("operation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "kind",
            sa.Enum("course", "stat", "archive", name="recordkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("record_key", sa.Text(), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "result_status",
            sa.Enum("success", "error", name="itemstatus", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column("resource_id", sa.String(length=255), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_operation_items_operation_id_operations")
        ),
        sa.PrimaryKeyConstraint("operation_id", "position", name=op.f("pk_operation_items")),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("course", "stat", "archive", name="recordkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "synced", "rejected", name="recordstatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("last_operation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["last_operation_id"], ["operations.id"], name=op.f("fk_records_last_operation_id_operations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("integration", "kind", "key", name=op.f("uq_records_integration_kind_key")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_last_operation_id"), ["last_operation_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_last_operation_id"))

    op.drop_table("records")
    op.drop_table("operation_items")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operations_status"))
        batch_op.drop_index(batch_op.f("ix_operations_run_id"))
        batch_op.drop_index(batch_op.f("ix_operations_integration"))

    op.drop_table("operations")
    op.drop_table("locks")
    op.drop_table("runs")
    op.drop_table("ledger_state")
    with op.batch_alter_table("invalid_rows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invalid_rows_integration"))

    op.drop_table("invalid_rows")
    op.drop_table("integrations")
