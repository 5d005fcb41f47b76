"""The digest index holds synced records only, so that a first sync does not churn it.

``ix_records_source_digest`` (source_digest, status, live) had an entry for every record: a
pending one on its insert, moved again when its result made it synced. A digest is a hash, so
each of those writes lands on a random page of an index as large as the ledger's records; on
a first sync of 1,000,000 statistics that churn was a fifth of syncer's CPU. The planner only
ever looks up synced records by digest (syncer/plan/skim.py), so the index now holds those
alone (a partial index, ``WHERE status = 'synced'``): a record gets its entry once, when it is
synced.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-18 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SYNCED = sa.text("status = 'synced'")


def upgrade() -> None:
    """Apply this revision."""
    op.drop_index("ix_records_source_digest", table_name="records")
    op.create_index(
        "ix_records_synced_digest",
        "records",
        ["source_digest", "live"],
        unique=False,
        sqlite_where=SYNCED,
        postgresql_where=SYNCED,
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_records_synced_digest", table_name="records")
    op.create_index("ix_records_source_digest", "records", ["source_digest", "status", "live"], unique=False)
