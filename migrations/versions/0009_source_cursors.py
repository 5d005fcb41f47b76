"""Incremental SQL sources: ``source_cursors``, where each one's next read starts.

One row per integration, kind and source: the greatest cursor value (JSON with its type) of the
last read whose records were all recorded, the digest of the query and cursor column it was read
with, when the source was last read in full (``full_every``), and whether a full read is due
because the last one began sending and did not end (docs/incremental.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-19 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "source_cursors",
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("query_digest", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("full_read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("full_due", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("integration", "kind", "source", name=op.f("pk_source_cursors")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("source_cursors")
