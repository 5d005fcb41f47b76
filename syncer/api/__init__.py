"""Stage 6, the API: the 360Learning client and its bulk operations.

- ``client``: the one request funnel (tokens, how an answer is read, retries, lost submissions);
- ``pacing``: the write and read rate limits, backoff, ``Retry-After``;
- ``bulk``: a bulk operation followed to its end, its results, a lost submission found again.
"""

from __future__ import annotations

from syncer.api.bulk import (
    PollPolicy as PollPolicy,
)
from syncer.api.bulk import (
    fetch_item_results as fetch_item_results,
)
from syncer.api.bulk import (
    find_submitted_operation as find_submitted_operation,
)
from syncer.api.bulk import (
    match_results as match_results,
)
from syncer.api.bulk import (
    wait_for_operation as wait_for_operation,
)
from syncer.api.client import (
    ApiClient as ApiClient,
)
from syncer.api.client import (
    operation_id as operation_id,
)
from syncer.api.pacing import (
    Backoff as Backoff,
)
from syncer.api.pacing import (
    RateLimiter as RateLimiter,
)

__all__ = [
    "ApiClient",
    "Backoff",
    "PollPolicy",
    "RateLimiter",
    "fetch_item_results",
    "find_submitted_operation",
    "match_results",
    "operation_id",
    "wait_for_operation",
]
