"""Pacing requests: the write and read rate limits, backoff between retries, ``Retry-After``."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from syncer.errors import SyncerError

__all__ = ["Backoff", "RateLimiter", "retry_after"]


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff between retries: ``initial * 2**n``, capped at ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); never below ``retry_after``."""
        ceiling = min(self.maximum, self.initial * 2.0**attempt)
        # Jitter spreads concurrent clients that failed together; half the ceiling is the floor.
        delay = ceiling * (0.5 + random.random() / 2)
        return max(delay, retry_after or 0.0)


class RateLimiter:
    """Spaces requests evenly: never more than ``rate`` requests in any ``window`` seconds.

    Slots are reserved in order, ``window / rate`` apart; the window is then checked against the
    moments requests really left. A sleeper that woke late (a busy event loop) went out later than
    its slot: a later request, reserved before, must not go out less than a window after it.
    """

    def __init__(self, rate: float, *, window: float = 1.0, margin: float = 0.02) -> None:
        if rate <= 0:
            raise SyncerError(f"rate limit must be positive, got {rate}")
        self._interval = window / rate
        self._window = window
        # A small margin absorbs the jitter between leaving here and reaching the server.
        self._margin = margin
        self._sent: deque[float] = deque(maxlen=max(1, math.floor(rate)))
        self._next = 0.0

    async def acquire(self) -> None:
        """Wait for this request's slot."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Reserve before sleeping (no await in between), so concurrent callers queue up in order.
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
        while len(self._sent) == self._sent.maxlen:
            wait = self._sent[0] + self._window + self._margin - loop.time()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self._sent.append(loop.time())  # no await since the check: the window holds
