"""The platform's limits shared by every runner that targets it: operation slots and the write rate.

360Learning counts 3 unfinished bulk operations and 10 writes a second per company, whoever sends
them. Runners of one platform (``platform_key``: the API host and client id, hashed; never the
secret) share both through their ledger, so that N runners never ask for 3N slots:

- **PostgreSQL.** Slot N is a session-level advisory lock (``pg_try_advisory_lock``) on a key
  derived from the ledger's schema, the platform and N, taken on the governor's own connection.
  The server releases it when that session ends: at once when the runner dies on a live host
  (SIGKILL, OOM: the kernel closes the socket), and within ``LEASE_SECONDS`` when the host itself
  vanishes (the session's TCP keepalive and ``tcp_user_timeout`` are set for it). The write rate
  is one row per platform in ``platform_pacing``: each write reserves its send time on the
  server's clock in one statement (``UPDATE ... SET next_at = greatest(next_at, now) + interval
  RETURNING``), so runners on several hosts agree.
- **SQLite.** The same rule between processes of one machine, in the ledger's folder: slot N is
  an OS file lock on ``.syncer-<platform>.slot-N.lock`` (freed by the kernel when its holder
  dies, even by SIGKILL), the write rate a next-send-time file under its own file lock. One
  SQLite ledger serves one run at a time, so runners share when their ledgers sit in one folder.
- An in-memory ledger has nothing to share: ``open_shared_limits`` returns None.

Every call blocks (a database round trip or a file lock); the apply stage makes them off its event
loop, in one thread (``syncer.apply.governor``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from syncer.errors import LedgerUnusableError, SyncerError
from syncer.ledger.lock import advisory_key, lock_file_problem, take_file_lock
from syncer.ledger.store import Ledger
from syncer.progress import event

__all__ = ["LEASE_SECONDS", "SharedLimits", "open_shared_limits", "platform_key"]

PACING_MARGIN = 0.02
"""Seconds added to each write's spacing (``1 / rate``): absorbs the jitter between reserving a
send time and reaching the platform, whose window slides over arrivals."""

# The server side of the governor's session: how soon PostgreSQL ends it, and frees its slots,
# when the runner's host vanishes without closing its connection. Idle: 10 s, then 3 probes 5 s
# apart; with data unacknowledged: 25 s (tcp_user_timeout, PostgreSQL 12+).
_SERVER_KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "25000",
}
# The client side (libpq): the runner notices a vanished database server as soon.
_CLIENT_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25000,
    "connect_timeout": 10,
}
_FREE = "free"
LEASE_SECONDS = 25.0
"""The longest a vanished runner keeps its slots on PostgreSQL (a killed process: none)."""


def platform_key(base_url: str, client_id: str) -> str:
    """The platform's name among runners: API host and client id, hashed (16 hex digits)."""
    host = (urlsplit(base_url).netloc or base_url).lower()
    return hashlib.sha256(f"{host}\n{client_id}".encode()).hexdigest()[:16]


class SharedLimits(Protocol):
    """Slots and write times of one platform, shared with the other runners (blocking calls)."""

    slots: int

    def try_take(self) -> tuple[int, bool] | None:
        """Take one free slot without waiting: its number and whether its last holder gave it back
        cleanly (False: it died holding it, or gave it back while the platform was full), or None
        while all are held."""

    def give_back(self, slot: int, *, clean: bool = True) -> None:
        """Free a slot this runner holds (``clean=False``: the next holder must look at the platform)."""

    def reserve_write(self) -> float:
        """Reserve the next send time of a write: the seconds to wait before sending it."""

    def close(self) -> None:
        """Free every slot held and let go of the database or files."""


def open_shared_limits(ledger: Ledger, platform: str, *, slots: int, rate: float) -> SharedLimits | None:
    """The limits of ``platform`` shared through ``ledger`` (None: an in-memory ledger)."""
    interval = 1.0 / rate + PACING_MARGIN
    if ledger.dialect == "postgresql":
        return _PgLimits(ledger, platform, max(1, slots), interval)
    url = make_url(ledger.engine.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return _FileLimits(Path(url.database).parent, platform, max(1, slots), interval)
    return None


class _PgLimits:
    """Advisory locks as slots and a ``platform_pacing`` row as the write clock (PostgreSQL)."""

    def __init__(self, ledger: Ledger, platform: str, slots: int, interval: float) -> None:
        self.slots = slots
        self._ledger = ledger
        self._platform = platform
        self._interval = interval
        self._held: set[int] = set()
        self._me = f"{socket.gethostname()} pid {os.getpid()}"
        url = ledger.engine.url
        given = set(url.query)
        args = {k: v for k, v in _CLIENT_KEEPALIVE.items() if k not in given}
        with ledger.translate_errors("connecting the governor of the platform's limits"):
            # Its own engine and session: the slots live and die with this one connection.
            self._engine: Engine = create_engine(
                url, poolclass=NullPool, connect_args=args, isolation_level="AUTOCOMMIT"
            )
            self._conn: Connection | None = self._engine.connect()
            for name, value in _SERVER_KEEPALIVE.items():
                with contextlib.suppress(Exception):  # tcp_user_timeout needs PostgreSQL 12
                    self._conn.execute(text(f"SET {name} = {value}"))
            scope = str(self._conn.execute(text("SELECT current_schema()")).scalar_one())
            self._keys = [advisory_key(f"slot:{platform}:{n}", scope) for n in range(slots)]
            self._conn.execute(
                text(
                    "INSERT INTO platform_pacing (platform, next_at) VALUES (:p, 0) "
                    "ON CONFLICT (platform) DO NOTHING"
                ),
                {"p": platform},
            )
            self._conn.execute(
                text(
                    "INSERT INTO platform_slots (platform, slot, holder) VALUES (:p, :n, NULL) "
                    "ON CONFLICT (platform, slot) DO NOTHING"
                ),
                [{"p": platform, "n": n} for n in range(slots)],
            )

    def _connection(self) -> Connection:
        if self._conn is None:
            raise SyncerError("the governor of the platform's limits is closed")
        return self._conn

    def try_take(self) -> tuple[int, bool] | None:
        """Take one free slot without waiting (see ``SharedLimits.try_take``)."""
        conn = self._connection()
        with self._ledger.translate_errors("taking an operation slot"):
            for n, key in enumerate(self._keys):
                # Advisory locks stack within a session: never ask again for one held here.
                if n in self._held:
                    continue
                if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one():
                    self._held.add(n)
                    # The lock is the guard; the row only says whether its last holder let go.
                    last = conn.execute(
                        text(
                            "UPDATE platform_slots SET holder = :me FROM (SELECT holder AS last "
                            "FROM platform_slots WHERE platform = :p AND slot = :n FOR UPDATE) AS was "
                            "WHERE platform = :p AND slot = :n RETURNING was.last"
                        ),
                        {"me": self._me, "p": self._platform, "n": n},
                    ).scalar_one_or_none()
                    return n, last is None
        return None

    def give_back(self, slot: int, *, clean: bool = True) -> None:
        """Free a slot this runner holds (see ``SharedLimits.give_back``)."""
        if slot not in self._held:
            return
        conn = self._connection()
        with self._ledger.translate_errors("freeing an operation slot"):
            if clean:
                conn.execute(
                    text("UPDATE platform_slots SET holder = NULL WHERE platform = :p AND slot = :n"),
                    {"p": self._platform, "n": slot},
                )
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._keys[slot]})
        self._held.discard(slot)

    def reserve_write(self) -> float:
        """Reserve the next send time of a write: the seconds to wait before sending it."""
        with self._ledger.translate_errors("reserving a write"):
            wait = (
                self._connection()
                .execute(
                    text(
                        "UPDATE platform_pacing SET next_at = greatest(next_at, "
                        "extract(epoch FROM clock_timestamp())::float8) + :i WHERE platform = :p "
                        "RETURNING next_at - :i - extract(epoch FROM clock_timestamp())::float8"
                    ),
                    {"i": self._interval, "p": self._platform},
                )
                .scalar_one()
            )
        return max(0.0, float(wait))

    def close(self) -> None:
        """Free every slot held and let go of the database."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if self._held:  # given back cleanly: this run's operations are seen finished
                    conn.execute(
                        text(
                            "UPDATE platform_slots SET holder = NULL WHERE platform = :p AND slot = ANY(:n)"
                        ),
                        {"p": self._platform, "n": sorted(self._held)},
                    )
                # Unlock rather than rely on the close: a pooler could keep the session open.
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
            except Exception:
                with contextlib.suppress(Exception):
                    conn.invalidate()  # ending the session frees them for sure
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
        self._held.clear()
        self._engine.dispose()


SLOW_CLOCK_SECONDS = 1.0
"""A wait for the shared write clock's file lock longer than this is logged (runners contend)."""


def _log_slow_clock(waited: float, clock: Path) -> None:
    if waited >= SLOW_CLOCK_SECONDS:
        event(
            f"waited {waited:.1f} s for the platform's shared write clock ({clock.name}): "
            "other runners of this platform hold it",
            waited_seconds=round(waited, 3),
        )


class _FileLimits:
    """File locks as slots and a next-send-time file as the write clock (SQLite, one machine)."""

    def __init__(self, folder: Path, platform: str, slots: int, interval: float) -> None:
        self.slots = slots
        self._interval = interval
        stem = f".syncer-{platform}"
        self._paths = [folder / f"{stem}.slot-{n}.lock" for n in range(slots)]
        self._clock = folder / f"{stem}.pacing"
        self._clock_lock = FileLock(
            folder / f"{stem}.pacing.lock", mode=0o600, thread_local=False, preserve_lock_file=True
        )
        self._held: dict[int, FileLock] = {}

    def try_take(self) -> tuple[int, bool] | None:
        """Take one free slot without waiting (see ``SharedLimits.try_take``)."""
        for n, path in enumerate(self._paths):
            if n in self._held:
                continue
            lock = take_file_lock(path)
            if lock is not None:
                self._held[n] = lock
                # The lock is the guard; the file's text only says whether its last holder let go.
                was = self._mark(n, f"held by {socket.gethostname()} pid {os.getpid()}")
                return n, was in ("", _FREE)
        return None

    def _mark(self, slot: int, mark: str) -> str:
        """Write ``mark`` in a held slot's file; return what it said before."""
        # Beside the lock file, not in it: Windows locks a locked file's bytes against writes.
        path = self._paths[slot].with_suffix(".state")
        try:
            try:
                was = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                was = ""
            path.write_text(mark, encoding="utf-8")
        except OSError as exc:
            raise LedgerUnusableError(lock_file_problem(path, exc)) from exc
        return was

    def give_back(self, slot: int, *, clean: bool = True) -> None:
        """Free a slot this runner holds (see ``SharedLimits.give_back``)."""
        lock = self._held.pop(slot, None)
        if lock is not None:
            try:
                if clean:
                    self._mark(slot, _FREE)
            finally:
                lock.release(force=True)

    def reserve_write(self) -> float:
        """Reserve the next send time of a write: the seconds to wait before sending it."""
        asked = time.monotonic()
        try:
            with self._clock_lock.acquire(timeout=10):
                _log_slow_clock(time.monotonic() - asked, self._clock)
                try:
                    next_at = float(self._clock.read_text(encoding="ascii") or 0.0)
                except (FileNotFoundError, ValueError):
                    next_at = 0.0
                now = time.time()
                slot = max(next_at, now)
                self._clock.write_text(repr(slot + self._interval), encoding="ascii")
        except OSError as exc:  # filelock's Timeout is an OSError too
            raise LedgerUnusableError(lock_file_problem(self._clock, exc)) from exc
        return slot - now

    def close(self) -> None:
        """Free every slot held."""
        for slot in list(self._held):
            self.give_back(slot)  # this run's operations are seen finished (or never sent)
