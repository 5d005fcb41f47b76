"""The governor of the platform's limits, on the event loop: operation slots and the write rate.

A slot is held from a batch's submission (or a resumed operation's adoption) until its operation
is seen finished by polling. ``Governor`` counts this run's slots itself, and when the ledger can
share them (``syncer.ledger.governor``) takes each one from the platform's shared pool too, so
that every runner of one platform together keeps at most ``api.limits.concurrent_operations``
unfinished and sends at most ``api.limits.requests_per_second`` writes. Its blocking calls (a
database round trip, a file lock) run in its own thread, in order, never on the event loop.

Other tools may have operations unfinished on the same platform. Before a new submission takes a
slot, the governor counts the platform's unfinished operations (``GET /api/v2/bulk/operations``,
one read per unfinished status): on its first slot, then at most every ``CHECK_SECONDS``, and on
the next slot after a submission was refused for concurrency (429
``bulkOperationsConcurrencyLimitReached``), and when the slot's last holder did not give it back
cleanly (it died holding it: its operation may still run). While the platform is full it gives the
slot back, marked for the next taker to look too, and looks again every ``FULL_CHECK_SECONDS``.
A resumed operation is already among those counted: its slot is taken without looking.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

from syncer.api.client import ApiClient
from syncer.config import ApiConfig
from syncer.errors import ApiError
from syncer.ledger import Ledger
from syncer.ledger.governor import SharedLimits, open_shared_limits, platform_key
from syncer.models import OperationStatus
from syncer.progress import event

__all__ = ["Governor"]

T = TypeVar("T")

POLL_SECONDS = 0.05
"""How often a runner waiting for a shared slot tries again (jittered)."""
CHECK_SECONDS = 10.0
"""The longest a runner goes on trusting its last count of the platform's unfinished operations."""
FULL_CHECK_SECONDS = 0.5
"""How often the platform's operations are counted again while they fill its limit."""
SLOW_WRITE_SECONDS = 1.0
"""A wait for a write's turn on the shared clock longer than this is logged."""
_UNFINISHED = (OperationStatus.PENDING, OperationStatus.QUEUED, OperationStatus.RUNNING)
# Operations older than this are not looked for: none stays unfinished that long.
_LOOKBACK = timedelta(days=1)


class Governor:
    """This run's share of the platform's operation slots and write rate."""

    def __init__(self, shared: SharedLimits | None, slots: int) -> None:
        self._shared = shared
        self._slots = max(1, slots)
        self._held: list[int] = []  # this run's slots (shared slot numbers, or -1 when not shared)
        self._freed = asyncio.Event()
        self._thread: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncer-governor") if shared else None
        )
        self._client: ApiClient | None = None
        self._checked_at: float | None = None
        self._refusals_seen = 0
        self._full = False
        self._closed = False
        self._counted = 0  # the platform's unfinished operations at the last count

    @classmethod
    def open(cls, ledger: Ledger, api: ApiConfig) -> Governor:
        """The governor of ``api``'s platform, shared through ``ledger`` where it can be."""
        limits = api.limits
        shared = open_shared_limits(
            ledger,
            platform_key(api.base_url, api.client_id),
            slots=limits.concurrent_operations,
            rate=limits.requests_per_second,
        )
        return cls(shared, limits.concurrent_operations)

    @property
    def shared(self) -> bool:
        """Whether the slots and the write rate are shared with the platform's other runners."""
        return self._shared is not None

    @property
    def held(self) -> int:
        """Slots this run holds now."""
        return len(self._held)

    def bind(self, client: ApiClient) -> None:
        """Pace ``client``'s writes by the shared clock, and count the platform's operations with it."""
        self._client = client
        if self._shared is not None:
            client.pace_writes(self.pace_write)

    async def _call(self, fn: Callable[[], T]) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def acquire(self, *, look: bool = True) -> None:
        """Wait for a slot; ``look=False`` for an operation already on the platform (a resume)."""
        waiting_since: float | None = None  # for the log lines only
        while True:
            if len(self._held) < self._slots:
                taken = (-1, True) if self._shared is None else await self._call(self._shared.try_take)
                if taken is not None:
                    slot, clean = taken
                    # A slot whose holder died may still have its operation running: look now.
                    if not look or await self._platform_has_room(force=not clean):
                        self._held.append(slot)
                        if waiting_since is not None:
                            self._log_wait_end(waiting_since)
                        return
                    self._give_back(slot, clean=False)  # the next taker looks too
                if waiting_since is None:
                    # Each wait: a cron log shows why this run is slower than usual.
                    waiting_since = asyncio.get_running_loop().time()
                    self._log_wait_start(shared_full=taken is None)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS * (0.5 + random.random())):
                        await self._wait_freed()
            else:
                await self._wait_freed()

    def _log_wait_start(self, *, shared_full: bool) -> None:
        if shared_full:
            why = (
                f"the platform's {self._slots} slots are all taken ({len(self._held)} by this run, "
                "the others by other runners of this platform)"
            )
        else:
            why = (
                f"{self._counted} operations unfinished on the platform (limit {self._slots}; "
                f"{len(self._held)} of them this run's): other runners or tools"
            )
        event(
            f"waiting for an operation slot: {why}",
            held=len(self._held),
            slots=self._slots,
            unfinished=None if shared_full else self._counted,
            _wait=None,
            _wait_key="governor",
        )

    def _log_wait_end(self, since: float) -> None:
        waited = asyncio.get_running_loop().time() - since
        event(
            f"got an operation slot after {waited:.1f} s",
            waited_seconds=round(waited, 3),
            _wait=0,
            _wait_key="governor",
        )

    async def _wait_freed(self) -> None:
        self._freed.clear()
        await self._freed.wait()

    def release(self) -> None:
        """Free one slot of this run: its operation was seen finished (or never accepted)."""
        if not self._held:
            return
        self._give_back(self._held.pop())
        self._freed.set()

    def _give_back(self, slot: int, *, clean: bool = True) -> None:
        if self._shared is None or slot < 0 or self._closed:
            return
        # Queued in order behind the governor's other calls; a failure leaves the slot to close().
        assert self._thread is not None
        self._thread.submit(partial(self._shared.give_back, slot, clean=clean))

    async def pace_write(self) -> None:
        """Wait for this write's send time on the platform's shared clock."""
        if self._shared is None or self._closed:
            return  # closed: the run is over and sends nothing more
        wait = await self._call(self._shared.reserve_write)
        if wait >= SLOW_WRITE_SECONDS:  # the usual spacing (a tenth of a second) is not news
            event(
                f"waiting {wait:.1f} s for this write's turn on the platform's shared write clock "
                f"({len(self._held)} slots held by this run; other runners write too)",
                wait_seconds=round(wait, 3),
                _wait=wait,
                _wait_key="write clock",
                _status="waiting {left} s for a write's turn (shared with other runners)",
            )
        if wait > 0:
            await asyncio.sleep(wait)

    async def _platform_has_room(self, *, force: bool = False) -> bool:
        """Whether the platform's unfinished operations leave room for one more (see the module)."""
        client = self._client
        if client is None:
            return True
        now = asyncio.get_running_loop().time()
        refused = client.concurrency_refusals != self._refusals_seen
        due = FULL_CHECK_SECONDS if (self._full or refused or force) else CHECK_SECONDS
        if self._checked_at is not None and now - self._checked_at < due:
            return not self._full
        self._checked_at = now
        self._refusals_seen = client.concurrency_refusals
        since = datetime.now(UTC) - _LOOKBACK
        count = 0
        try:
            for status in _UNFINISHED:
                # Read to the end (a page or two): an abandoned page iterator would stay open.
                count += sum([1 async for _ in client.fetch_operations(status=status, created_gte=since)])
                if count >= self._slots:
                    break
        except ApiError as exc:
            # Counting is a courtesy to other tools; the shared slots still hold. Say it once.
            if not self._full:
                event(f"could not count the platform's unfinished operations: {exc}")
            self._full = False
            return True
        self._counted = count  # for the log lines only
        self._full = count >= self._slots
        return not self._full

    async def close(self) -> None:
        """Free every slot and let go of the shared limits (the run is over or stopping)."""
        if self._closed:
            return
        self._closed = True
        self._held.clear()
        if self._shared is not None and self._thread is not None:
            try:
                await self._call(self._shared.close)
            finally:
                self._thread.shutdown(wait=True)
