"""The pipelined executor: sends a plan's batches through the API, keeping every slot busy.

``Executor`` writes each batch ahead in the ledger before it is sent, keeps up to the API's
``concurrent_operations`` unfinished on the server with the next batches ready, polls each
operation to its end, reads its per-item results and records them. It also follows operations
an earlier run left in flight. Every ledger call it makes runs in its one ledger thread, in order
(product.md §5): a batch is recorded with its request hash before it is sent, its ``Location``
as soon as the 202 is read, its per-item results in one transaction when the operation ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from syncer.api.bulk import (
    PollPolicy,
    SentItems,
    echoed_results,
    find_submitted_operation,
    pair_results,
    wait_for_operation,
)
from syncer.api.client import ApiClient, operation_id
from syncer.apply.governor import Governor
from syncer.apply.outcome import IntegrationOutcome, RunReport
from syncer.errors import ApiError, InterruptedRunError, SubmissionLost, SyncerError
from syncer.ledger import Ledger, OperationInfo
from syncer.models import ItemResult, OperationStatus, OperationType, Payloads, Record
from syncer.progress import Progress, event, log_fields

T = TypeVar("T")

CRASH_ENV = "SYNCER_TEST_CRASH_AT"
"""Test-only hook: ``STEP`` or ``STEP:N`` kills this process (SIGKILL) at the N-th time the
executor reaches STEP (after_prepare, after_submit, while_polling, after_results). Tests of the
reliability suite use it; nothing else ever sets it."""

_crash_counts: dict[str, int] = {}

_PHASES = {
    OperationType.IMPORT_COURSES: ("importing courses", "courses"),
    OperationType.IMPORT_STATS: ("sending statistics", "statistics"),
    OperationType.ARCHIVE_COURSES: ("archiving courses", "courses"),
}
"""Each phase's label and unit on the progress display."""


def _crash_point(step: str) -> None:
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != step:
        return
    _crash_counts[step] = _crash_counts.get(step, 0) + 1
    if _crash_counts[step] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class _Prepared:
    """A batch written ahead in the ledger (status prepared), waiting for a free slot."""

    op_id: int
    op_type: OperationType
    payloads: Sequence[Mapping[str, Any]]
    integration: str = ""


@dataclass(frozen=True)
class _Finished:
    """What a follower brings back to be recorded."""

    op_id: int
    integration: str
    status: OperationStatus
    results: Sequence[ItemResult]
    error_message: str | None


class Executor:
    """Keeps up to ``slots`` operations unfinished on the server, with the next batches ready.

    Three kinds of work overlap, and the write-ahead order of product.md §5 holds throughout.
    Several integrations' streams of batches (``run_batches``, run together) share the slots,
    taking them in turn; each keeps its own order (courses complete before its statistics,
    archives last) by waiting for its own operations only:

    - the ledger thread (one worker, so apply's writes come from one thread and keep their
      order) reads the plan's next batch and records it as prepared while operations run;
      up to ``ahead`` prepared batches wait, so a slot that frees is filled at once;
    - the event loop submits, then polls each operation (sleeping until its estimated end); the
      slot frees as soon as the final status is seen, before the results are read;
    - results are matched on the loop and recorded by the ledger thread, without holding up the
      next submission. Followers not yet recorded are bounded (memory stays flat).
    """

    def __init__(
        self,
        client: ApiClient,
        ledger: Ledger,
        run_id: int,
        report: RunReport,
        *,
        slots: int,
        poll: PollPolicy,
        progress: Progress,
        stop: asyncio.Event,
        ahead: int = 2,
        settle: float = 0.0,
        governor: Governor | None = None,
    ) -> None:
        self._client = client
        # The platform's slots and write rate, shared with its other runners (apply/governor.py).
        self._governor = governor or Governor(None, slots)
        self._governor.bind(client)
        self._ledger = ledger
        self._run_id = run_id
        self._report = report
        self._slots = max(1, slots)
        self._ahead = max(1, ahead)
        self._poll = poll
        self._settle = settle  # how long a lost submission may still be in the platform's hands
        self._progress = progress
        self._stop = stop
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncer-ledger")
        self._followers: set[asyncio.Task[None]] = set()
        self._following: dict[str, set[asyncio.Task[None]]] = {}  # the followers of each integration
        self._producers: dict[str, asyncio.Task[None]] = {}  # each stream's batches written ahead
        self._turn = asyncio.Lock()  # streams take a free slot one at a time, first come first served
        # One finished operation's results in memory at a time (10,000 parsed results and their
        # echoed inputs are tens of MB): they are recorded one after another in the ledger thread
        # anyway, and the slot is already free while they are read.
        self._results_turn = asyncio.Lock()
        self._held: dict[int, _Prepared] = {}  # prepared, not handed to the API: abandoned on stop
        self._unfinished = 0  # submitted, final status not seen yet: what the server counts
        self._submitting = False  # a free slot is being filled: followers let it go first
        self._changed = asyncio.Event()
        self._failure: BaseException | None = None
        # Progress display: one counter per phase (integration, type), moved by the operations'
        # own progress while they run; the operations; those an earlier run left in flight.
        self._ops_bar: int | None = None
        self._resume_bar: int | None = None
        self._phase_bars: dict[tuple[str, OperationType], int] = {}
        self._phase_left: dict[int, int] = {}  # records each phase counter still expects
        self._phase_of: dict[str, int] = {}  # Location -> its phase's counter
        self._shown: dict[str, int] = {}  # Location -> its records shown as done
        self._resumed_ids: set[int] = set()

    def expect(self, phases: Sequence[tuple[str, OperationType, int, int]]) -> None:
        """Show the plan's phases: ``(integration, type, records, operations)``, each a counter of
        its records with the plan's total, and one counter of the operations."""
        operations = 0
        for integration, op_type, count, ops in phases:
            if count:
                label, unit = _PHASES[op_type]
                handle = self._progress.task(f"{integration}: {label}", total=count, unit=unit)
                self._phase_bars[(integration, op_type)] = handle
                self._phase_left[handle] = count
                operations += ops
        if operations:
            self._ops_bar = self._progress.task("operations finished", total=operations, unit="operations")

    def expect_resumed(self, count: int) -> None:
        """Show a counter of the operations an earlier run left in flight, followed first."""
        if count:
            self._resume_bar = self._progress.task(
                "finishing operations left in flight", total=count, unit="operations"
            )

    def _show_progress(self, location: str, operation: Mapping[str, Any], items: int, *, final: bool) -> None:
        """Move the operation's phase counter to its ``progress.index`` (to its end when ``final``)."""
        handle = self._phase_of.get(location)
        if handle is None:
            return
        progress = operation.get("progress")
        index = progress.get("index") if isinstance(progress, Mapping) else None
        done = items if final else min(items, index) if isinstance(index, int) and index > 0 else 0
        step = done - self._shown.get(location, 0)
        if step > 0:
            self._shown[location] = done
            self._progress.advance(handle, step)
            self._phase_left[handle] -= step
            if self._phase_left[handle] <= 0:
                self._progress.done(handle)
        if final:
            self._phase_of.pop(location, None)
            self._shown.pop(location, None)

    @property
    def in_flight(self) -> int:
        """Operations submitted and not yet recorded."""
        return len(self._followers)

    def _outcome(self, integration: str) -> IntegrationOutcome:
        return self._report.integrations.setdefault(integration, IntegrationOutcome(integration))

    # -- the ledger thread -----------------------------------------------------------------

    async def _in_ledger(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one ledger call in the ledger thread and wait for it."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args))

    def _in_ledger_later(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue a ledger write without waiting; its failure stops the run at the next step."""
        future = asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args))
        future.add_done_callback(self._done)

    def _prepare_next(
        self, integration: str, batches: Iterator[tuple[OperationType, list[Record]]]
    ) -> _Prepared | None:
        # In the ledger thread: the plan's rows are read and the batch written ahead here.
        for op_type, records in batches:
            if not records:
                continue
            op_id = self._ledger.prepare_operation(self._run_id, integration, op_type, records)
            payloads = Payloads.of([r.payload for r in records])
            prepared = _Prepared(op_id, op_type, payloads, integration)
            self._held[op_id] = prepared
            _crash_point("after_prepare")
            return prepared
        return None

    async def _prepare_ahead(
        self,
        integration: str,
        batches: Iterator[tuple[OperationType, list[Record]]],
        ready: asyncio.Queue[_Prepared | None],
    ) -> None:
        while True:
            prepared = await self._in_ledger(self._prepare_next, integration, batches)
            await ready.put(prepared)
            if prepared is None:
                return

    # -- waiting ---------------------------------------------------------------------------

    def _done(self, future: asyncio.Future[Any]) -> None:
        if isinstance(future, asyncio.Task):
            self._followers.discard(future)
            for tasks in self._following.values():
                tasks.discard(future)
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()
        self._changed.set()

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; a failed follower or ledger write raises its error here."""
        while True:
            if self._failure is not None:
                raise self._failure
            if ready():
                return
            self._changed.clear()
            await self._changed.wait()

    async def _wait_for_slot(self, *, look: bool = True) -> None:
        def free() -> bool:
            return self._unfinished < self._slots and len(self._followers) < 2 * self._slots

        if not free():
            unrecorded = len(self._followers) - self._unfinished
            self._progress.waiting(
                f"waiting for a slot: {self._unfinished} operations unfinished"
                + (f", {unrecorded} being recorded" if unrecorded > 0 else ""),
                key="slot",
            )
        await self._wait_until(free)
        self._progress.waiting(None, key="slot")
        await self._governor.acquire(look=look)  # held until the operation is seen finished

    async def _take(
        self, ready: asyncio.Queue[_Prepared | None], producer: asyncio.Task[None]
    ) -> _Prepared | None:
        getter = asyncio.ensure_future(ready.get())
        await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done() and producer.done() and producer.exception() is not None:
            getter.cancel()
            raise producer.exception()  # type: ignore[misc]
        return await getter

    # -- submitting ------------------------------------------------------------------------

    async def run_batches(
        self, integration: str, api_id: str, batches: Iterable[tuple[OperationType, list[Record]]]
    ) -> None:
        """Submit every batch of one integration in order; a change of operation type waits for
        the integration's own operations (other integrations' streams keep the slots busy)."""
        log_fields(integration=integration)  # this stream's task: its log lines name it
        ready: asyncio.Queue[_Prepared | None] = asyncio.Queue(self._ahead)
        producer = asyncio.create_task(self._prepare_ahead(integration, iter(batches), ready))
        self._producers[integration] = producer
        current: OperationType | None = None
        try:
            while (prepared := await self._take(ready, producer)) is not None:
                if current is not None and prepared.op_type is not current:
                    await self._drain(integration)  # courses completed before statistics, archives last
                    if (
                        current is OperationType.IMPORT_COURSES
                        and self._outcome(integration).failed_operations
                    ):
                        # A course import ended in `error`: statistics of its courses would be
                        # rejected, and rejected records are not resent unchanged. Leave them
                        # pending for the next run (the failed operation makes this one exit 4).
                        await self._abandon_held(integration)
                        return
                current = prepared.op_type
                async with self._turn:  # the integrations' streams take the free slots in turn
                    await self._wait_for_slot()
                    self._submitting = True
                    try:
                        if self._stop.is_set():
                            raise InterruptedRunError(
                                "stopped by a signal; operations in flight are resumed by the next run"
                            )
                        await self._submit(integration, api_id, prepared)
                    finally:
                        self._submitting = False
                        self._changed.set()
                prepared = None  # its texts are in the ledger now: not kept while the next is awaited
            await producer
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            self._producers.pop(integration, None)
        await self._drain(integration)

    async def _drain(self, integration: str) -> None:
        """Wait for the integration's operations in flight to end and be recorded."""
        await self._wait_until(lambda: not self._following.get(integration))
        await self._in_ledger(lambda: None)  # every queued ledger write is done
        if self._failure is not None:
            raise self._failure

    async def _abandon_held(self, integration: str) -> None:
        """Close the integration's batches prepared but never sent; their records stay pending."""
        producer = self._producers.pop(integration, None)
        if producer is not None and not producer.done():
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        for op_id, prepared in list(self._held.items()):
            if prepared.integration == integration:
                await self._in_ledger(self._ledger.abandon_operation, op_id)
                self._held.pop(op_id, None)
        self._outcome(integration).messages.append(
            "statistics and archives not sent: a course import ended in error; the next run sends them"
        )

    async def _submit(self, integration: str, api_id: str, prepared: _Prepared) -> None:
        op_id, op_type, payloads = prepared.op_id, prepared.op_type, prepared.payloads
        self._held.pop(op_id, None)  # from here on it may reach the API: never abandoned blindly
        sent_at = datetime.now(UTC)
        try:
            location = await self._client.submit_bulk(op_type, api_id, payloads)
        except SubmissionLost:
            # The answer was lost or ambiguous (a 5xx, a proxy's page), not necessarily the
            # request: look before sending again, and give the platform time to show it. The
            # queued ledger writes go first, so every operation already ours is known and skipped.
            await self._in_ledger(lambda: None)
            found = await find_submitted_operation(
                self._client,
                op_type,
                payloads,
                created_after=sent_at,
                poll=self._poll,
                known=self._ledger.known_api_ids,
                settle=self._settle,
            )
            location = found or await self._client.submit_bulk(op_type, api_id, payloads)
        except ApiError:
            # Refused or unreachable: nothing was accepted. Records stay pending for the next run.
            self._governor.release()
            await self._in_ledger(self._ledger.abandon_operation, op_id)
            raise
        _crash_point("after_submit")
        self._unfinished += 1
        self._report.peak_in_flight = max(self._report.peak_in_flight, self._unfinished)
        # Queued behind the earlier writes and ahead of this operation's results.
        self._in_ledger_later(self._ledger.mark_submitted, op_id, location, operation_id(location))
        self._report.submissions += 1
        self._outcome(integration).operations += 1
        event(
            f"submitted {op_type.value} for {integration}: {len(payloads):,} items",
            integration=integration,
            operation=operation_id(location),
            type=op_type.value,
            items=len(payloads),
        )
        if (integration, op_type) in self._phase_bars:
            self._phase_of[location] = self._phase_bars[(integration, op_type)]
        # In flight, a batch of texts is kept as their hashes: the ledger holds the texts.
        sent = SentItems.of(payloads) if isinstance(payloads, Payloads) else payloads
        self._follow(op_id, integration, location, sent)

    # -- following -------------------------------------------------------------------------

    def _follow(
        self, op_id: int, integration: str, location: str, payloads: Sequence[Mapping[str, Any]] | SentItems
    ) -> None:
        task = asyncio.create_task(self._track(op_id, integration, location, payloads))
        self._followers.add(task)
        self._following.setdefault(integration, set()).add(task)
        task.add_done_callback(self._done)

    async def _track(
        self, op_id: int, integration: str, location: str, payloads: Sequence[Mapping[str, Any]] | SentItems
    ) -> None:
        log_fields(integration=integration, operation=operation_id(location))  # this follower's lines
        final = await self._wait_end(location, len(payloads))
        self._unfinished -= 1  # the server's slot is free: the next batch may go now
        self._governor.release()
        self._changed.set()
        # Let the submission that fills the slot reach the server before this operation's
        # results are requested: both queue on the same server and the same event loop.
        await asyncio.sleep(0)
        await self._wait_until(lambda: not self._submitting)
        status = OperationStatus(str(final.get("status")))
        if status is OperationStatus.ERROR:
            message = str(final.get("errorMessage") or "the operation ended in error")
            finished = _Finished(op_id, integration, status, (), message)
        async with self._results_turn:
            if status is not OperationStatus.ERROR:
                results = await self._results(op_id, location, payloads)
                _crash_point("after_results")
                finished = _Finished(op_id, integration, status, results, None)
            await self._in_ledger(
                self._ledger.record_results,
                finished.op_id,
                finished.status,
                finished.results,
                finished.error_message,
            )
        self._count(finished)

    async def _results(
        self, op_id: int, location: str, payloads: Sequence[Mapping[str, Any]] | SentItems
    ) -> list[ItemResult]:
        """The finished operation's results, each paired with its item."""
        answer = await self._client.fetch_results(location)
        if not isinstance(payloads, SentItems):
            return pair_results(location, payloads, answer)
        results = echoed_results(payloads, answer)
        if results is None:  # not repeated as sent: pair them with the items, read back from the ledger
            items = await self._in_ledger(self._ledger.operation_items, op_id)
            results = pair_results(location, [dict(item.payload) for item in items], answer)
        return results

    async def _wait_end(self, location: str, items: int) -> dict[str, Any]:
        """Poll until the operation is completed or in error, pacing by its estimated end."""

        def polled(operation: Mapping[str, Any]) -> None:
            _crash_point("while_polling")
            self._show_progress(location, operation, items, final=False)

        final = await wait_for_operation(
            self._client, location, poll=self._poll, on_progress=polled, items=items
        )
        self._show_progress(location, final, items, final=True)
        return final

    def _count(self, finished: _Finished) -> None:
        outcome = self._outcome(finished.integration)
        if finished.status is OperationStatus.ERROR:
            outcome.failed_operations += 1
            outcome.messages.append(f"operation ended in error: {finished.error_message}")
        else:
            ok = sum(1 for r in finished.results if r.success)
            outcome.synced += ok
            outcome.rejected += len(finished.results) - ok
        bar = self._resume_bar if finished.op_id in self._resumed_ids else self._ops_bar
        if bar is not None:
            self._progress.advance(bar)
        event(
            f"operation {finished.status.value} for {finished.integration}",
            integration=finished.integration,
            status=finished.status.value,
            items=len(finished.results),
            errors=sum(1 for r in finished.results if not r.success),
        )

    async def drain(self) -> None:
        """Wait for every operation in flight to end and be recorded."""
        await self._wait_until(lambda: not self._followers)
        await self._in_ledger(lambda: None)  # every queued ledger write is done
        if self._failure is not None:
            raise self._failure

    async def resume(self, op: OperationInfo) -> None:
        """Follow an operation an earlier run left in flight (adopting a lost submission)."""
        items = await self._in_ledger(self._ledger.operation_items, op.id)
        payloads = [dict(i.payload) for i in items]
        location = op.location
        if op.status is OperationStatus.PREPARED or not location:
            location = await find_submitted_operation(
                self._client,
                op.type,
                payloads,
                created_after=op.created_at,
                poll=self._poll,
                known=self._ledger.known_api_ids,  # never another batch's operation
            )
            if location is None:
                # never accepted: the plan sends it again
                await self._in_ledger(self._ledger.abandon_operation, op.id)
                event(
                    f"operation {op.id} was never accepted; its records are sent again",
                    integration=op.integration,
                )
                return
            await self._in_ledger(self._ledger.mark_submitted, op.id, location, operation_id(location))
            event(f"adopted a lost submission as {operation_id(location)}", integration=op.integration)
        await self._wait_for_slot(look=False)  # already on the platform: it counts there
        self._resumed_ids.add(op.id)
        self._report.resumed += 1
        self._unfinished += 1
        self._report.peak_in_flight = max(self._report.peak_in_flight, self._unfinished)
        self._follow(op.id, op.integration, location, payloads)

    async def close(self) -> None:
        """Wait for everything in flight, then stop the ledger thread."""
        try:
            await self.drain()
            for bar in (self._resume_bar, self._ops_bar, *self._phase_bars.values()):
                if bar is not None:
                    self._progress.done(bar)  # (done twice is nothing)
        finally:
            self._writer.shutdown(wait=True)
            await self._governor.close()

    async def cancel(self) -> None:
        """Stop following; what is in flight stays in the ledger for the next run.

        Batches prepared but never handed to the API are abandoned (their records stay pending
        and the next plan sends them); a submission under way stays prepared, and the next run
        looks for it on the platform before sending it again.
        """
        tasks = [*self._followers, *self._producers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._followers.clear()
        await self._governor.close()  # this run's slots go to the platform's other runners
        self._writer.shutdown(wait=True)  # the write under way finishes; nothing else starts
        for op_id in list(self._held):
            with contextlib.suppress(SyncerError):
                self._ledger.abandon_operation(op_id)
        self._held.clear()
