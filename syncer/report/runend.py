"""How an apply ended, as alerts and metrics read it: ``RunEnd`` and the run's outcomes.

One ``RunEnd`` is made when ``syncer apply`` stops, whether it returned or raised; the webhooks
(``notify``) and the metrics file (``metrics``) are both made from it, so they never disagree.
The rules (docs/alerts.md, docs/metrics.md): a run *failed* when it ended with exit 1, 4 or 5
(an error that stopped it has one of these, or 6 for a guard); it *succeeded* when it finished,
with exit 0 or 3 (every valid record went through; rejected, invalid or held records are
outcomes of their own); it *recovered* when it succeeded and the apply before it, in the
ledger, failed or was refused by a guard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from syncer.config import NotifyOutcome
from syncer.ledger import RunInfo as LedgerRun
from syncer.ledger import RunStatus
from syncer.runinfo import RunInfo, current_run

if TYPE_CHECKING:  # the apply package pulls in aiohttp: typing only
    from syncer.apply import RunReport

FAILED_CODES = frozenset({1, 4, 5})
"""Exit codes of a failed run: a person must act (1), a transient failure (4), locked out (5)."""
SUCCEEDED_CODES = frozenset({0, 3})
"""Exit codes of a run that finished: every valid record went through (3: some need a look)."""
GUARD_CODE = 6

ORDER = (
    NotifyOutcome.FAILED,
    NotifyOutcome.GUARD,
    NotifyOutcome.REJECTED,
    NotifyOutcome.HELD,
    NotifyOutcome.INVALID,
    NotifyOutcome.RECOVERED,
)
"""Outcomes from the most to the least urgent: a payload's ``outcome`` is the first that applies."""


@dataclass(frozen=True)
class History:
    """What the ledger's ``runs`` table says of the apply runs before this one (read before it)."""

    failed_before: int = 0
    """Consecutive apply runs just before this one that failed or were refused by a guard."""
    last_success_at: float | None = None
    """When the last apply that succeeded ended (Unix time), if one of the rows read did."""


@dataclass(frozen=True)
class RunEnd:
    """One finished ``syncer apply``: its exit code, what it did, and when."""

    config: Path
    exit_code: int
    started_at: float  # Unix time
    ended_at: float
    report: RunReport | None = None  # None when an error stopped the run: its counts are unknown
    error: str | None = None  # the one-line message of the error that stopped it
    answers_429: int = 0  # 429 answers the API gave this run
    history: History = History()
    run: RunInfo = field(default_factory=current_run)

    @property
    def failed(self) -> bool:
        """The run ended with exit 1, 4 or 5."""
        return self.exit_code in FAILED_CODES

    @property
    def succeeded(self) -> bool:
        """The run finished (exit 0 or 3) without an error stopping it."""
        return self.error is None and self.exit_code in SUCCEEDED_CODES

    @property
    def duration(self) -> float:
        """Seconds from the command's start to its end."""
        return max(0.0, self.ended_at - self.started_at)

    def outcomes(self, rejected_above: int = 0) -> list[NotifyOutcome]:
        """Every outcome of this run, most urgent first (``rejected``: more than ``rejected_above``)."""
        found: set[NotifyOutcome] = set()
        if self.failed:
            found.add(NotifyOutcome.FAILED)
        if self.exit_code == GUARD_CODE:
            found.add(NotifyOutcome.GUARD)
        report = self.report
        if report is not None:
            if report.rejected > rejected_above:
                found.add(NotifyOutcome.REJECTED)
            if report.held:
                found.add(NotifyOutcome.HELD)
            if report.invalid_beyond_tolerance:
                found.add(NotifyOutcome.INVALID)
        if self.succeeded and self.history.failed_before:
            found.add(NotifyOutcome.RECOVERED)
        return [o for o in ORDER if o in found]


def read_history(runs: Iterable[LedgerRun]) -> History:
    """The ``History`` of the apply runs among ``runs`` (newest first), those still running left out."""
    failed_before, streak, last_success = 0, True, None
    for run in runs:
        if run.command != "apply" or run.status is RunStatus.RUNNING:
            continue  # another command, or a run going on beside this one (or killed: unknown)
        failed = run.exit_code in FAILED_CODES | {GUARD_CODE} or (
            run.exit_code is None and run.status in (RunStatus.FAILED, RunStatus.INTERRUPTED)
        )
        succeeded = run.exit_code in SUCCEEDED_CODES or (
            run.exit_code is None and run.status is RunStatus.SUCCEEDED
        )
        if streak and failed:
            failed_before += 1
        else:
            streak = False
        if succeeded and run.ended_at is not None and last_success is None:
            last_success = _epoch(run.ended_at)
    return History(failed_before=failed_before, last_success_at=last_success)


def _epoch(moment: datetime) -> float:
    """Unix time of a ledger timestamp (SQLite gives them back naive, in UTC)."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def iso(seconds: float) -> str:
    """``2025-03-01T09:00:00.123Z``: a Unix time as UTC ISO 8601 with milliseconds."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
