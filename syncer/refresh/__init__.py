"""Stage 7a, refresh: the platform read back into the ledger (docs/refresh.md).

``reads`` (the read endpoints, paced and several at once), ``run`` (identity, courses, attempts,
learners: adopted, drift, foreign attempts). Between the API client and apply: apply refreshes an
integration the ledger knows nothing of before it plans.
"""

from __future__ import annotations

from syncer.refresh.run import (
    READ_SCOPES,
    IntegrationRefresh,
    RefreshReport,
    list_learners,
    refresh_integrations,
    run_refresh,
)

__all__ = [
    "READ_SCOPES",
    "IntegrationRefresh",
    "RefreshReport",
    "list_learners",
    "refresh_integrations",
    "run_refresh",
]
