"""How long work shows itself: a rich progress display on a terminal, log lines otherwise.

The engine and planner only call ``Progress`` methods and log through the ``syncer`` logger;
``configure_logging`` decides the form of the lines (plain text, or one JSON object per line for
cron and log shippers). Nothing here ever receives a secret.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

log = logging.getLogger("syncer")

_STANDARD_ATTRS = frozenset([*vars(logging.makeLogRecord({})), "message", "asctime"])


def json_log_line(
    level: str, message: str, fields: Mapping[str, Any], created: float | None = None
) -> dict[str, Any]:
    """The object of one ``--log-format json`` line: time, level, message, then ``fields``."""
    moment = datetime.fromtimestamp(time.time() if created is None else created, UTC)
    return {
        "time": moment.isoformat(timespec="milliseconds"),
        "level": level,
        "message": message,
        **{k: v for k, v in fields.items() if k not in ("time", "level", "message")},
    }


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        }
        out = json_log_line(record.levelname.lower(), record.getMessage(), extra, record.created)
        return orjson.dumps(out, default=str).decode()


class _TextFormatter(logging.Formatter):
    """``TIME LEVEL message``, UTC."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{stamp} {record.levelname:<7} {record.getMessage()}"


def configure_logging(log_format: str = "text", *, verbose: bool = False, quiet: bool = False) -> None:
    """Send the ``syncer`` logger's lines to stderr as text or JSON (``quiet``: warnings only)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    log.propagate = False


class Progress(Protocol):
    """What long work reports as it goes."""

    def task(self, name: str, total: int | None = None) -> int:
        """Start a counter (rows read, operations finished...) and return its handle."""
        ...

    def advance(self, handle: int, amount: int = 1) -> None:
        """Move a counter on."""
        ...

    def done(self, handle: int) -> None:
        """Mark a counter finished."""
        ...


class LogProgress:
    """Progress as occasional log lines (not on a terminal)."""

    def __init__(self, every_seconds: float = 10.0) -> None:
        self._every = every_seconds
        self._tasks: dict[int, list[Any]] = {}

    def task(self, name: str, total: int | None = None) -> int:
        """Start a counter."""
        handle = len(self._tasks) + 1
        self._tasks[handle] = [name, total, 0, time.monotonic()]
        return handle

    def advance(self, handle: int, amount: int = 1) -> None:
        """Move a counter on; log at most every few seconds."""
        entry = self._tasks[handle]
        entry[2] += amount
        now = time.monotonic()
        if now - entry[3] >= self._every:
            entry[3] = now
            self._emit(entry)

    def done(self, handle: int) -> None:
        """Log the counter's last value."""
        self._emit(self._tasks[handle])

    @staticmethod
    def _emit(entry: list[Any]) -> None:
        name, total, count = entry[0], entry[1], entry[2]
        suffix = f"/{total:,}" if total else ""
        log.info("%s: %s%s", name, f"{count:,}", suffix, extra={"progress": name, "count": count})


class NullProgress:
    """Progress that shows nothing (library use, tests)."""

    def task(self, name: str, total: int | None = None) -> int:
        """Start a counter."""
        return 0

    def advance(self, handle: int, amount: int = 1) -> None:
        """Ignore."""

    def done(self, handle: int) -> None:
        """Ignore."""


class RichProgress:
    """A live progress display on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as _RichProgress

        self._progress = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )

    def task(self, name: str, total: int | None = None) -> int:
        """Start a counter."""
        return int(self._progress.add_task(name, total=total))

    def advance(self, handle: int, amount: int = 1) -> None:
        """Move a counter on."""
        from rich.progress import TaskID

        self._progress.advance(TaskID(handle), amount)

    def done(self, handle: int) -> None:
        """Mark a counter finished."""
        from rich.progress import TaskID

        task_id = TaskID(handle)
        for task in self._progress.tasks:
            if task.id == task_id and task.total is None:
                self._progress.update(task_id, total=task.completed)

    @contextmanager
    def shown(self) -> Iterator[RichProgress]:
        """Show the display while the block runs."""
        with self._progress:
            yield self


def event(message: str, /, **fields: Any) -> None:
    """Log one engine event with structured fields (they become JSON keys with --log-format json)."""
    log.info(message, extra=_safe(fields))


def _safe(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in _STANDARD_ATTRS}
