"""Records remember a digest of their source row, so that unchanged rows need no mapping.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 00:25:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_digest", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_records_source_digest",
            ["source_digest", "status", "live"],
            unique=False,
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_source_digest")
        batch_op.drop_column("source_digest")
