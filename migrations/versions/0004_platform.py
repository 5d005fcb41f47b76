"""What the platform holds, as the last refresh read it back (syncer/refresh, docs/refresh.md).

``integrations`` gains ``group_id`` (a renamed key is recognised by platform and group without
calling the API) and ``refreshed_at``; ``ledger_state`` gains ``users_listed_at`` (the learner
check is on once the platform's learners were listed). New tables: ``platform_courses`` (the
integration's external courses: id and status), ``platform_users`` (learners: id, e-mail,
status), ``foreign_attempts`` (attempts no statistic of syncer's made, by course/learner pair)
and ``drift`` (what the last refresh found different from the ledger).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("ledger_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("users_listed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "platform_courses",
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("course_id", sa.String(length=24), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("integration", "external_id", name=op.f("pk_platform_courses")),
    )
    op.create_table(
        "platform_users",
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("mail", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_platform_users")),
    )
    with op.batch_alter_table("platform_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_users_mail"), ["mail"], unique=False)
    op.create_table(
        "foreign_attempts",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column("grp", sa.Text(), nullable=False),
        sa.Column("first_at", sa.Text(), nullable=False),
        sa.Column("att_end", sa.Text(), nullable=False),
        sa.Column("att_done", sa.Boolean(), nullable=False),
        sa.Column("attempt_id", sa.String(length=24), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_foreign_attempts")),
    )
    with op.batch_alter_table("foreign_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_foreign_attempts_pair", ["integration", "grp"], unique=False)
    op.create_table(
        "drift",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("what", sa.String(length=32), nullable=False),
        sa.Column("old", sa.Text(), nullable=True),
        sa.Column("new", sa.Text(), nullable=True),
        sa.Column("restore", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift")),
    )
    with op.batch_alter_table("drift", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_integration"), ["integration"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("drift", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_integration"))
    op.drop_table("drift")
    with op.batch_alter_table("foreign_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_foreign_attempts_pair")
    op.drop_table("foreign_attempts")
    with op.batch_alter_table("platform_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_users_mail"))
    op.drop_table("platform_users")
    op.drop_table("platform_courses")
    with op.batch_alter_table("ledger_state", schema=None) as batch_op:
        batch_op.drop_column("users_listed_at")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("refreshed_at")
        batch_op.drop_column("group_id")
