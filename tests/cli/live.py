"""``syncer`` in its own process, its output read as it comes: on a pseudo-terminal, or from a pipe.

The terminal tests (test_progress_terminal.py) and the log tests (test_logs.py) share it: a
small project (config, courses.csv, stats.csv, SQLite ledger) pointed at a simulator, and
``Live``, a running ``syncer`` whose output is read with a deadline, never by sleeping.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.project import (
    ACME,
    STAT_HEADER,
    TAGGED_COURSE_FIELDS,
    TAGGED_COURSE_HEADER,
    config_text,
    course_rows,
    courses_block,
    stat_rows,
    stats_block,
    write_csv,
)

CLIENT_ID = "live-client"
SECRET = "s3cret-live-5b2e90d4"
COLUMNS = 160
"""The pseudo-terminal's width: wide enough that no line of the display wraps."""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOW_CURSOR = "\x1b[?25h"
"""What rich writes when its live display ends (it hid the cursor when it started)."""


def write_project(root: Path, base_url: str, *, courses: int = 4, learners: int = 3, **api: Any) -> Path:
    """A config (one declared integration, acme) and its CSV sources in ``root``; its path."""
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "base_url": base_url,
        "client_id": CLIENT_ID,
        "client_secret": "${L360_CLIENT_SECRET}",
        "retry_seconds": 30,
        **api,
    }
    acme = {
        **ACME,
        "settings": {"defaultProgress": 0, "defaultCompletion": False},
        "courses": courses_block(archive_missing=True, fields=TAGGED_COURSE_FIELDS),
        "stats": stats_block(),
    }
    config = root / "syncer.yaml"
    config.write_text(config_text(settings, "sqlite:///syncer.db", {"acme": acme}))
    write_csv(root / "courses.csv", TAGGED_COURSE_HEADER, course_rows(courses))
    write_csv(root / "stats.csv", STAT_HEADER, stat_rows(courses, learners))
    return config


def plain(raw: str) -> str:
    """Terminal output without its escape sequences and carriage returns."""
    return _ANSI.sub("", raw).replace("\r", "")


class Live:
    """``python -m syncer ARGS``, stdout and stderr together, on a pseudo-terminal (``terminal``)
    or a pipe; ``expect`` reads until something shows, within a deadline."""

    def __init__(self, *args: str, env: dict[str, str], terminal: bool) -> None:
        command = [sys.executable, "-m", "syncer", *args]
        environ = {**os.environ, "L360_CLIENT_SECRET": SECRET, **env}
        environ.pop("COLUMNS", None)
        environ.pop("LINES", None)
        if terminal:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
            environ["TERM"] = "xterm-256color"
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=environ
            )
            os.close(slave)
            self._fd = master
        else:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=environ,
            )
            assert self.proc.stdout is not None
            self._fd = self.proc.stdout.fileno()
        self._raw = bytearray()
        self._eof = False

    @property
    def raw(self) -> str:
        """Everything read so far, as written."""
        return self._raw.decode("utf-8", errors="replace")

    @property
    def text(self) -> str:
        """Everything read so far, without terminal escapes."""
        return plain(self.raw)

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            chunk = os.read(self._fd, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            chunk = b""
        if chunk:
            self._raw += chunk
        else:
            self._eof = True

    def expect(self, seen: Callable[[str], bool], within: float, what: str) -> str:
        """Read until ``seen(text)``; fail when the output ends first or ``within`` seconds pass."""
        deadline = time.monotonic() + within
        while not seen(self.text):
            left = deadline - time.monotonic()
            assert left > 0, f"{what}: not seen within {within:g} s; output so far:\n{self.text[-3000:]}"
            assert not self._eof, f"{what}: the output ended first:\n{self.text[-3000:]}"
            self._pump(min(left, 0.5))
        return self.text

    def finish(self, within: float) -> int:
        """Read to the end of the output and return the exit code (within ``within`` seconds)."""
        deadline = time.monotonic() + within
        while not self._eof:
            left = deadline - time.monotonic()
            assert left > 0, f"still running after {within:g} s; output so far:\n{self.text[-3000:]}"
            self._pump(min(left, 0.5))
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop the process if it still runs; close the terminal or pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        else:
            os.close(self._fd)
