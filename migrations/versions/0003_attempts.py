"""Statistics remember the attempt the platform holds for them; held statistics are listed.

``records`` gains, for statistics: ``grp`` (the course/learner pair, as ``models.stat_group``
writes it), ``first_at`` (its ``firstActivityAt``) and the attempt last confirmed by the platform
(``att_end``: its ``lastActivityAt``, ``att_done``: completed), which the planner's attempt
prediction reads (syncer/attempts.py). ``held_records`` lists the statistics the last plan of an
integration held because of their predicted effect.

Existing synced statistics are filled from their payload (what the platform confirmed last).
A pending or rejected statistic's last confirmed attempt is not known: it stays empty.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grp", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("first_at", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("att_end", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("att_done", sa.Boolean(), nullable=True))
    op.create_table(
        "held_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("integration", sa.String(length=255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("effect", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_records")),
    )
    with op.batch_alter_table("held_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_held_records_integration"), ["integration"], unique=False)
    _fill()
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index("ix_records_pair", ["integration", "kind", "grp"], unique=False)


def _fill() -> None:
    conn = op.get_bind()
    records = sa.table(
        "records",
        sa.column("id", sa.BigInteger()),
        sa.column("kind", sa.String()),
        sa.column("key", sa.Text()),
        sa.column("status", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("grp", sa.Text()),
        sa.column("first_at", sa.Text()),
        sa.column("att_end", sa.Text()),
        sa.column("att_done", sa.Boolean()),
    )
    c = records.c
    update = (
        sa.update(records)
        .where(c.id == sa.bindparam("rid"))
        .values(
            grp=sa.bindparam("g"),
            first_at=sa.bindparam("f"),
            att_end=sa.bindparam("e"),
            att_done=sa.bindparam("d"),
        )
    )
    last = -1
    while True:
        rows = conn.execute(
            sa.select(c.id, c.key, c.status, c.payload)
            .where(c.kind == "stat", c.id > last)
            .order_by(c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        conn.execute(update, [_values(*row) for row in rows])
        last = rows[-1][0]


def _values(rid: int, key: str, status: str, payload: Any) -> dict[str, Any]:
    parts = orjson.loads(key)
    values: dict[str, Any] = {
        "rid": rid,
        "g": orjson.dumps(parts[:4]).decode(),
        "f": parts[4],
        "e": None,
        "d": None,
    }
    if status == "synced" and isinstance(payload, dict):
        values["e"] = payload.get("lastActivityAt")
        values["d"] = float(payload.get("progress") or 0) >= 100
    return values


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("held_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_held_records_integration"))
    op.drop_table("held_records")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_pair")
        batch_op.drop_column("att_done")
        batch_op.drop_column("att_end")
        batch_op.drop_column("first_at")
        batch_op.drop_column("grp")
