"""The reliability suite's world: a config, its sources, the simulator and a model of both.

A ``World`` owns a config (SQLite ledger, CSV sources) pointed at a simulator running in the
test process (``sim_thread``), so the simulator outlives any ``syncer`` subprocess a test kills.
It keeps a model of what the platform must hold once everything is synced: the live and
archived courses, and per (course, learner) the attempts that applying every synced version of
each statistic exactly once produces (computed with the simulator's own attempt rules). Any
duplicate submission of a statistic shows as an extra attempt (``force_new: true``, or a
completed attempt with ``force_new: false``), any lost record as a missing or stale one.

Subprocesses are waited on with deadlines; conditions are polled, never slept on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.models import RecordKind, RecordStatus
from syncer.plan import build_plan
from syncer.simulator import SimulatorSettings, SimulatorThread
from syncer.simulator import rules as sim_rules
from tests.project import COURSE_HEADER, STAT_HEADER, config_text, courses_block, stats_block, write_csv

ROOT = Path(__file__).resolve().parents[3]
TALLY: Counter[str] = Counter()
"""What the suite did (kills, faults, checks), printed when SYNCER_RELIABILITY_REPORT is set."""
INTEGRATION_ID = "a1" * 12
DEADLINE = 60.0
POLL = "0.02"  # seconds between polls of an operation in the subprocesses
BASE_TIME = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """The API's UTC timestamp for a model time."""
    return sim_rules.format_time(moment)


@dataclass
class Stat:
    """One learner's statistic as the source holds it (key: course, mail, started)."""

    course: str
    mail: str
    started: datetime
    pct: int
    minutes: int

    @property
    def finished(self) -> datetime:
        """Last activity: ``minutes`` after the start."""
        return self.started + timedelta(minutes=self.minutes)

    @property
    def key(self) -> tuple[str, str, str]:
        """The record key: course, learner, first activity."""
        return (self.course, self.mail, iso(self.started))

    def version(self) -> tuple[Any, ...]:
        """What the API sees of this statistic."""
        return (self.pct, self.minutes)

    def item(self, force_new: bool) -> dict[str, Any]:
        """The API item that syncing this version sends."""
        return {
            "firstActivityAt": iso(self.started),
            "lastActivityAt": iso(self.finished),
            "progress": self.pct,
            "timeSpent": self.minutes * 60 * 1000,
            "forceNew": force_new,
        }


@dataclass
class World:
    """A config, its sources, and the model of the platform once everything is synced."""

    root: Path
    sim: SimulatorThread
    force_new: bool = False
    # The suite proves exactly-once delivery of every version of every row, so it sends the
    # changes the attempt prediction finds unsafe too (a completed attempt edited, forceNew on an
    # edited row): their duplicates are the platform's documented behaviour, modelled below, and
    # any extra one is a resend. Holding them is tested in tests/e2e/attempts/.
    on_unsafe_change: str = "send"
    integration_id: str = INTEGRATION_ID
    courses: dict[str, str] = field(default_factory=dict)
    stats: dict[tuple[str, str, str], Stat] = field(default_factory=dict)
    stat_batch: int = 4
    extra_api: dict[str, Any] = field(default_factory=dict)  # more api settings
    # The model: live courses (name), archived course ids, attempts per (course, mail).
    live: dict[str, str] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)
    attempts: dict[tuple[str, str], tuple[sim_rules.Attempt, ...]] = field(default_factory=dict)
    sent: dict[tuple[str, str, str], tuple[Any, ...]] = field(default_factory=dict)
    versions_sent: int = 0  # statistic versions the platform must have received, each once
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Course ids carry the world's name on the platform: two worlds never send one batch.

        (The operations list does not name an operation's integration, so identical batches of
        two ledgers on one platform are indistinguishable: docs/reliability.md, limits.)
        """
        return f"{self.root.name}-"

    @property
    def config_path(self) -> Path:
        """The config file."""
        return self.root / "syncer.yaml"

    @property
    def ledger_url(self) -> str:
        """The SQLite ledger beside the config."""
        return f"sqlite:///{self.root / 'ledger.db'}"

    # -- sources ---------------------------------------------------------------------------

    def seed(self, courses: int = 3, learners: int = 4) -> None:
        """A catalog and one statistic per (course, learner); every third one completed."""
        for c in range(courses):
            self.courses[f"C{c}"] = f"Course {c}"
        n = 0
        for c in range(courses):
            for u in range(learners):
                started = BASE_TIME + timedelta(days=c, hours=u)
                stat = Stat(f"C{c}", f"u{u}@lms.example", started, 100 if n % 3 == 0 else 40 + n, 5 + n)
                self.stats[stat.key] = stat
                n += 1
        self.write()

    def write(self) -> None:
        """Write the config and both CSV sources."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_csv(
            self.root / "courses.csv",
            COURSE_HEADER,
            ((self.prefix + ext, name) for ext, name in sorted(self.courses.items())),
        )
        write_csv(
            self.root / "stats.csv",
            STAT_HEADER,
            (
                [self.prefix + st.course, st.mail, st.pct, st.minutes * 60, iso(st.started), iso(st.finished)]
                for st in sorted(self.stats.values(), key=lambda s: s.key)
            ),
        )
        api = {
            "base_url": self.sim.base_url,
            "client_id": "demo-client",
            "client_secret": "${SYNCER_RELIABILITY_SECRET}",
            "limits": {"concurrent_operations": 3, "requests_per_second": 10},
            "batch_size": {"courses": 3, "stats": self.stat_batch, "archives": 2},
            "timeout_seconds": 5,
            "retry_seconds": 20,
            **self.extra_api,
        }
        lms = {
            "id": self.integration_id,
            "courses": courses_block(archive_missing=True),
            "stats": stats_block(force_new=self.force_new, on_unsafe_change=self.on_unsafe_change),
        }
        self.config_path.write_text(config_text(api, self.ledger_url, {"lms": lms}), encoding="utf-8")

    # -- the model -------------------------------------------------------------------------

    def synced(self) -> None:
        """Advance the model: the sources as they are now were applied, each change exactly once."""
        for ext in list(self.live):
            if ext not in self.courses:
                del self.live[ext]
                self.archived.add(ext)
        for ext, name in self.courses.items():
            self.live[ext] = name
            self.archived.discard(ext)
        changed = [s for s in self.stats.values() if self.sent.get(s.key) != s.version()]
        self.versions_sent += len(changed)
        # One batch holds a pair's statistics sorted by firstActivityAt (product.md §4).
        for stat in sorted(changed, key=lambda s: (s.course, s.mail, s.started)):
            pair = (stat.course, stat.mail)
            statistic = sim_rules.build_statistic(stat.item(self.force_new))
            new_id = f"attempt-{len(self.sent)}-{len(self.attempts.get(pair, ()))}"
            self.attempts[pair], _ = sim_rules.apply_statistic(self.attempts.get(pair, ()), statistic, new_id)
            self.sent[stat.key] = stat.version()

    # -- checks ----------------------------------------------------------------------------

    def check_platform(self) -> None:
        """The simulator holds exactly the modelled courses and attempts."""
        state = self.sim.snapshot()
        mine = self.integration_id
        courses = {c["externalId"]: c for c in state["courses"] if c["integrationId"] == mine}
        courses = {ext.removeprefix(self.prefix): c for ext, c in courses.items()}
        live = {ext: c["course"]["name"] for ext, c in courses.items() if c["status"] == "live"}
        archived = {ext for ext, c in courses.items() if c["status"] == "archived"}
        assert live == self.live
        assert archived == self.archived
        course_ids = {c["courseId"]: ext for ext, c in courses.items()}
        found: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for entry in state["attempts"]:
            if entry["integrationId"] != mine:
                continue
            pair = (course_ids[entry["courseId"]], entry["user"].removeprefix("mail:"))
            found[pair] = [_attempt_view(a) for a in entry["attempts"]]
        expected = {
            pair: [_attempt_view(a.as_json()) for a in attempts] for pair, attempts in self.attempts.items()
        }
        extra = {pair: found[pair] for pair in found if len(found[pair]) > len(expected.get(pair, []))}
        assert not extra, f"duplicate attempts: {extra}"
        assert found == expected
        TALLY["platform checks"] += 1
        TALLY["attempts checked"] += sum(len(a) for a in expected.values())

    def check_ledger(self) -> None:
        """No operation unfinished, every record synced, and nothing left to plan."""
        config = load_config(self.config_path)
        ledger = Ledger.open(self.ledger_url)
        try:
            assert ledger.unfinished_operations() == []
            counts = {(c.kind, c.status): c.count for c in ledger.record_counts()}
            assert counts.get((RecordKind.STAT, RecordStatus.SYNCED), 0) == len(self.sent)
            assert {status for (_, status) in counts} <= {RecordStatus.SYNCED}
            with build_plan(config, ledger) as plan:
                assert not plan.has_changes, "the ledger disagrees with the sources"
        finally:
            ledger.close()

    def inject(self, rules: list[dict[str, Any]]) -> None:
        """Add fault rules to the simulator (and count the faulty answers they ask for)."""
        TALLY["faults injected"] += sum(int(rule.get("count", 1)) for rule in rules)
        self.sim.add_faults(list(rules))

    def operations(self) -> list[dict[str, Any]]:
        """The platform's operations on this world's integration."""
        return [op for op in self.sim.snapshot()["operations"] if op["integrationId"] == self.integration_id]

    def items_sent(self, op_type: str = "importExternalStatistics") -> int:
        """Items submitted (and accepted) in operations of ``op_type`` on this integration."""
        return sum(op["items"] for op in self.operations() if op["type"] == op_type)

    # -- running syncer --------------------------------------------------------------------

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``python -m syncer apply CONFIG ARGS`` as its own process."""
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncer",
                "--log-format",
                "json",
                "apply",
                str(self.config_path),
                "--poll-seconds",
                POLL,
                *args,
            ],
            cwd=ROOT,
            env=_child_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def apply(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """Run one apply to its end."""
        return finish(self.start(*args, env=env))

    def syncer(self, *args: str) -> Result:
        """Any other ``syncer`` command, to its end."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", *args],
            cwd=ROOT,
            env=_child_env(None),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return finish(proc)


def _attempt_view(attempt: dict[str, Any]) -> tuple[Any, ...]:
    return (
        attempt["firstActivityAt"],
        attempt["lastActivityAt"],
        attempt["completedAt"],
        float(attempt["progress"]),
        float(attempt["timeSpent"]),
    )


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCER_TEST_", "L360_"))}
    env.update({"SYNCER_RELIABILITY_SECRET": "demo-secret", "PYTHONPATH": str(ROOT)})
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Result:
    """How a syncer process ended."""

    code: int
    out: str
    err: str


def finish_all(*procs: subprocess.Popen[str]) -> list[Result]:
    """Wait for processes running side by side."""
    return [finish(proc) for proc in procs]


def finish(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> Result:
    """Wait for a process (with a deadline) and collect its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"syncer did not finish in {timeout} s:\n{out}\n{err}") from None
    if proc.returncode == -9:
        TALLY["runs killed (SIGKILL)"] += 1
    return Result(proc.returncode, out, err)


def wait_until(what: str, condition: Callable[[], bool], *procs: subprocess.Popen[str]) -> None:
    """Poll ``condition`` until it holds; fail at the deadline or if a watched process ends first."""
    deadline = time.monotonic() + DEADLINE
    pause = 0.005
    while not condition():
        for proc in procs:
            if proc.poll() is not None:
                result = finish(proc)
                raise AssertionError(f"{what}: the process ended first ({result.code}):\n{result.err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pause)  # a polling interval, not a synchronisation: the condition decides


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """Operations long enough to be caught in flight; no rate limit unless a test injects one."""
    return SimulatorSettings(op_seconds=0.2, write_rate=None, read_rate=None)


@pytest.fixture
def platform(sim_thread: SimulatorThread) -> SimulatorThread:
    """The simulator shared by a test's worlds."""
    return sim_thread


@pytest.fixture
def make_world(
    tmp_path: Path, platform: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., World]]:
    """Build worlds in their own folders, sharing the platform."""
    monkeypatch.setenv("SYNCER_RELIABILITY_SECRET", "demo-secret")  # for in-process checks
    made: list[World] = []

    def make(name: str = "world", **kwargs: Any) -> World:
        # Each world has an integration of its own: worlds of one test run side by side.
        api_id = f"{0xA1 * 2**88 + len(made):024x}"
        platform.state.add_integration(_id=api_id, externalPlatform=f"LMS {name}")
        world = World(tmp_path / name, platform, integration_id=api_id, **kwargs)
        made.append(world)
        return world

    yield make
    for world in made:  # a failed test may leave a run behind: never leak it
        for proc in world.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """With SYNCER_RELIABILITY_REPORT=1, print what the suite did (docs/reliability.md)."""
    if os.environ.get("SYNCER_RELIABILITY_REPORT") and TALLY:
        terminalreporter.section("reliability figures")
        for name, count in sorted(TALLY.items()):
            terminalreporter.write_line(f"{name}: {count}")
