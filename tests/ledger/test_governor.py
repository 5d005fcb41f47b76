"""The platform's shared limits beside a SQLite ledger: slots as file locks, a shared write clock."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.ledger import Ledger
from syncer.ledger.governor import PACING_MARGIN, SharedLimits, open_shared_limits, platform_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def _limits(ledger: Ledger, slots: int = 2, rate: float = 10.0) -> SharedLimits:
    limits = open_shared_limits(
        ledger, platform_key("https://app.360learning.com", "client"), slots=slots, rate=rate
    )
    assert limits is not None
    return limits


def test_the_platform_key_is_the_host_and_the_client_never_the_path() -> None:
    key = platform_key("https://App.360learning.com/", "client")
    assert key == platform_key("https://app.360learning.com", "client")
    assert key != platform_key("https://app.us.360learning.com", "client")
    assert key != platform_key("https://app.360learning.com", "other")
    assert len(key) == 16


def test_two_holders_share_the_slots(ledger: Ledger) -> None:
    first, second = _limits(ledger), _limits(ledger)
    try:
        assert first.try_take() == (0, True)
        assert second.try_take() == (1, True)
        assert first.try_take() is None and second.try_take() is None
        first.give_back(0)
        assert second.try_take() == (0, True)  # given back cleanly
        second.give_back(0, clean=False)  # given back while the platform was full
        assert first.try_take() == (0, False)  # the next holder is told to look
    finally:
        first.close()
        second.close()
    third = _limits(ledger)
    try:
        assert third.try_take() == (0, True) and third.try_take() == (1, True)  # close gave all back
    finally:
        third.close()


def test_a_killed_holder_frees_its_slot_and_the_next_holder_looks(ledger: Ledger, tmp_path: Path) -> None:
    # Another process takes both slots and dies by SIGKILL without giving them back.
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    script = (
        "import os, signal\n"
        "from syncer.ledger import Ledger\n"
        "from syncer.ledger.governor import open_shared_limits, platform_key\n"
        f"ledger = Ledger.open({url!r})\n"
        "key = platform_key('https://app.360learning.com', 'client')\n"
        "limits = open_shared_limits(ledger, key, slots=2, rate=10)\n"
        "assert limits.try_take() and limits.try_take()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60, check=False)
    assert done.returncode == -9
    limits = _limits(ledger)
    try:
        assert limits.try_take() == (0, False)
        assert limits.try_take() == (1, False)
    finally:
        limits.close()


def test_writes_are_spaced_by_one_clock(ledger: Ledger) -> None:
    first, second = _limits(ledger, rate=10.0), _limits(ledger, rate=10.0)
    try:
        # When each write may go: reserved back to back on one clock, one step apart.
        send_times = [time.time() + limits.reserve_write() for limits in (first, second, first, second)]
    finally:
        first.close()
        second.close()
    step = 0.1 + PACING_MARGIN
    for before, after in itertools.pairwise(send_times):
        assert after - before == pytest.approx(step, abs=0.02)


def test_an_in_memory_ledger_shares_nothing() -> None:
    ledger = Ledger.open("sqlite://")
    try:
        assert open_shared_limits(ledger, "k", slots=3, rate=10) is None
    finally:
        ledger.close()
