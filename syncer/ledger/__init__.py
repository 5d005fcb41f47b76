"""Stage 4, the ledger: syncer's memory (SQLite or PostgreSQL), its schema, migrations and locks."""

from __future__ import annotations

from syncer.ledger.store import (
    SCHEMA_REVISION as SCHEMA_REVISION,
)
from syncer.ledger.store import (
    Base as Base,
)
from syncer.ledger.store import (
    ItemStatus as ItemStatus,
)
from syncer.ledger.store import (
    Ledger as Ledger,
)
from syncer.ledger.store import (
    LockRow as LockRow,
)
from syncer.ledger.store import (
    OperationInfo as OperationInfo,
)
from syncer.ledger.store import (
    OperationItem as OperationItem,
)
from syncer.ledger.store import (
    RecordCount as RecordCount,
)
from syncer.ledger.store import (
    RejectedRecord as RejectedRecord,
)
from syncer.ledger.store import (
    RunInfo as RunInfo,
)
from syncer.ledger.store import (
    RunStatus as RunStatus,
)
from syncer.ledger.store import (
    alembic_config as alembic_config,
)
from syncer.ledger.store import (
    operations as operations,
)
from syncer.ledger.store import (
    records as records,
)
from syncer.ledger.store import (
    request_hash as request_hash,
)

__all__ = [
    "SCHEMA_REVISION",
    "Base",
    "ItemStatus",
    "Ledger",
    "LockRow",
    "OperationInfo",
    "OperationItem",
    "RecordCount",
    "RejectedRecord",
    "RunInfo",
    "RunStatus",
    "alembic_config",
    "operations",
    "records",
    "request_hash",
]
