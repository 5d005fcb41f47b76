"""One apply run, start to end: resume what an earlier run left in flight, plan, guard, send.

``run_apply`` records the run in the ledger, turns SIGINT/SIGTERM into a clean stop (exit 4)
and beats the run lock's heartbeat; ``apply_config`` is the run itself: operations left in
flight are followed to their end first, then the plan is built, checked against the
mass-archive guard, announced, and handed integration by integration to the ``Executor``.
The caller holds the run lock (``syncer.ledger.lock``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncer.api.bulk import PollPolicy
from syncer.api.client import ApiClient
from syncer.apply.executor import Executor
from syncer.apply.governor import Governor
from syncer.apply.integrations import resolve_integration
from syncer.apply.outcome import IntegrationOutcome, RunReport
from syncer.config import Config
from syncer.errors import GuardError, InterruptedRunError, SyncerError, outcome_of
from syncer.ledger import Ledger, RunStatus
from syncer.ledger.identity import settle_renames
from syncer.models import OperationType, RecordKind
from syncer.plan import Plan, build_plan, select_integrations
from syncer.plan.reads import Read
from syncer.progress import NullProgress, Progress, announce, event, log
from syncer.refresh import RefreshReport, list_learners, refresh_integrations
from syncer.refresh.reads import find_integration
from syncer.sources.incremental import shown

HEARTBEAT_SECONDS = 30.0
"""How often a long apply refreshes its lock holder row (``heartbeat_at``)."""


@dataclass(frozen=True)
class ApplyOptions:
    """How ``apply`` runs: which integrations, rejected records sent again or not, mass archives
    allowed or not, and how operations are polled."""

    integrations: tuple[str, ...] | None = None
    retry_rejected: bool = False
    allow_mass_archive: bool = False
    poll: PollPolicy = field(default_factory=PollPolicy)
    full: bool = False  # incremental SQL sources read in full (--full)
    reads: Mapping[tuple[str, RecordKind], Read] | None = None  # a plan file's reads, kept as is


async def apply_config(
    config: Config,
    ledger: Ledger,
    options: ApplyOptions = ApplyOptions(),
    *,
    run_id: int,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> RunReport:
    """Resume in-flight operations, plan, and apply the plan; the caller holds the lock."""
    progress = progress or NullProgress()
    stop = stop or asyncio.Event()
    names = select_integrations(config, options.integrations)
    report = RunReport(run_id, {name: IntegrationOutcome(name) for name in names})
    async with ApiClient(config.api) as client:
        executor = Executor(
            client,
            ledger,
            run_id,
            report,
            slots=config.api.limits.concurrent_operations,
            poll=options.poll,
            progress=progress,
            stop=stop,
            # A lost submission is sent again only once the platform had as long again as one
            # request may take to show it in its operations list.
            settle=config.api.timeout_seconds,
            governor=Governor.open(ledger, config.api),  # limits shared with the platform's runners
        )
        try:
            left = [op for op in ledger.unfinished_operations() if op.integration in names]
            executor.expect_resumed(len(left))
            for op in left:
                await executor.resume(op)
            await executor.drain()
            report.refresh = await refresh_unknown(client, config, ledger, names, progress)
            with build_plan(
                config,
                ledger,
                integrations=names,
                retry_rejected=options.retry_rejected,
                progress=progress,
                full=options.full,
                reads=options.reads,
            ) as plan:
                report.plan = plan
                reads = plan.reads
                for read in reads:
                    event(read.describe(), integration=read.integration, source=read.source, full=read.full)
                    if read.nulls:
                        log.warning(
                            "%s: source %r: %s",
                            read.integration,
                            read.source,
                            read.null_note(),
                            extra={"integration": read.integration, "source": read.source},
                        )
                _check_guards(plan, options)
                for read in reads:  # before anything is sent: see begin_full_read
                    if read.full:
                        ledger.begin_full_read(
                            read.integration, read.kind.value, read.source, query_digest=read.query_digest
                        )
                plan.remember_digests()
                for summary in plan.integrations:
                    outcome = report.integrations[summary.name]
                    outcome.invalid = summary.invalid
                    outcome.invalid_beyond_tolerance = not plan.invalid_tolerated(summary.name)
                    outcome.held = summary.stats.held
                    event(
                        f"planned {summary.name}: courses {summary.courses.to_send:,}, "
                        f"statistics {summary.stats.to_send:,}, archives {summary.archives:,} to send; "
                        f"{summary.invalid:,} invalid rows; {summary.stats.held:,} statistics held; "
                        f"{plan.unmapped.get(summary.name, 0):,} rows known unchanged, not mapped",
                        integration=summary.name,
                        unmapped=plan.unmapped.get(summary.name, 0),
                        courses=summary.courses.to_send,
                        stats=summary.stats.to_send,
                        archives=summary.archives,
                        invalid=summary.invalid,
                        held=summary.stats.held,
                    )
                    for warning in summary.warnings:  # a source that gave no rows (plan/build.py)
                        log.warning("%s", warning, extra={"integration": summary.name})
                _log_unsafe(plan)
                _announce_plan(plan)  # before anything is sent
                executor.expect(_phases(plan))
                streams = []
                for summary in plan.integrations:
                    # Resolved even with nothing to send: a given id is checked and a declared
                    # integration's settings are patched when the config changed only them.
                    api_id = await resolve_integration(client, ledger, config.integrations[summary.name])
                    if summary.has_changes:
                        streams.append(executor.run_batches(summary.name, api_id, plan.batches(summary.name)))
                # The integrations' streams run together and share the slots; each keeps its order.
                await _together(streams)
            await executor.close()
            for name, outcome in report.integrations.items():
                if not outcome.failed_operations and not outcome.rejected:
                    ledger.clear_restored_drift(name)  # what the refresh found is put right
            move_cursors(ledger, report, reads)
        except (asyncio.CancelledError, InterruptedRunError) as exc:
            await executor.cancel()
            if not stop.is_set() and not isinstance(exc, InterruptedRunError):
                # Cancelled by nothing we know of: say so rather than blame a signal.
                raise SyncerError(
                    "internal error: the run's task was cancelled without a signal; operations in "
                    "flight are recorded and the next run resumes them. Run again with --debug and "
                    "report it"
                ) from exc
            raise InterruptedRunError(
                "stopped by a signal; operations in flight are recorded and the next run resumes them"
            ) from None
        except BaseException:
            await executor.cancel()
            raise
    return report


def move_cursors(ledger: Ledger, report: RunReport, reads: Sequence[Read]) -> None:
    """Record how far each incremental source was read, once every record of the read is recorded.

    Not for an integration with an operation that failed or is still unfinished: its records
    may not all be on the platform, so the next run reads the same rows again (the ledger then
    sends only what is not synced). After a full read, that takes a full read: it was marked
    before its first send (``Ledger.begin_full_read``), since an incremental read from the old
    cursor would miss the rows before it that the full read found changed (``--full``,
    ``--retry-rejected``); a killed run leaves the same mark. Rejected, held and invalid rows are
    recorded (``syncer rejected``); they are read again when their row changes, or by a full read.
    """
    for read in reads:
        outcome = report.integrations.get(read.integration)
        if outcome is None:
            continue
        if outcome.failed_operations or ledger.unfinished_operations(read.integration):
            if read.full:  # begin_full_read marked it: the next read is a full one again
                log.warning(
                    "%s: source %r was read in full, but an operation of this integration did not "
                    "complete; the next run reads every row again",
                    read.integration,
                    read.source,
                    extra={"integration": read.integration, "source": read.source},
                )
                continue
            log.warning(
                "%s: the cursor of source %r stays at %s: an operation of this integration did not "
                "complete; the next run reads the same rows again",
                read.integration,
                read.source,
                shown(read.stored),
                extra={"integration": read.integration, "source": read.source},
            )
            continue
        moved = ledger.move_cursor(
            read.integration,
            read.kind.value,
            read.source,
            query_digest=read.query_digest,
            value=read.high,
            full=read.full,
            run_id=report.run_id,
        )
        if moved:
            event(
                f"{read.integration}: cursor of source {read.source!r} ({read.kind.value}s) recorded at "
                f"{read.column} = {shown(read.high)}",
                integration=read.integration,
                source=read.source,
            )


async def _together(streams: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run ``streams`` concurrently; the first to fail cancels the others and its error is raised."""
    tasks = [asyncio.create_task(stream) for stream in streams]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if failed is not None:
        raise failed.exception()  # type: ignore[misc]


async def refresh_unknown(
    client: ApiClient, config: Config, ledger: Ledger, names: list[str], progress: Progress
) -> RefreshReport | None:
    """Refresh, before planning, the integrations the ledger cannot speak for (docs/refresh.md).

    Never resend blindly: an integration on the platform that the ledger holds no records of
    (a new or lost ledger; a renamed key is settled first, without a read) is read back, and so
    is one whose platform ``_id`` is no longer the ledger's (deleted, recreated) or that is gone.
    With ``refresh: {users: true}`` the platform's learners are listed first, every run.
    """
    settle_renames(config, ledger, names)
    counts = {info.name: info for info in ledger.integration_infos()}
    stale: list[str] = []
    for name in names:
        known = counts.get(name)
        found = await find_integration(client, config.integrations[name])
        records = known.has_records if known is not None else False
        if found is None:
            if records and config.integrations[name].id is None:
                stale.append(name)  # gone from the platform: what the ledger holds is not there
        elif not records or (known is not None and known.api_id and known.api_id != str(found["_id"])):
            stale.append(name)
    if config.refresh_users:  # refresh: {users: true}: the learner check on every run
        await list_learners(client, ledger, progress)
    if not stale:
        return None
    event(f"refreshing before planning: {', '.join(stale)} (the ledger cannot speak for them)")
    return await refresh_integrations(client, config, ledger, stale, progress=progress)


def _announce_plan(plan: Plan) -> None:
    """One line, also on a terminal: what the run sends, in how many operations, and what it does not.

    ``plan: 509 records to send in 2 operations (acme: 20 courses, 489 statistics); 5 invalid
    rows not sent``. A plan with nothing to send is only logged: the run's summary says so.
    """
    total = plan.changes_total
    operations = sum(sum(s.batches.values()) for s in plan.integrations if s.has_changes)
    parts = []
    for s in plan.integrations:
        counts = [(s.courses.to_send, "courses"), (s.stats.to_send, "statistics"), (s.archives, "archives")]
        sent = ", ".join(f"{n:,} {what}" for n, what in counts if n)
        if sent:
            parts.append(f"{s.name}: {sent}")
    invalid = sum(s.invalid for s in plan.integrations)
    held = sum(s.stats.held for s in plan.integrations)
    not_sent = [f"{invalid:,} invalid rows"] if invalid else []
    not_sent += [f"{held:,} statistics held"] if held else []
    fields = {"records": total, "operations": operations, "invalid": invalid, "held": held}
    if not total:
        event("plan: nothing to send" + (f" ({', '.join(not_sent)} not sent)" if not_sent else ""), **fields)
        return
    line = f"plan: {total:,} records to send in {operations:,} operation{'s' * (operations != 1)}"
    line += f" ({'; '.join(parts)})" + (f"; {' and '.join(not_sent)} not sent" if not_sent else "")
    announce(line, **fields)


def _phases(plan: Plan) -> list[tuple[str, OperationType, int, int]]:
    """The plan's phases for the progress display: (integration, type, records, operations)."""
    out = []
    for s in plan.integrations:
        for op_type, count in (
            (OperationType.IMPORT_COURSES, s.courses.to_send),
            (OperationType.IMPORT_STATS, s.stats.to_send),
            (OperationType.ARCHIVE_COURSES, s.archives),
        ):
            out.append((s.name, op_type, count, s.batches.get(op_type.value, 0)))
    return out


def _log_unsafe(plan: Plan) -> None:
    """Warn about held statistics per integration, and about each one sent despite an unsafe effect.

    Each: as far as the plan keeps them in detail (``DETAIL_LIMIT``); the rest are counted.
    """
    for summary in plan.integrations:
        if summary.stats.held:
            held = summary.stats.held
            log.warning(
                "%s: %s held: not sent, the platform would refuse them or their predicted effect on its "
                "attempts is unsafe "
                "(see `syncer rejected CONFIG`)",
                summary.name,
                f"{held:,} statistic" + ("" if held == 1 else "s"),
                extra={"integration": summary.name, "held": summary.stats.held},
            )
    sent = [u for u in plan.unsafe if not u.held]
    for u in sent:
        log.warning(
            "%s: statistic %s (%s) sent despite an unsafe effect (on_unsafe_change: send): %s: %s",
            u.integration,
            u.key,
            u.origin,
            u.effect.label,
            u.reason,
            extra={"integration": u.integration, "key": u.key, "origin": u.origin, "effect": u.effect.value},
        )
    more = plan.unsafe_total - plan.held_total - len(sent)
    if more > 0:
        log.warning(
            "and %s more statistics sent despite an unsafe effect (on_unsafe_change: send)",
            f"{more:,}",
            extra={"unsafe_sent": plan.unsafe_total - plan.held_total},
        )


def _check_guards(plan: Plan, options: ApplyOptions) -> None:
    # The guard is computed once, by the plan (plan/summary.py): each message names its
    # integration and says what to do.
    if plan.guard_violations and not options.allow_mass_archive:
        raise GuardError("mass-archive guard: " + "; ".join(plan.guard_violations))


def run_apply(
    config: Config,
    ledger: Ledger,
    options: ApplyOptions = ApplyOptions(),
    *,
    progress: Progress | None = None,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> RunReport:
    """Run ``apply_config`` to its end with SIGINT/SIGTERM stopping it cleanly (exit 4).

    ``heartbeat`` (the run lock's) is called every ``heartbeat_seconds`` while the run lasts, so
    ``syncer status`` and a waiting run can tell a long run from a holder row left behind.
    """
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
        beating = asyncio.create_task(_beat(heartbeat, heartbeat_seconds)) if heartbeat else None
        try:
            return await apply_config(config, ledger, options, run_id=run_id, progress=progress, stop=stop)
        finally:
            if beating is not None:
                beating.cancel()
                await asyncio.gather(beating, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        report = asyncio.run(main())
    except InterruptedRunError as exc:
        ledger.finish_run(run_id, RunStatus.INTERRUPTED, {}, exit_code=exc.exit_code, error=str(exc))
        raise
    except Exception as exc:
        code, error = outcome_of(exc)
        ledger.finish_run(run_id, RunStatus.FAILED, {}, exit_code=code, error=error)
        raise
    ledger.finish_run(run_id, RunStatus.SUCCEEDED, report.summary(), exit_code=report.exit_code)
    return report


async def _beat(heartbeat: Callable[[], None], seconds: float) -> None:
    """Call ``heartbeat`` every ``seconds``; a failed beat is logged, never fatal to the run."""
    while True:
        await asyncio.sleep(seconds)
        try:
            heartbeat()
        except SyncerError as exc:  # the lock itself still holds: only its holder row is stale
            event(f"lock heartbeat failed: {exc}")
