"""The platform's limits shared by its runners: ``platform_pacing`` and ``platform_slots``.

``platform_pacing`` holds one write clock per platform (API host and client id, hashed): the
earliest moment, in seconds since the epoch on the database server's clock, of the platform's
next write; each write reserves its send time there in one statement. ``platform_slots`` names
the holder of each of a platform's operation slots; the slot itself is a session-level advisory
lock on PostgreSQL (an OS file lock beside a SQLite ledger), and the row only tells a new
holder whether the last one let go cleanly (docs/scaling.md, syncer/ledger/governor.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-17 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "platform_pacing",
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("platform", name=op.f("pk_platform_pacing")),
    )
    op.create_table(
        "platform_slots",
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("platform", "slot", name=op.f("pk_platform_slots")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("platform_slots")
    op.drop_table("platform_pacing")
