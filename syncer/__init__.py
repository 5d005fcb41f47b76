"""syncer: keep a 360Learning platform in step with an external learning platform."""

from __future__ import annotations

from syncer.errors import (
    ApiError,
    ApiUnavailable,
    BulkJobError,
    ConfigError,
    GuardError,
    LedgerError,
    LockedError,
    SyncerError,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "ApiUnavailable",
    "BulkJobError",
    "ConfigError",
    "GuardError",
    "LedgerError",
    "LockedError",
    "SyncerError",
    "__version__",
]
