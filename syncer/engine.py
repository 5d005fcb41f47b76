"""Run orchestration: finish what an earlier run left in flight, plan, apply, record.

The engine coroutine is the only ledger writer. Submissions, polling and result reading run
as tasks that return data; the engine records it. Writes are ahead of every call (product.md §5):
a batch is recorded with its request hash before it is sent, its ``Location`` as soon as the 202
is read, its per-item results in one transaction when the operation ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from syncer.bulk import (
    PollPolicy,
    fetch_item_results,
    find_submitted_operation,
    wait_for_operation,
)
from syncer.client import ApiClient, operation_id
from syncer.config import Config, IntegrationConfig, Secret
from syncer.errors import ApiError, GuardError, InterruptedRunError, SubmissionLost, SyncerError
from syncer.ledger import Ledger, OperationInfo, RunStatus
from syncer.models import ItemResult, OperationStatus, OperationType, Record
from syncer.planner import Plan, build_plan, select_integrations
from syncer.progress import NullProgress, Progress, event

CRASH_ENV = "SYNCER_TEST_CRASH_AT"
"""Test-only hook: ``STEP`` or ``STEP:N`` kills this process (SIGKILL) at the N-th time the
engine reaches STEP (after_prepare, after_submit, while_polling, after_results). Tests of the
reliability suite use it; nothing else ever sets it."""

_crash_counts: dict[str, int] = {}


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
class ApplyOptions:
    """How ``apply`` runs."""

    integrations: tuple[str, ...] | None = None
    retry_rejected: bool = False
    allow_mass_archive: bool = False
    poll: PollPolicy = field(default_factory=PollPolicy)


@dataclass
class IntegrationOutcome:
    """What one integration's apply did."""

    name: str
    operations: int = 0
    synced: int = 0
    rejected: int = 0
    failed_operations: int = 0
    invalid: int = 0
    invalid_beyond_tolerance: bool = False
    messages: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    """The outcome of one apply."""

    run_id: int
    integrations: dict[str, IntegrationOutcome]
    resumed: int = 0
    submissions: int = 0
    peak_in_flight: int = 0
    plan: Plan | None = None

    @property
    def rejected(self) -> int:
        """Records the API refused in this run."""
        return sum(o.rejected for o in self.integrations.values())

    @property
    def failed_operations(self) -> int:
        """Operations that ended in ``error``."""
        return sum(o.failed_operations for o in self.integrations.values())

    @property
    def invalid_beyond_tolerance(self) -> bool:
        """True when some integration has more invalid rows than it tolerates."""
        return any(o.invalid_beyond_tolerance for o in self.integrations.values())

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers, for the ledger's run row and ``--log-format json``."""
        return {
            "resumed": self.resumed,
            "submissions": self.submissions,
            "peak_in_flight": self.peak_in_flight,
            "integrations": {
                name: {
                    "operations": o.operations,
                    "synced": o.synced,
                    "rejected": o.rejected,
                    "failed_operations": o.failed_operations,
                    "invalid": o.invalid,
                    "invalid_beyond_tolerance": o.invalid_beyond_tolerance,
                }
                for name, o in self.integrations.items()
            },
        }


@dataclass(frozen=True)
class _Finished:
    """What a follower task brings back to the engine."""

    op_id: int
    integration: str
    status: OperationStatus
    results: Sequence[ItemResult]
    error_message: str | None


class _Executor:
    """Keeps up to ``slots`` operations in flight and records their ends."""

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
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._run_id = run_id
        self._report = report
        self._slots = max(1, slots)
        self._poll = poll
        self._progress = progress
        self._stop = stop
        self._tasks: dict[asyncio.Task[_Finished], int] = {}
        self._ops_bar = progress.task("operations finished")

    @property
    def in_flight(self) -> int:
        """Operations submitted and not yet recorded."""
        return len(self._tasks)

    def _outcome(self, integration: str) -> IntegrationOutcome:
        return self._report.integrations.setdefault(integration, IntegrationOutcome(integration))

    async def run_batches(
        self, integration: str, api_id: str, batches: Iterable[tuple[OperationType, list[Record]]]
    ) -> None:
        """Submit every batch in order; a change of operation type waits for the previous ones."""
        current: OperationType | None = None
        for op_type, records in batches:
            if not records:
                continue
            if current is not None and op_type is not current:
                await self.drain()  # courses before statistics before archives
            current = op_type
            while self.in_flight >= self._slots:
                await self._collect_one()
            if self._stop.is_set():
                raise InterruptedRunError(
                    "stopped by a signal; operations in flight are resumed by the next run"
                )
            await self._submit(integration, api_id, op_type, records)
        await self.drain()

    async def _submit(
        self, integration: str, api_id: str, op_type: OperationType, records: list[Record]
    ) -> None:
        op_id = self._ledger.prepare_operation(self._run_id, integration, op_type, records)
        prepared_at = datetime.now(UTC)
        _crash_point("after_prepare")
        payloads = [dict(r.payload) for r in records]
        try:
            location = await self._client.submit_bulk(op_type, api_id, payloads)
        except SubmissionLost:
            # The answer was lost, not necessarily the request: look before sending again.
            found = await find_submitted_operation(
                self._client, op_type, payloads, created_after=prepared_at, poll=self._poll
            )
            location = found or await self._client.submit_bulk(op_type, api_id, payloads)
        except ApiError:
            # Refused or unreachable: nothing was accepted. Records stay pending for the next run.
            self._ledger.abandon_operation(op_id)
            raise
        _crash_point("after_submit")
        self._ledger.mark_submitted(op_id, location, operation_id(location))
        self._report.submissions += 1
        self._outcome(integration).operations += 1
        event(
            f"submitted {op_type.value} for {integration}: {len(records):,} items",
            integration=integration,
            operation=operation_id(location),
            type=op_type.value,
            items=len(records),
        )
        self._follow(op_id, integration, location, payloads)

    def _follow(
        self, op_id: int, integration: str, location: str, payloads: Sequence[Mapping[str, Any]]
    ) -> None:
        task = asyncio.create_task(self._wait(op_id, integration, location, payloads))
        self._tasks[task] = op_id
        self._report.peak_in_flight = max(self._report.peak_in_flight, len(self._tasks))

    async def _wait(
        self, op_id: int, integration: str, location: str, payloads: Sequence[Mapping[str, Any]]
    ) -> _Finished:
        def polled(_: Mapping[str, Any]) -> None:
            _crash_point("while_polling")

        final = await wait_for_operation(self._client, location, poll=self._poll, on_progress=polled)
        status = OperationStatus(str(final.get("status")))
        if status is OperationStatus.ERROR:
            message = str(final.get("errorMessage") or "the operation ended in error")
            return _Finished(op_id, integration, status, (), message)
        results = await fetch_item_results(self._client, location, payloads)
        _crash_point("after_results")
        return _Finished(op_id, integration, status, results, None)

    async def _collect_one(self) -> None:
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            self._tasks.pop(task)
            self._record(task.result())

    def _record(self, finished: _Finished) -> None:
        self._ledger.record_results(finished.op_id, finished.status, finished.results, finished.error_message)
        outcome = self._outcome(finished.integration)
        if finished.status is OperationStatus.ERROR:
            outcome.failed_operations += 1
            outcome.messages.append(f"operation ended in error: {finished.error_message}")
        else:
            ok = sum(1 for r in finished.results if r.success)
            outcome.synced += ok
            outcome.rejected += len(finished.results) - ok
        self._progress.advance(self._ops_bar)
        event(
            f"operation {finished.status.value} for {finished.integration}",
            integration=finished.integration,
            status=finished.status.value,
            items=len(finished.results),
            errors=sum(1 for r in finished.results if not r.success),
        )

    async def drain(self) -> None:
        """Wait for every operation in flight and record it."""
        while self._tasks:
            await self._collect_one()

    async def resume(self, op: OperationInfo) -> None:
        """Follow an operation an earlier run left in flight (adopting a lost submission)."""
        items = self._ledger.operation_items(op.id)
        payloads = [dict(i.payload) for i in items]
        location = op.location
        if op.status is OperationStatus.PREPARED or not location:
            location = await find_submitted_operation(
                self._client, op.type, payloads, created_after=op.created_at, poll=self._poll
            )
            if location is None:
                self._ledger.abandon_operation(op.id)  # never accepted: the plan sends it again
                event(
                    f"operation {op.id} was never accepted; its records are sent again",
                    integration=op.integration,
                )
                return
            self._ledger.mark_submitted(op.id, location, operation_id(location))
            event(f"adopted a lost submission as {operation_id(location)}", integration=op.integration)
        while self.in_flight >= self._slots:
            await self._collect_one()
        self._report.resumed += 1
        self._follow(op.id, op.integration, location, payloads)

    async def cancel(self) -> None:
        """Stop following; what is in flight stays in the ledger for the next run."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


_SETTINGS = (
    "defaultProgress",
    "defaultCompletion",
    "noGroupPropagation",
    "externalPlatformLogoUrl",
    "externalPlatformUnicolorLogoUrl",
)


async def resolve_integration(client: ApiClient, ledger: Ledger, spec: IntegrationConfig) -> str:
    """The API id of an integration: checked when given, else found or created, then kept."""
    if spec.id is not None:
        known = {str(i.get("_id")) for i in await client.fetch_integrations()}
        if spec.id not in known:
            raise ApiError(
                f"integration {spec.name}: id {spec.id} does not exist on the platform "
                "(check `id` in the config, or declare the integration with platform, group and author)",
                status=404,
                code="integrationNotFound",
            )
        ledger.set_integration_id(spec.name, spec.id)
        return spec.id
    assert spec.platform and spec.group and spec.author  # guaranteed by config validation
    wanted: dict[str, Any] = {
        "externalPlatform": spec.platform,
        "groupId": spec.group,
        "authorId": spec.author,
    }
    wanted.update({k: v for k, v in spec.settings.items() if k in _SETTINGS})
    found = [i for i in await client.fetch_integrations(spec.platform) if i.get("groupId") == spec.group]
    if found:
        current = found[0]
        api_id = str(current["_id"])
        differs = {k: v for k, v in wanted.items() if current.get(k) != v}
        if differs:
            await client.patch_integration(api_id, differs)
            event(f"integration {spec.name}: updated {', '.join(sorted(differs))}", integration=spec.name)
    else:
        created = await client.create_integration(wanted)
        api_id = str(created["_id"])
        event(f"integration {spec.name}: created {api_id}", integration=spec.name)
    ledger.set_integration_id(spec.name, api_id, spec.platform)
    return api_id


async def apply_config(
    config: Config,
    ledger: Ledger,
    options: ApplyOptions = ApplyOptions(),
    *,
    run_id: int,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    check_plan: Callable[[], None] | None = None,
) -> RunReport:
    """Resume in-flight operations, plan, and apply the plan; the caller holds the lock."""
    progress = progress or NullProgress()
    stop = stop or asyncio.Event()
    names = select_integrations(config, options.integrations)
    report = RunReport(run_id, {name: IntegrationOutcome(name) for name in names})
    async with ApiClient(config.api) as client:
        executor = _Executor(
            client,
            ledger,
            run_id,
            report,
            slots=config.api.limits.concurrent_operations,
            poll=options.poll,
            progress=progress,
            stop=stop,
        )
        try:
            for op in ledger.unfinished_operations():
                if op.integration in names:
                    await executor.resume(op)
            await executor.drain()
            if check_plan is not None:
                check_plan()
            with build_plan(
                config, ledger, integrations=names, retry_rejected=options.retry_rejected
            ) as plan:
                report.plan = plan
                _check_guards(plan, options)
                for summary in plan.summaries:
                    outcome = report.integrations[summary.name]
                    outcome.invalid = summary.invalid
                    outcome.invalid_beyond_tolerance = not plan.invalid_tolerated(summary.name)
                for summary in plan.summaries:
                    if not summary.has_changes:
                        continue
                    api_id = await resolve_integration(client, ledger, config.integrations[summary.name])
                    await executor.run_batches(summary.name, api_id, plan.batches(summary.name))
        except (asyncio.CancelledError, InterruptedRunError):
            await executor.cancel()
            raise InterruptedRunError(
                "stopped by a signal; operations in flight are recorded and the next run resumes them"
            ) from None
        except BaseException:
            await executor.cancel()
            raise
    return report


def _check_guards(plan: Plan, options: ApplyOptions) -> None:
    violations = [s for s in plan.summaries if s.guard]
    if violations and not options.allow_mass_archive:
        details = "; ".join(f"{s.name}: {s.guard}" for s in violations)
        raise GuardError(
            f"mass-archive guard: {details}. Rerun with --allow-mass-archive if this is intended."
        )


def run_apply(
    config: Config,
    ledger: Ledger,
    options: ApplyOptions = ApplyOptions(),
    *,
    progress: Progress | None = None,
    check_plan: Callable[[], None] | None = None,
) -> RunReport:
    """Run ``apply_config`` to its end with SIGINT/SIGTERM stopping it cleanly (exit 4)."""
    run_id = ledger.start_run("apply")

    async def main() -> RunReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        this = asyncio.current_task()
        assert this is not None

        def on_signal() -> None:
            event("signal received: stopping; operations in flight stay recorded")
            stop.set()
            this.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await apply_config(
                config, ledger, options, run_id=run_id, progress=progress, stop=stop, check_plan=check_plan
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        report = asyncio.run(main())
    except InterruptedRunError:
        ledger.finish_run(run_id, RunStatus.INTERRUPTED, {})
        raise
    except SyncerError:
        ledger.finish_run(run_id, RunStatus.FAILED, {})
        raise
    ledger.finish_run(run_id, RunStatus.SUCCEEDED, report.summary())
    return report


def iter_batches(plan: Plan, names: Iterable[str]) -> Iterator[tuple[str, OperationType, list[Record]]]:
    """Every batch of the plan for ``names``, in order (for reports and tests)."""
    for name in names:
        for op_type, records in plan.batches(name):
            yield name, op_type, records


@contextlib.contextmanager
def simulated(config: Config, *, op_seconds: float = 0.2) -> Iterator[Config]:
    """The config pointed at an in-process simulator and a throw-away copy of its ledger.

    A SQLite ledger is copied (SQLite's backup API, so a live ledger copies consistently); any
    other ledger is replaced by an empty one, since a server database cannot be copied cheaply.
    Integrations given by ``id`` are created in the simulator so the run finds them.
    """
    from syncer.simulator import (
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        SimulatorSettings,
        SimulatorThread,
    )

    with tempfile.TemporaryDirectory(prefix="syncer-simulate-") as tmp:
        copy = Path(tmp) / "ledger.db"
        source = make_url(config.ledger_url.reveal())
        if source.get_backend_name() == "sqlite" and source.database and Path(source.database).is_file():
            with sqlite3.connect(source.database) as src, sqlite3.connect(copy) as dst:
                src.backup(dst)
        with SimulatorThread(SimulatorSettings(op_seconds=op_seconds)) as sim:
            for spec in config.integrations.values():
                if spec.id is not None:
                    sim.state.add_integration(_id=spec.id, externalPlatform=spec.platform or spec.name)
            api = replace(
                config.api,
                base_url=sim.base_url,
                client_id=DEMO_CLIENT_ID,
                client_secret=Secret(DEMO_CLIENT_SECRET),
                company_id=None,
            )
            event(f"simulating: API {sim.base_url}, ledger copy {copy}")
            yield replace(config, api=api, ledger_url=Secret(f"sqlite:///{copy}"))
