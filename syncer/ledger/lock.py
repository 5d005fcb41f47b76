"""Run locks: two runs against one ledger never interleave.

SQLite: an OS file lock on ``<ledger>.lock`` beside the database, taken with the ``filelock``
library (``flock`` on Unix, ``msvcrt.locking`` on Windows: syncer imports no ``fcntl`` itself);
the kernel releases it when its holder dies, even by SIGKILL, so a run after a killed one is never
refused. PostgreSQL: one session-level advisory lock per integration, released with the holder's
session. In both cases a row in the ledger's ``locks`` table names the holder (host, pid, start,
heartbeat) for messages and ``syncer status``; the row is information only, never the guard.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Connection, make_url

from syncer.errors import LedgerUnusableError, LockedError, SyncerError
from syncer.ledger.schema import locks_table
from syncer.ledger.store import Ledger
from syncer.progress import event

_POLL_SECONDS = 0.1
_HOLDER_SETTLE_SECONDS = 2.0
LEDGER_LOCK = "ledger"


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock."""

    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime

    def describe(self) -> str:
        """``host pid 123 since ...``, for messages."""
        return (
            f"{self.host} pid {self.pid} since {self.started_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(last heartbeat {self.heartbeat_at:%H:%M:%S})"
        )


def lock_names(ledger: Ledger, integrations: Sequence[str]) -> list[str]:
    """The locks a run over ``integrations`` takes on this ledger."""
    if ledger.dialect == "postgresql":
        return [f"integration:{name}" for name in sorted(integrations)]
    return [LEDGER_LOCK]


def _lock_file(ledger: Ledger) -> Path | None:
    url = make_url(ledger.engine.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_name(Path(url.database).name + ".lock")


def take_file_lock(path: Path) -> FileLock | None:
    """One non-blocking try at the OS lock on ``path``: the held lock, or None while another holds it."""
    # thread_local=False: a run may release from another thread than the one that took the lock.
    # preserve_lock_file=True: the file stays (waiters share one inode) and there is no soft
    # fallback, whose marker would outlive a killed holder; only the kernel's lock guards.
    lock = FileLock(path, mode=0o600, thread_local=False, preserve_lock_file=True)
    try:
        if not path.parent.is_dir():  # filelock would create it: say it is gone instead
            raise FileNotFoundError(2, "No such file or directory", str(path.parent))
        lock.acquire(blocking=False)
    except Timeout:
        return None
    except OSError as exc:
        raise LedgerUnusableError(lock_file_problem(path, exc)) from exc
    return lock


def lock_file_problem(path: Path, exc: OSError) -> str:
    """What a person must do about a lock file that cannot be created or opened."""
    folder = path.parent
    reason = (exc.strerror or type(exc).__name__).lower()
    if isinstance(exc, PermissionError) and path.is_file():
        fix = f"make {path} writable by the user running syncer ({_user()}), or remove it (syncer creates it)"
    elif isinstance(exc, PermissionError):
        fix = f"make {folder} writable by the user running syncer ({_user()}) or move the ledger"
    elif isinstance(exc, IsADirectoryError):
        fix = f"remove the directory {path} (syncer creates this file itself) or move the ledger"
    elif isinstance(exc, FileNotFoundError | NotADirectoryError | FileExistsError):
        fix = f"check that {folder} is a folder that exists, or move the ledger (ledger: in the config)"
    else:
        fix = "check the folder and its file system, or move the ledger (ledger: in the config)"
    return f"cannot create the lock file {path}: {reason}; {fix}"


def _user() -> str:
    getuid = getattr(os, "getuid", None)  # absent on Windows
    if getuid is None:
        return os.environ.get("USERNAME", "this user")
    return f"uid {getuid()}"


def advisory_key(name: str, scope: str = "") -> int:
    """The PostgreSQL advisory lock key of ``name`` (run locks here, the governor's slots)."""
    # A signed 64-bit key derived from the lock name: the same in every process. Advisory locks
    # are per database, so the scope (the ledger's schema) keeps two ledgers of one database apart.
    label = f"syncer:{scope}:{name}" if scope else f"syncer:{name}"
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big", signed=True)


class RunLock:
    """Held locks of one run; release with ``release()`` or use as a context manager."""

    def __init__(self, ledger: Ledger, names: list[str], run_id: int | None) -> None:
        self._ledger = ledger
        self.names = names
        self._run_id = run_id
        self._file: FileLock | None = None
        self._conn: Connection | None = None
        self._scope = ""
        self._held = False  # every advisory lock of ``names`` is held by ``_conn``

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _try_take(self) -> list[str]:
        """Take what can be taken; return the names still held by others."""
        path = _lock_file(self._ledger)
        if path is not None:
            if self._file is None:
                self._file = take_file_lock(path)
                if self._file is None:
                    return list(self.names)
            return []
        if self._ledger.dialect != "postgresql":
            return []  # an in-memory or server database without advisory locks: nothing to share
        with self._ledger.translate_errors("taking a lock"):
            if self._conn is None:
                self._conn = self._ledger.engine.connect()
                self._scope = str(self._conn.execute(text("SELECT current_schema()")).scalar_one())
            busy: list[str] = []
            for name in self.names:
                got = self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(name, self._scope)}
                ).scalar_one()
                self._conn.commit()
                if not got:
                    busy.append(name)
            if busy:
                self._unlock(self._conn, [name for name in self.names if name not in busy])
            self._held = not busy
            return busy

    def _unlock(self, conn: Connection, names: Sequence[str]) -> None:
        for name in names:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(name, self._scope)})
        conn.commit()

    def acquire(self, timeout: float) -> None:
        """Take every lock, waiting up to ``timeout`` seconds; raise LockedError naming the holder."""
        deadline = time.monotonic() + max(0.0, timeout)
        announced = False
        while True:
            busy = self._try_take()
            if not busy:
                break
            if time.monotonic() >= deadline:
                self._close()
                raise LockedError(
                    f"another syncer run holds the lock on {', '.join(busy)}: "
                    f"{self._who(busy, settle=_HOLDER_SETTLE_SECONDS)}. "
                    "Wait for it to finish, or pass --lock-timeout SECONDS to wait."
                )
            if not announced:
                # A run that waits says so: in a cron log, a silent wait looks like a hang.
                event(
                    f"waiting up to {timeout:g} s for the lock on {', '.join(busy)}: {self._who(busy)}",
                    locks=busy,
                )
                announced = True
            time.sleep(_POLL_SECONDS)
        now = datetime.now(UTC)
        with self._ledger.translate_errors("recording the lock holder"), self._ledger.engine.begin() as conn:
            conn.execute(delete(locks_table).where(locks_table.c.name.in_(self.names)))
            conn.execute(
                locks_table.insert(),
                [
                    {
                        "name": name,
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "started_at": now,
                        "heartbeat_at": now,
                        "run_id": self._run_id,
                    }
                    for name in self.names
                ],
            )

    def _who(self, busy: Sequence[str], settle: float = 0.0) -> str:
        """The holders of ``busy``; waits up to ``settle`` s for a row the holder is writing."""
        # A run that has just taken the lock writes its row a moment later: a run refused in
        # that moment would otherwise name "another process" instead of the holder.
        give_up = time.monotonic() + settle
        while True:
            holders = [h for h in read_holders(self._ledger) if h.name in busy]
            if holders or time.monotonic() >= give_up:
                return "; ".join(h.describe() for h in holders) or "another process"
            time.sleep(_POLL_SECONDS)

    def heartbeat(self) -> None:
        """Show that the holder is alive."""
        table = locks_table
        with self._ledger.translate_errors("lock heartbeat"), self._ledger.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.name.in_(self.names), table.c.pid == os.getpid())
                .values(heartbeat_at=datetime.now(UTC))
            )

    def release(self) -> None:
        """Remove the holder rows and release the locks."""
        if self._file is None and self._conn is None:
            return
        table = locks_table
        with contextlib.suppress(Exception), self._ledger.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.name.in_(self.names), table.c.pid == os.getpid()))
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.release(force=True)  # unlocks and closes the descriptor
        if self._conn is not None:
            conn, self._conn = self._conn, None
            held, self._held = self._held, False
            try:
                # Session-level locks outlive close(): the pool keeps the session open. Unlock
                # them; if that fails, drop the session itself, which releases them for sure.
                if held:
                    self._unlock(conn, self.names)
            except Exception:
                with contextlib.suppress(Exception):
                    conn.invalidate()
            finally:
                with contextlib.suppress(Exception):
                    conn.close()


def acquire_lock(
    ledger: Ledger, integrations: Sequence[str], *, timeout: float = 0.0, run_id: int | None = None
) -> RunLock:
    """Take the run locks for ``integrations`` (waiting up to ``timeout`` s) or raise LockedError."""
    lock = RunLock(ledger, lock_names(ledger, integrations), run_id)
    lock.acquire(timeout)
    return lock


def read_holders(ledger: Ledger) -> list[Holder]:
    """The holder rows in the ledger (live or left behind)."""
    table = locks_table
    with ledger.translate_errors("reading locks"), ledger.engine.connect() as conn:
        rows: list[Any] = list(conn.execute(select(table).order_by(table.c.name)).mappings())
    return [
        Holder(r["name"], r["host"], r["pid"], _utc(r["started_at"]), _utc(r["heartbeat_at"])) for r in rows
    ]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def clear_stale_holders(ledger: Ledger) -> list[Holder]:
    """Remove holder rows whose lock nobody holds now (``syncer unlock``); return them.

    A lock still held by a live run is left alone: the kernel (or PostgreSQL) knows it is alive.
    """
    cleared: list[Holder] = []
    for holder in read_holders(ledger):
        with _probe(ledger, holder.name) as held:
            if held:
                continue
            table = locks_table
            with ledger.translate_errors("clearing a lock row"), ledger.engine.begin() as conn:
                conn.execute(delete(table).where(table.c.name == holder.name))
            cleared.append(holder)
    return cleared


# -- liveness: is a holder alive? (syncer status, syncer unlock) ---------------------------------

STALE_HEARTBEAT_SECONDS = 300.0
"""A holder whose lock cannot be probed (say, no right to the lock file) is dead when its heartbeat
is older than this: ten missed beats of an apply (syncer/apply/run.py beats every 30 s)."""


@contextlib.contextmanager
def _probe(ledger: Ledger, name: str) -> Iterator[bool]:
    """Whether someone holds the lock ``name``; while it is free, this block holds it."""
    probe = RunLock(ledger, [name], None)
    try:
        yield bool(probe._try_take())
    finally:
        probe._close()


def holder_alive(ledger: Ledger, holder: Holder) -> bool:
    """Whether the run a holder row names is alive: it still holds its lock.

    A holder on this host whose process is gone is dead without asking (the kernel released its
    lock). Otherwise the lock answers, as for ``clear_stale_holders``: someone holds it, or not.
    A probe of a free lock holds it for an instant. The heartbeat decides only when the lock
    cannot be probed: a refresh does not beat, so it alone would call a long refresh dead.
    """
    if holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return False
    try:
        with _probe(ledger, holder.name) as held:
            return held
    except (SyncerError, OSError):
        return datetime.now(UTC) - holder.heartbeat_at <= timedelta(seconds=STALE_HEARTBEAT_SECONDS)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (True where that cannot be asked)."""
    if os.name != "posix":
        return True  # Windows: os.kill(pid, 0) would send CTRL_C_EVENT
    if pid <= 0:
        return False  # 0 and negatives name process groups, never a holder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
