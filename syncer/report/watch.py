"""Watching one ``syncer apply`` to its end, for its alerts and its metrics file.

The CLI makes a ``RunWatch`` before anything else, tells it what the run learns as it goes (the
config, the ledger's past runs, the run's report) and calls ``finish`` once with the exit code,
whether the command returned or raised. ``finish`` writes the metrics file and calls the
webhooks; neither ever raises nor changes the exit code: a failure is logged as a warning.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from syncer.api.client import ApiClient
from syncer.config import Config
from syncer.errors import SyncerError, outcome_of
from syncer.ledger import Ledger
from syncer.progress import event, log
from syncer.redaction import redact_text
from syncer.report.metrics import previous_success, render_metrics, write_metrics
from syncer.report.notify import notify, redact_webhook
from syncer.report.runend import History, RunEnd, read_history
from syncer.secrets import redact_url

if TYPE_CHECKING:
    from syncer.apply import RunReport

HISTORY_RUNS = 50
"""Runs of the ledger read for the history: the failed runs counted before a recovery, at most."""


class RunWatch:
    """One apply, from the command's start to its ``finish``."""

    def __init__(
        self,
        config_path: Path,
        metrics_file: Path | None = None,
        *,
        simulate: bool = False,
        redact: bool = False,
    ) -> None:
        self.config_path = config_path
        self.metrics_file = metrics_file  # --metrics-file: wins over the config's metrics.file
        self.simulate = simulate
        self.redact = redact  # --redact; the config's output.redact counts too once it is loaded
        self.started_at = time.time()
        self._answers_429 = ApiClient.answers_429
        self.config: Config | None = None
        self.history = History()
        self.report: RunReport | None = None

    def saw_config(self, config: Config) -> None:
        """The loaded config: its webhooks, metrics file and ``output.redact``."""
        self.config = config

    def saw_ledger(self, ledger: Ledger) -> None:
        """Read the ledger's past apply runs, before this one is recorded (read only)."""
        try:
            self.history = read_history(ledger.last_runs(HISTORY_RUNS))
        except SyncerError as exc:  # the run itself will say what is wrong with the ledger
            log.debug("alerts and metrics: cannot read past runs: %s", exc)

    def saw_report(self, report: RunReport) -> None:
        """The run's report (when it returned one)."""
        self.report = report

    def finish(self, exit_code: int, error: BaseException | None = None) -> RunEnd:
        """Write the metrics file and call the webhooks for this exit; never raises."""
        message = self._redact(self._scrub(outcome_of(error)[1])) if error is not None else None
        end = RunEnd(
            config=self.config_path,
            exit_code=exit_code,
            started_at=self.started_at,
            ended_at=time.time(),
            report=self.report,
            error=message,
            answers_429=ApiClient.answers_429 - self._answers_429,
            history=self.history,
        )
        try:
            self._write_metrics(end)
        except Exception as exc:  # a bug here must not hide the run's own outcome
            log.warning("metrics: not written (%s: %s)", type(exc).__name__, exc)
        try:
            self._notify(end)
        except Exception as exc:
            log.warning("notify: webhooks not called (%s: %s)", type(exc).__name__, exc)
        return end

    def _metrics_path(self) -> Path | None:
        if self.metrics_file is not None:
            return self.metrics_file
        if self.config is None or self.simulate:  # a simulated run never overwrites the real one's file
            return None
        return self.config.metrics_file

    def _write_metrics(self, end: RunEnd) -> None:
        path = self._metrics_path()
        if path is None:
            return
        known = [t for t in (previous_success(path), self.history.last_success_at) if t is not None]
        try:
            write_metrics(path, render_metrics(end, max(known, default=None)))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.warning(
                "metrics: cannot write %s: %s; the run's exit code (%d) is unchanged",
                path,
                reason,
                end.exit_code,
                extra={"metrics_file": str(path)},
            )
            return
        event(f"metrics written to {path}", metrics_file=str(path))

    def _notify(self, end: RunEnd) -> None:
        if self.config is None or not self.config.notify:
            return  # the config did not load: it names no webhook
        if self.simulate:
            event("notify: no webhook called for a simulated run (--simulate)")
            return
        notify(self.config.notify, end)

    def _scrub(self, message: str) -> str:
        """An error message without the config's secrets (an internal error's text is not scrubbed
        where it is raised)."""
        config = self.config
        if config is None:
            return message
        urls = [config.ledger_url.reveal(), *(s.url.reveal() for s in config.sources.values() if s.url)]
        shown = {url: redact_url(url) for url in urls}
        shown |= {hook.url.reveal(): redact_webhook(hook.url.reveal()) for hook in config.notify}
        shown[config.api.client_secret.reveal()] = "***"
        for secret in sorted(filter(None, shown), key=len, reverse=True):  # longest first
            message = message.replace(secret, shown[secret])
        return message

    def _redact(self, message: str) -> str:
        """With --redact or output.redact, ``message`` with learner e-mails as tokens, as the
        command's own error line shows it (syncer/redaction.py)."""
        if self.redact or (self.config is not None and self.config.redact):
            return redact_text(message)
        return message
