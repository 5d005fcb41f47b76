"""What an apply did: per integration and for the whole run (``RunReport``, ``IntegrationOutcome``).

Plain data, filled in by the executor as operations end and by the run as the plan is read.
An operation that ended in ``error`` is counted here (``failed_operations``), not raised: the
run records it and goes on with the other integrations (after a failed course import, that
integration's statistics and archives wait for the next run). ``RunReport.exit_code`` turns the
outcome into the exit status, which the run records and the CLI exits with (4 for such an operation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncer.plan import Plan
from syncer.refresh import RefreshReport


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
    held: int = 0  # statistics not sent: their predicted effect on the platform's attempts is unsafe
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
    refresh: RefreshReport | None = None  # integrations read back before planning

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

    @property
    def held(self) -> int:
        """Statistics held (not sent) because their effect on the platform's attempts is unsafe."""
        return sum(o.held for o in self.integrations.values())

    @property
    def exit_code(self) -> int:
        """4 if an operation ended in ``error``, 3 if a person must look (rejected, invalid, held), else 0."""
        if self.failed_operations:
            return 4
        return 3 if self.rejected or self.invalid_beyond_tolerance or self.held else 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers, for the ledger's run row and ``--log-format json``."""
        refreshed = {"refreshed": self.refresh.summary()} if self.refresh is not None else {}
        return {
            **refreshed,
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
                    "held": o.held,
                }
                for name, o in self.integrations.items()
            },
        }
