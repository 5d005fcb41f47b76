"""Advisory locks per integration: parallel on different ones, exclusive on one, freed by death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from syncer.errors import LockedError
from syncer.ledger import Ledger
from syncer.ledger.lock import acquire_lock, clear_stale_holders, read_holders

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


class Holder:
    """A ``tests.postgres.holder`` child process and its output lines."""

    def __init__(self, url: str, names: list[str], timeout: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.postgres.holder", url, str(timeout), *names],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        """The next line it prints (blocking reads, bounded by the process's own lifetime)."""
        assert self.proc.stdout is not None
        got = self.proc.stdout.readline()
        if not got:
            self.proc.wait(DEADLINE)
            raise AssertionError(f"holder ended (exit {self.proc.returncode}): {self.stderr()}")
        return got.strip()

    def let_go(self) -> str:
        """Close its stdin so it releases, and return its ``released`` line."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.line()

    def said(self, word: str) -> str:
        """The first stderr line holding ``word`` (reading ahead of it)."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if word in line:
                return line
        raise AssertionError(f"holder ended without saying {word!r} (exit {self.proc.wait(DEADLINE)})")

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(pg_url)  # migrate once, before the children start
    yield opened
    opened.close()


@pytest.fixture
def spawn(ledger: Ledger, pg_url: str) -> Iterator[object]:
    started: list[Holder] = []

    def start(names: list[str], timeout: float = 0.0) -> Holder:
        holder = Holder(pg_url, names, timeout)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.stop()


def _stamp(line: str, word: str) -> float:
    head, _, value = line.partition(" ")
    assert head == word, line
    return float(value)


def test_different_integrations_hold_at_once(spawn) -> None:
    alpha, beta = spawn(["alpha"]), spawn(["beta"])
    assert alpha.line().startswith("locked") and beta.line().startswith("locked")
    # Both hold now: each releases only when told, after the other has taken its own.
    assert alpha.let_go().startswith("released") and beta.let_go().startswith("released")
    assert alpha.proc.wait(DEADLINE) == beta.proc.wait(DEADLINE) == 0


def test_same_integration_is_refused_or_waits(spawn, ledger: Ledger) -> None:
    first = spawn(["alpha", "beta"])
    assert first.line().startswith("locked")
    refused = spawn(["beta"])  # no timeout: refused at once, naming the holder
    line = refused.line()
    assert line.startswith("refused 5 another syncer run holds the lock on integration:beta")
    assert f"pid {first.proc.pid} since" in line
    assert refused.proc.wait(DEADLINE) == 5
    assert {h.pid for h in read_holders(ledger)} == {first.proc.pid}

    waiting = spawn(["alpha"], timeout=DEADLINE)
    assert "for the lock on integration:alpha" in waiting.said("waiting up to")  # it is waiting
    released = _stamp(first.let_go(), "released")
    taken = _stamp(waiting.line(), "locked")
    assert taken >= released  # never interleaved: the second held only after the first let go
    assert waiting.let_go().startswith("released")


def test_a_killed_holder_releases_its_lock(spawn, ledger: Ledger) -> None:
    first = spawn(["alpha"])
    assert first.line().startswith("locked")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(DEADLINE)
    # The server ends the dead client's session (and its advisory locks) as the socket closes;
    # the next run waits at most a moment for that, and is never refused.
    second = spawn(["alpha"], timeout=DEADLINE)
    assert second.line().startswith("locked")
    assert [h.pid for h in read_holders(ledger)] == [second.proc.pid]
    assert second.let_go().startswith("released")


def test_sessions_exclude_each_other_in_one_process(pg_url: str, ledger: Ledger) -> None:
    other = Ledger.open(pg_url)
    try:
        with acquire_lock(ledger, ["alpha"]):
            with pytest.raises(LockedError, match=r"integration:alpha: \S+ pid \d+ since"):
                acquire_lock(other, ["alpha", "beta"])
            with acquire_lock(other, ["beta"]) as beta:  # the failed attempt gave beta back
                assert beta.names == ["integration:beta"]
        with acquire_lock(other, ["alpha"]):
            pass
    finally:
        other.close()


def test_stale_holder_rows_are_cleared_live_ones_kept(pg_url: str, ledger: Ledger) -> None:
    lock = acquire_lock(ledger, ["alpha"])
    other = Ledger.open(pg_url)
    try:
        with other.engine.begin() as conn:  # a row left by a run whose session is gone
            conn.execute(
                text(
                    "INSERT INTO locks (name, host, pid, started_at, heartbeat_at) "
                    "VALUES ('integration:gone', 'h', 1, now(), now())"
                )
            )
        assert [h.name for h in clear_stale_holders(other)] == ["integration:gone"]
        assert [h.name for h in read_holders(other)] == ["integration:alpha"]
    finally:
        lock.release()
        other.close()
    assert read_holders(ledger) == []


def test_ledgers_in_two_schemas_do_not_share_locks(pg_admin: Engine, pg_url: str, ledger: Ledger) -> None:
    from tests.postgres.conftest import drop_schema, schema_url

    schema = f"syncer_test_other_{int(time.time() * 1e6) % 10**9}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    other = Ledger.open(schema_url(schema))
    try:
        with acquire_lock(ledger, ["alpha"]), acquire_lock(other, ["alpha"]):
            pass
    finally:
        other.close()
        drop_schema(pg_admin, schema)
