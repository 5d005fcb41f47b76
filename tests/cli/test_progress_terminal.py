"""`syncer apply` on a pseudo-terminal against the simulator: the live display a person watches.

What a person sees (issue 18): the plan's summary before anything is sent, one counter per
phase with the plan's totals (reading each source, each integration's course import, its
statistics), records moving with the operations' own progress while they run, the waits
(a slot, a retry after 503), the run's summary at the end; and a run with nothing to send says
only that the platform is in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncer.simulator import SimulatorThread
from tests.cli.live import CLIENT_ID, SECRET, SHOW_CURSOR, Live, plain, write_project
from tests.project import client_settings, simulators

POLL = ("--poll-seconds", "0.01")
IN_STEP = "nothing to send: the platform is in step with the sources"
OPERATION = r"/api/v2/bulk/operations/[0-9a-f]{24}"
PART_OF_THE_STATISTICS = re.compile(r"acme: sending statistics .* ([1-9]|1[01])/12 statistics")

StartSim = Callable[..., SimulatorThread]


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """Start simulators with the platform's real limits (``start(op_seconds=...)``)."""
    with simulators(client_settings(CLIENT_ID, SECRET)) as start:
        yield start


def apply_on_terminal(config: Path) -> Live:
    return Live("apply", str(config), *POLL, env={}, terminal=True)


def lasting(live: Live) -> str:
    """What the run wrote once its live display was gone (the display is transient)."""
    assert SHOW_CURSOR in live.raw, "no live display"
    return plain(live.raw.rsplit(SHOW_CURSOR, 1)[1])


def test_apply_shows_the_plan_then_each_phase_with_its_totals(tmp_path: Path, start_sim: StartSim) -> None:
    # One operation of 12 statistics lasting 1.5 s: the counter can only move inside it by the
    # operation's own progress.index.
    sim = start_sim(op_seconds=1.5)
    config = write_project(tmp_path, sim.base_url)
    live = apply_on_terminal(config)
    try:
        live.expect(lambda t: bool(PART_OF_THE_STATISTICS.search(t)), 30, "a part of the statistics")
        assert live.finish(60) == 0, live.text
    finally:
        live.close()
    text = live.text

    summary = "plan: 16 records to send in 2 operations (acme: 4 courses, 12 statistics)"
    assert summary in text
    for label in (
        "reading 'catalog' (acme courses)",
        "reading 'progress' (acme statistics)",
        "comparing with the ledger",
        "acme: importing courses",
        "acme: sending statistics",
        "operations finished",
    ):
        assert label in text, label
    # The summary is printed before the first phase that sends anything appears.
    assert text.index(summary) < text.index("acme: importing courses")
    assert "4/4 rows" in text and "12/12 rows" in text  # each source read, with its rate
    assert re.search(r"12/12 rows +[\d,]+ rows/s", text)
    assert "0/4 courses" in text and "4/4 courses" in text
    assert "12/12 statistics" in text
    assert re.search(r"ETA \d:\d\d:\d\d", text)  # the time left, while statistics are sent
    assert "2/2 operations" in text
    assert "0/?" not in text
    assert lasting(live) == "acme: 2 operation(s) | synced 16 | rejected 0 | invalid 0\n"

    second = apply_on_terminal(config)
    try:
        assert second.finish(60) == 0, second.text
    finally:
        second.close()
    assert lasting(second) == IN_STEP + "\n"  # one line, and the display is gone
    assert "synced 0" not in second.text and "0/?" not in second.text and "plan:" not in second.text


def test_waits_show_on_the_terminal(tmp_path: Path, start_sim: StartSim) -> None:
    sim = start_sim(op_seconds=0.6)
    # Statistics in batches of 2: 6 operations for 3 slots, so the next batch waits for a slot.
    config = write_project(tmp_path, sim.base_url, batch_size={"courses": 10_000, "stats": 2})
    # One poll of an operation answered 503 with Retry-After: 1.
    sim.add_faults([{"method": "GET", "path_regex": f"^{OPERATION}$", "status": 503, "retry_after": 1}])
    live = apply_on_terminal(config)
    try:
        live.expect(lambda t: "retrying in" in t, 30, "the retry")
        live.expect(lambda t: "waiting for a slot: 3 operations unfinished" in t, 30, "the wait for a slot")
        assert live.finish(60) == 0, live.text
    finally:
        live.close()
    text = live.text
    polled = re.escape(sim.base_url.removeprefix("http://")) + OPERATION
    assert re.search(rf"retrying in [\d.]+ s after 503 \(GET {polled}, attempt 2\)", text)
    # The retry also stays printed above the display, as a warning naming the host.
    assert re.search(rf"warning: GET {polled}: 503 .*; retrying in", text)
    assert "plan: 16 records to send in 7 operations (acme: 4 courses, 12 statistics)" in text
    assert "7/7 operations" in text
    assert lasting(live).startswith("acme: 7 operation(s) | synced 16 | rejected 0 | invalid 0\n")
