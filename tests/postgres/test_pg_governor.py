"""The platform's shared limits on PostgreSQL: advisory locks as slots, one write clock row."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from syncer.ledger import Ledger
from syncer.ledger.governor import PACING_MARGIN, SharedLimits, open_shared_limits

pytestmark = pytest.mark.postgres


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(pg_url)
    yield opened
    opened.close()


def _limits(ledger: Ledger, platform: str = "p1") -> SharedLimits:
    limits = open_shared_limits(ledger, platform, slots=2, rate=10.0)
    assert limits is not None
    return limits


def test_runners_share_the_slots_and_a_lost_session_frees_them(ledger: Ledger, pg_admin: Engine) -> None:
    first, second = _limits(ledger), _limits(ledger)
    other_platform = _limits(ledger, "p2")
    try:
        assert first.try_take() == (0, True) and second.try_take() == (1, True)
        assert first.try_take() is None and second.try_take() is None
        assert other_platform.try_take() == (0, True)  # another platform's slots are its own
        second.give_back(1)
        assert first.try_take() == (1, True)
        # The holder's session ends (a killed runner, a partition noticed by keepalive): its
        # slots are free, and the next holder is told that it did not let go cleanly.
        pid = first._conn.execute(text("SELECT pg_backend_pid()")).scalar_one()  # type: ignore[attr-defined]
        with pg_admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = time.monotonic() + 10
        while (taken := second.try_take()) is None:
            assert time.monotonic() < deadline, "the killed session's slots were never freed"
            time.sleep(0.05)
        assert taken[1] is False
    finally:
        for limits in (first, second, other_platform):
            with contextlib.suppress(Exception):  # the terminated session may fail to close
                limits.close()


def test_writes_are_spaced_on_the_servers_clock(ledger: Ledger) -> None:
    first, second = _limits(ledger), _limits(ledger)
    try:
        send_times = [time.time() + limits.reserve_write() for limits in (first, second, first, second)]
    finally:
        first.close()
        second.close()
    for before, after in itertools.pairwise(send_times):
        assert after - before == pytest.approx(0.1 + PACING_MARGIN, abs=0.02)
