"""Stage 4, the ledger: syncer's memory (SQLite or PostgreSQL), its schema, migrations and locks.

``schema`` (the tables), ``migrate`` (engine, open lock, Alembic to head), ``base`` (opening,
closing, error translation), ``writes`` and ``store`` (the ``Ledger``: its writes, its reads),
``rows`` (what the reads return), ``lock`` (run locks), ``governor`` (the platform's
operation slots and write clock, shared by the runners of one platform).

Every write to the ledger's tables goes through this package: the ``Ledger``'s methods
(``writes.py``), the lock holder rows (``lock.py``), the platform's write clock and slot rows
(``governor.py``), the migrations (``migrate.py``), and the plan's writes through
``planning.py``. Other stages may read the Table objects, never write them.
"""

from __future__ import annotations

from syncer.ledger.migrate import SCHEMA_REVISION, alembic_config
from syncer.ledger.platform import DriftInfo, IntegrationInfo
from syncer.ledger.rows import OperationInfo, OperationItem, RecordCount, RejectedRecord, RunInfo
from syncer.ledger.schema import Base, ItemStatus, LockRow, RunStatus, operations, records
from syncer.ledger.store import Ledger
from syncer.ledger.writes import request_hash

__all__ = [
    "SCHEMA_REVISION",
    "Base",
    "DriftInfo",
    "IntegrationInfo",
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
