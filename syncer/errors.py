"""Every error syncer raises.

SyncerError                 base; ``exit_code`` decides the CLI's exit status, ``retryable`` the retry loop
├── ConfigError             bad YAML, schema violation, missing variable (exit 1); .problems: file:line:col
├── SourceError             a source cannot be opened or read (exit 1)
├── PlanError               a saved plan is stale or unreadable (exit 1)
├── LedgerError             database missing, unreachable or not at migration head (exit 4)
├── LockedError             another run holds the lock (exit 5)
├── GuardError              a safety guard refused, e.g. mass archive (exit 6)
├── InterruptedRunError     SIGINT/SIGTERM stopped the run; safe to rerun (exit 4)
└── ApiError                the API refused a request (4xx); not retryable (exit 4)
    ├── ApiUnavailable      timeout, network error, 429 or 5xx; retryable; exit 4 when retries run out
    │   └── SubmissionLost  a submission was sent, its answer lost or ambiguous; look it up before resending
    └── BulkJobError        a bulk operation ended in ``error``
"""

from __future__ import annotations

from dataclasses import dataclass


class SyncerError(Exception):
    """Base of every error syncer raises."""

    exit_code: int = 1
    retryable: bool = False


@dataclass(frozen=True)
class Problem:
    """One located problem in an input file: ``FILE:LINE:COL: message``."""

    file: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ConfigError(SyncerError):
    """The config (or an input it names) is invalid; every problem is listed."""

    exit_code = 1

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            super().__init__(problems)
        else:
            self.problems = list(problems)
            super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: str, line: int | None, column: int | None, message: str) -> ConfigError:
        """A ConfigError holding one problem."""
        return cls([Problem(file, line, column, message)])


class SourceError(SyncerError):
    """A source cannot be opened or read."""

    exit_code = 1


class PlanError(SyncerError):
    """A saved plan cannot be used (stale, unreadable, or for another config)."""

    exit_code = 1


class LedgerError(SyncerError):
    """The ledger database failed or is not usable."""

    exit_code = 4


class LockedError(SyncerError):
    """Another run holds the lock."""

    exit_code = 5


class GuardError(SyncerError):
    """A safety guard refused to go on."""

    exit_code = 6


class InterruptedRunError(SyncerError):
    """The run was stopped by a signal after recording what was in flight."""

    exit_code = 4


class ApiError(SyncerError):
    """The API refused a request; ``status`` and ``code`` say how."""

    exit_code = 4

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ApiUnavailable(ApiError):
    """The API did not answer usefully (timeout, network, 429, 5xx); worth retrying."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class BulkJobError(ApiError):
    """A bulk operation ended in ``error``."""


class SubmissionLost(ApiUnavailable):
    """A submission was sent but its answer was lost or ambiguous: it may have been accepted.

    Ambiguous: neither the acceptance (202 with ``Location``) nor a documented refusal, e.g. a
    500/502/504, a proxy's HTML page (docs/reliability.md, "What an answer to a submission means").

    Not blindly retryable: look for the operation among recent ones
    (``bulk.find_submitted_operation``) before sending the batch again.
    """

    retryable = False
