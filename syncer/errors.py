"""Every error syncer raises.

SyncerError                     base; ``exit_code``: the CLI's exit status; ``retryable``: the retry loop's
├── ConfigError                 bad YAML, schema, missing variable (exit 1); .problems: file:line:col
├── SourceError                 a source cannot be opened or read (exit 1)
├── PlanError                   a saved plan is stale or unreadable (exit 1)
├── LedgerError                 the ledger's server unreachable, busy or the connection lost (exit 4)
│   └── LedgerUnusableError     cannot be opened or created, corrupt, read-only, newer than this
│                               syncer, unknown dialect, driver missing (exit 1: a person must act)
├── LockedError                 another run holds the lock (exit 5)
├── GuardError                  a safety guard refused, e.g. mass archive (exit 6)
├── InterruptedRunError         SIGINT/SIGTERM stopped the run; safe to rerun (exit 4)
└── ApiError                    the API refused a request for good (a documented 4xx: credentials,
    │                           scope, reservedPlatformName, groupNotFound...); not retryable (exit 1)
    ├── ApiUnavailable          timeout, network error, 429 or 5xx; retryable; exit 4 when retries run out
    │   └── SubmissionLost      a submission's answer lost or ambiguous; look it up before resending
    └── BulkJobError            a bulk operation ended in ``error`` (exit 4: the platform failed, not records)

Exit classes (docs/cron.md's table is checked against ``EXIT_CODES`` by a test): 1 a person must
act, 4 transient only (rerunning is the fix), 3 records a person must look at, 5 locked, 6 guard.
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

    def __init__(self, problems: list[Problem] | str, warnings: list[Problem] | None = None) -> None:
        # Warnings that may explain a problem (a config file not read): the CLI prints them
        # under the problems.
        self.warnings: list[Problem] = list(warnings or [])
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
    """The ledger database failed for a reason that may pass: server unreachable, busy, connection lost."""

    exit_code = 4


class LedgerUnusableError(LedgerError):
    """The ledger cannot be used until a person acts: unopenable, corrupt, read-only, newer, no driver."""

    exit_code = 1


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
    """The API refused a request for good; ``status`` and ``code`` say how. A person must act."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ApiUnavailable(ApiError):
    """The API did not answer usefully (timeout, network, 429, 5xx); worth retrying."""

    exit_code = 4
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
    """A bulk operation ended in ``error``: the platform failed, not the records; rerunning resends them."""

    exit_code = 4


class SubmissionLost(ApiUnavailable):
    """A submission was sent but its answer was lost or ambiguous: it may have been accepted.

    Ambiguous: neither the acceptance (202 with ``Location``) nor a documented refusal, e.g. a
    500/502/504, a proxy's HTML page (docs/reliability.md, "What an answer to a submission means").

    Not blindly retryable: look for the operation among recent ones
    (``bulk.find_submitted_operation``) before sending the batch again.
    """

    retryable = False


def outcome_of(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-line error a run records when ``exc`` stopped it.

    A SyncerError's message is scrubbed of secrets where it is raised; anything else is a bug,
    which the CLI reports as an internal error with exit 1.
    """
    if isinstance(exc, SyncerError):
        return exc.exit_code, str(exc)
    return 1, f"{type(exc).__name__}: {exc}"
