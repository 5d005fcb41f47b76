"""How long work shows itself: a rich progress display on a terminal, log lines otherwise.

The engine and planner only call ``Progress`` methods and log through the ``syncer`` logger;
``configure_logging`` decides the form of the lines (plain text, or one JSON object per line for
cron and log shippers). Nothing here ever receives a secret.

Every JSON line names its run (``run_id``, ``syncer_version``, ``host``: ``syncer.runinfo``) and,
where the line is about one, its ``integration`` and ``operation``: given as fields, or set for a
task with ``log_fields``. Three markers a record may carry (never shown as fields): ``_shown``,
a line a person at a terminal should read (the plan's summary), ``_wait``, a wait (seconds, or
None while its end is unknown), and ``_status``, the wait's short text for the display.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from syncer.runinfo import current_run

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("syncer")

STANDARD_LOG_ATTRS = frozenset([*vars(logging.makeLogRecord({})), "message", "asctime"])
"""The attributes every LogRecord has: the rest are a line's own fields (``extra=``)."""

_T = TypeVar("_T")

# The integration and operation a task works for (log_fields), added to its JSON lines.
_SCOPE: ContextVar[Mapping[str, str] | None] = ContextVar("syncer_log_fields", default=None)


def log_fields(**fields: str) -> None:
    """Add ``fields`` (``integration``, ``operation``) to every JSON line of the current task.

    Call it at the start of an asyncio task (each task has its own copy of the fields, and the
    tasks it starts inherit them) or of a thread's work. A line's own fields win.
    """
    _SCOPE.set({**(_SCOPE.get() or {}), **fields})


def run_fields() -> dict[str, str]:
    """``run_id``, ``syncer_version`` and ``host`` of this run, as every JSON line carries them."""
    run = current_run()
    return {"run_id": run.run_id, "syncer_version": run.syncer_version, "host": run.host}


def json_log_line(
    level: str, message: str, fields: Mapping[str, Any], created: float | None = None
) -> dict[str, Any]:
    """The object of one ``--log-format json`` line: time, level, message, the run, then ``fields``."""
    moment = datetime.fromtimestamp(time.time() if created is None else created, UTC)
    return {
        "time": moment.isoformat(timespec="milliseconds"),
        "level": level,
        "message": message,
        **run_fields(),
        **{k: v for k, v in fields.items() if k not in _RESERVED},
    }


_RESERVED = frozenset(["time", "level", "message", "run_id", "syncer_version", "host"])
"""The keys every JSON line starts with: a line's own fields never replace them."""


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, the run, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {
            key: value
            for key, value in vars(record).items()
            if key not in STANDARD_LOG_ATTRS and not key.startswith("_")
        }
        extra = {**(_SCOPE.get() or {}), **extra}
        out = json_log_line(record.levelname.lower(), record.getMessage(), extra, record.created)
        return orjson.dumps(out, default=str).decode()


class _TextFormatter(logging.Formatter):
    """``TIME LEVEL message``, UTC."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{stamp} {record.levelname:<7} {record.getMessage()}"


def configure_logging(
    log_format: str = "text",
    *,
    verbose: bool = False,
    quiet: bool = False,
    display: RichProgress | None = None,
) -> None:
    """Send the ``syncer`` logger's lines to stderr as text or JSON (``quiet``: warnings only).

    ``verbose`` (``--debug``) adds the debug lines. With ``display`` (a terminal) the lines go
    through its console, above the live progress: warnings and errors, the lines marked
    ``_shown`` (the plan's summary) and, with ``verbose``, every line; waits show in its status.
    """
    handler: logging.Handler
    if display is not None:
        handler = _DisplayHandler(display, verbose=verbose)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    for line_filter in _LINE_FILTERS:  # add_log_filter's, e.g. --redact's
        handler.addFilter(line_filter)
    log.handlers[:] = [handler]
    level = logging.WARNING if quiet and display is None else logging.INFO
    log.setLevel(logging.DEBUG if verbose else level)
    log.propagate = False


_LINE_FILTERS: list[logging.Filter] = []


def add_log_filter(line_filter: logging.Filter) -> None:
    """Pass every ``syncer`` log line through ``line_filter`` from now on, whatever its form,
    before and after ``configure_logging`` (``--redact``: syncer.redaction.RedactingFilter)."""
    if line_filter not in _LINE_FILTERS:
        _LINE_FILTERS.append(line_filter)
    for handler in log.handlers:
        handler.addFilter(line_filter)


def remove_log_filter(line_filter: logging.Filter) -> None:
    """Undo ``add_log_filter`` (nothing when it was not added)."""
    if line_filter in _LINE_FILTERS:
        _LINE_FILTERS.remove(line_filter)
    for handler in log.handlers:
        handler.removeFilter(line_filter)


class Progress(Protocol):
    """What long work reports as it goes."""

    def task(self, name: str, total: int | None = None, *, unit: str = "") -> int:
        """Start a counter (rows read, records sent...) of ``unit`` and return its handle.

        ``total`` when it is known (the plan's): the display shows a bar, the rate and the time left.
        """
        ...

    def advance(self, handle: int, amount: int = 1) -> None:
        """Move a counter on."""
        ...

    def done(self, handle: int) -> None:
        """Mark a counter finished."""
        ...

    def waiting(self, message: str | None, *, key: str = "wait") -> None:
        """Say what the run waits for, until the next call with the same ``key`` (None: no more)."""
        ...


_UNRATED = frozenset(["", "operations"])
"""Units whose rate says nothing (a handful of operations a minute): shown without one."""


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class _Counter:
    """One counter of ``LogProgress``."""

    __slots__ = ("count", "emitted", "name", "started", "total", "unit")

    def __init__(self, name: str, total: int | None, unit: str) -> None:
        self.name, self.total, self.unit = name, total, unit
        self.count = 0
        self.started = self.emitted = time.monotonic()


class LogProgress:
    """Progress as occasional log lines (not on a terminal): every ``every_seconds`` while a
    counter moves, and once when it is done, with its rate and (given a total) the time left."""

    def __init__(self, every_seconds: float = 10.0) -> None:
        self._every = every_seconds
        self._tasks: dict[int, _Counter] = {}  # the counters not done yet
        self._handles = 0

    def task(self, name: str, total: int | None = None, *, unit: str = "") -> int:
        """Start a counter."""
        self._handles += 1
        self._tasks[self._handles] = _Counter(name, total, unit)
        return self._handles

    def advance(self, handle: int, amount: int = 1) -> None:
        """Move a counter on; log at most every few seconds."""
        entry = self._tasks.get(handle)
        if entry is None:  # done already
            return
        entry.count += amount
        now = time.monotonic()
        if now - entry.emitted >= self._every:
            entry.emitted = now
            self._emit(entry, final=False)

    def done(self, handle: int) -> None:
        """Log the counter's last value (once)."""
        entry = self._tasks.pop(handle, None)
        if entry is not None:
            self._emit(entry, final=True)

    def waiting(self, message: str | None, *, key: str = "wait") -> None:
        """The run's own waits (its operations fill the slots) are debug lines."""
        if message:
            log.debug("%s", message, extra={"wait_for": key})

    @staticmethod
    def _emit(entry: _Counter, *, final: bool) -> None:
        count, total, unit = entry.count, entry.total, entry.unit
        elapsed = time.monotonic() - entry.started
        text = f"{count:,}" + (f"/{total:,}" if total else "") + (f" {unit}" if unit else "")
        if not (count or total or unit):  # a phase without a count: its time only
            text = "done" if final else f"running for {_duration(elapsed)}"
        rate = count / elapsed if elapsed > 0 else 0.0
        if final:
            text += f" in {elapsed:.1f} s"
        if unit not in _UNRATED and rate and count:
            text += f" ({rate:,.0f} {unit}/s"
            if not final and total and count < total:
                text += f", about {_duration((total - count) / rate)} left"
            text += ")"
        fields: dict[str, Any] = {"progress": entry.name, "count": count, "elapsed": round(elapsed, 3)}
        if total is not None:
            fields["total"] = total
        if unit:
            fields["unit"] = unit
        if unit not in _UNRATED:
            fields["rate"] = round(rate, 1)
        log.info("%s: %s", entry.name, text, extra=fields)


class NullProgress:
    """Progress that shows nothing (library use, tests)."""

    def task(self, name: str, total: int | None = None, *, unit: str = "") -> int:
        """Start a counter."""
        return 0

    def advance(self, handle: int, amount: int = 1) -> None:
        """Ignore."""

    def done(self, handle: int) -> None:
        """Ignore."""

    def waiting(self, message: str | None, *, key: str = "wait") -> None:
        """Ignore."""


class RichProgress:
    """A live progress display on a terminal (stderr): one line per counter with its bar, count,
    rate and time left, and below them what the run waits for. It vanishes when the run ends:
    what lasts is what was printed above it (``print_line``: the plan's summary, warnings) and
    the run's summary on stdout."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self._waits: dict[str, tuple[str, float | None]] = {}
        self._progress = _rich_display(self)

    def task(self, name: str, total: int | None = None, *, unit: str = "") -> int:
        """Start a counter."""
        return int(self._progress.add_task(name, total=total, unit=unit))

    def advance(self, handle: int, amount: int = 1) -> None:
        """Move a counter on."""
        from rich.progress import TaskID

        self._progress.advance(TaskID(handle), amount)

    def done(self, handle: int) -> None:
        """Mark a counter finished: its time stops (a count without total becomes its total)."""
        from rich.progress import TaskID

        task_id = TaskID(handle)
        for task in self._progress.tasks:
            if task.id == task_id:
                if task.total is None:
                    self._progress.update(task_id, total=task.completed)
                self._progress.stop_task(task_id)

    def waiting(self, message: str | None, *, key: str = "wait", seconds: float | None = None) -> None:
        """Show ``message`` below the counters (for ``seconds``, or until the same ``key`` again).

        ``{left}`` in the message is replaced by the seconds left.
        """
        if message:
            deadline = None if seconds is None else time.monotonic() + seconds
            self._waits[key] = (message, deadline)
        else:
            self._waits.pop(key, None)
        self._progress.refresh()

    def print_line(self, line: str, *, style: str | None = None) -> None:
        """Print a line above the display; it stays once the display is gone."""
        self.console.print(line, style=style, markup=False, highlight=False, emoji=False)

    def wait_lines(self) -> list[str]:
        """What the run waits for now, one line each (the newest last, at most three)."""
        now = time.monotonic()
        lines = []
        for key, (message, deadline) in list(self._waits.items()):
            if deadline is not None and deadline <= now:
                self._waits.pop(key, None)
                continue
            left = "" if deadline is None else f"{deadline - now:.{0 if deadline - now >= 10 else 1}f}"
            lines.append(message.replace("{left}", left))
        return lines[-3:]

    @contextmanager
    def shown(self) -> Iterator[RichProgress]:
        """Show the display while the block runs."""
        with self._progress:
            yield self


def _rich_display(owner: RichProgress) -> Any:
    """The rich ``Progress`` of ``owner``: its columns, and its wait lines below the counters."""
    from rich.progress import BarColumn, ProgressColumn, Task, TextColumn
    from rich.progress import Progress as _RichProgress
    from rich.text import Text

    class Count(ProgressColumn):
        """``1,234/5,000 records`` (or ``1,234 rows`` without a total)."""

        def render(self, task: Task) -> Text:
            unit = task.fields.get("unit") or ""
            if not unit and not task.completed:  # a phase without a count (comparing)
                return Text("")
            count = f"{int(task.completed):,}" + (f"/{int(task.total):,}" if task.total is not None else "")
            return Text(f"{count} {unit}".rstrip(), style="progress.download")

    class Rate(ProgressColumn):
        """``1,234 records/s``: the recent rate while running, the average once done."""

        def render(self, task: Task) -> Text:
            unit = task.fields.get("unit") or ""
            elapsed = task.elapsed or 0.0
            speed = task.speed if not task.stop_time else (task.completed / elapsed if elapsed else None)
            if unit in _UNRATED or not speed:
                return Text("")
            return Text(f"{speed:,.0f} {unit}/s", style="progress.data.speed")

    class Time(ProgressColumn):
        """``ETA 0:01:12`` while a total is known and things move, else the time spent."""

        max_refresh = 0.5

        def render(self, task: Task) -> Text:
            left = task.time_remaining
            if task.stop_time is None and not task.finished and left is not None and task.completed:
                return Text(f"ETA {_clock(left)}", style="progress.remaining")
            return Text(_clock(task.elapsed or 0.0), style="progress.elapsed")

    class Display(_RichProgress):
        def get_renderables(self) -> Iterable[Any]:
            yield from super().get_renderables()
            for line in owner.wait_lines():
                yield Text(f"… {line}", style="yellow")

    return Display(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        Count(),
        Rate(),
        Time(),
        console=owner.console,
        transient=True,
        speed_estimate_period=10.0,
    )


def _clock(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class _DisplayHandler(logging.Handler):
    """Log lines on a terminal, through the display's console (they print above the live counters).

    Warnings and errors show as ``warning: ...``, lines marked ``_shown`` as they are, and with
    ``verbose`` every line in the text form; a record marked ``_wait`` shows in the wait lines.
    """

    def __init__(self, display: RichProgress, *, verbose: bool = False) -> None:
        super().__init__()
        self._display = display
        self._verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        try:
            attrs = vars(record)
            if "_wait" in attrs:
                seconds = attrs["_wait"]
                key = str(attrs.get("_wait_key") or "wait")
                if seconds == 0:
                    self._display.waiting(None, key=key)
                else:
                    text = str(attrs.get("_status") or record.getMessage())
                    self._display.waiting(text, key=key, seconds=seconds)
            if self._verbose:
                self._display.print_line(self.format(record))
            elif record.levelno >= logging.WARNING:
                style = "bold red" if record.levelno >= logging.ERROR else "yellow"
                self._display.print_line(f"{record.levelname.lower()}: {record.getMessage()}", style=style)
            elif attrs.get("_shown"):
                self._display.print_line(record.getMessage())
        except Exception:
            self.handleError(record)


def event(message: str, /, **fields: Any) -> None:
    """Log one engine event with structured fields (they become JSON keys with --log-format json)."""
    log.info(message, extra=_safe(fields))


def announce(message: str, /, **fields: Any) -> None:
    """An event a person at a terminal reads too (the plan's summary): printed above the display."""
    log.info(message, extra={**_safe(fields), "_shown": True})


def _safe(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in STANDARD_LOG_ATTRS}
