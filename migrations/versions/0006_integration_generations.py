"""A ledger generation per integration: ``integration_generations`` replaces ``ledger_state.generation``.

A write that changes an integration's records, operations or platform rows bumps that
integration's row (an upsert); a saved plan compares only the generations of its integrations,
so writes for B leave a plan for A valid, and no single row is updated by every writer (it was
a hot row on PostgreSQL with several runners). Rows start at 0 when first bumped: plan files
written before this revision carry the old single generation and are refused (plan again).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "integration_generations",
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("integration", name=op.f("pk_integration_generations")),
    )
    with op.batch_alter_table("ledger_state", schema=None) as batch_op:
        batch_op.drop_column("generation")


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("ledger_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"))
    op.drop_table("integration_generations")
