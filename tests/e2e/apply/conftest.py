"""End-to-end fixtures: a small project (config + CSV data + SQLite ledger) against a simulator.

``make_sim(**overrides)`` starts a ``SimulatorThread`` with the platform's real limits (write
rate 10/s, 3 unfinished operations) and fast operations; ``make_project(sim)`` writes a config
whose ``base_url`` points at it. Every simulator response is checked against the official
spec by ``tests/sim_fixture.py``. The client secret is a distinctive value so that tests can
look for it in every output and in the ledger's bytes.
"""

from __future__ import annotations

import csv
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncer.cli import cli
from syncer.simulator import SimClient, SimulatorSettings, SimulatorThread

CLIENT_ID = "engine-client"
SECRET = "s3cret-engine-7f3a9c1e"
GROUP = "64b7f0c2a1e4d5f6a7b8c9d0"
AUTHOR = "64b7f0c2a1e4d5f6a7b8c9d1"
POLL = ("--poll-seconds", "0.01")
BULK_PREFIX = "/api/v2/bulk/integrations/"

COURSE_HEADER = ["course_id", "title", "tags"]
STAT_HEADER = ["course_id", "email", "pct", "seconds", "started", "finished"]

CONFIG = """\
version: 1
api:
  base_url: {base_url}
  client_id: {client_id}
  client_secret: ${{L360_CLIENT_SECRET}}
  retry_seconds: 30
  batch_size: {{courses: {course_batch}, stats: {stat_batch}}}
ledger: sqlite:///syncer.db
sources:
  catalog: {{csv: courses.csv}}
  progress: {{csv: stats.csv}}
integrations:
  acme:
{integration}
    courses:
      source: catalog
      archive_missing: true
      fields:
        externalId: course_id
        name: title
        launchUrl: {{template: "https://acme.example/launch/{{course_id}}"}}
        defaultLang: {{value: en}}
        sources: {{value: [{{name: Acme}}]}}
        subjects: {{column: tags, split: "|"}}
    stats:
      source: progress
      tolerate_invalid: {tolerate}
      fields:
        course: {{externalId: course_id}}
        user: {{mail: email}}
        progress: {{column: pct, type: number}}
        timeSpent: {{column: seconds, unit: s}}
        firstActivityAt: started
        lastActivityAt: finished
"""

DECLARED = f"""\
    platform: Acme Academy
    group: {GROUP}
    author: {AUTHOR}
    settings: {{defaultProgress: 0, defaultCompletion: false}}"""


def course_rows(count: int) -> list[list[str]]:
    """``count`` courses C001, C002, ..."""
    return [[f"C{n:03d}", f"Course {n}", "safety|compliance"] for n in range(1, count + 1)]


def stat_rows(courses: int, learners: int) -> list[list[str]]:
    """One statistic per (course, learner): ``courses * learners`` rows."""
    rows = []
    for c in range(1, courses + 1):
        for u in range(1, learners + 1):
            rows.append(
                [
                    f"C{c:03d}",
                    f"learner{u:02d}@acme.example",
                    "50",
                    str(60 + u),
                    f"2025-03-{u:02d}T08:00:00Z",
                    f"2025-03-{u:02d}T09:00:00Z",
                ]
            )
    return rows


@dataclass
class Project:
    """A config, its CSV sources and its ledger in one folder, pointed at one simulator."""

    root: Path
    base_url: str
    sim: SimulatorThread | None = None  # None: a simulator in another process
    client_id: str = CLIENT_ID
    integration: str = DECLARED
    course_batch: int = 10_000
    stat_batch: int = 10_000
    tolerate: str = "0"
    outputs: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        """The config file."""
        return self.root / "syncer.yaml"

    @property
    def ledger(self) -> Path:
        """The SQLite ledger file."""
        return self.root / "syncer.db"

    def write_config(self, **changes: Any) -> Path:
        """(Re)write the config, after applying ``changes`` to the project's settings."""
        for key, value in changes.items():
            setattr(self, key, value)
        self.config.write_text(
            CONFIG.format(
                base_url=self.base_url,
                client_id=self.client_id,
                integration=self.integration,
                course_batch=self.course_batch,
                stat_batch=self.stat_batch,
                tolerate=self.tolerate,
            )
        )
        return self.config

    def write_courses(self, rows: list[list[str]]) -> None:
        """Replace courses.csv."""
        _write_csv(self.root / "courses.csv", COURSE_HEADER, rows)

    def write_stats(self, rows: list[list[str]]) -> None:
        """Replace stats.csv."""
        _write_csv(self.root / "stats.csv", STAT_HEADER, rows)

    def cli(self, *args: str) -> Result:
        """Run ``syncer ARGS`` in-process; remember its outputs for the secret check."""
        result = CliRunner().invoke(cli, list(args), prog_name="syncer")
        self.outputs += [result.stdout, result.stderr]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def apply(self, *args: str) -> Result:
        """``syncer apply CONFIG ARGS`` with fast polling."""
        return self.cli("apply", str(self.config), *POLL, *args)

    def ledger_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query on the ledger (read-only)."""
        with sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def submissions(sim: SimulatorThread) -> list[dict[str, Any]]:
    """Journal entries of bulk submissions (PUT/POST/DELETE under /bulk/integrations/)."""
    return [
        e
        for e in sim.snapshot()["journal"]
        if e["path"].startswith(BULK_PREFIX) and e["method"] in ("PUT", "POST", "DELETE")
    ]


def operations(sim: SimulatorThread) -> list[dict[str, Any]]:
    """The simulator's operations, oldest first."""
    return list(sim.snapshot()["operations"])


def attempts_per_pair(sim: SimulatorThread) -> dict[tuple[str, str], int]:
    """Number of attempts per (courseId, user)."""
    return {(a["courseId"], a["user"]): len(a["attempts"]) for a in sim.snapshot()["attempts"]}


def live_courses(sim: SimulatorThread) -> set[str]:
    """externalIds of the simulator's live courses."""
    return {c["externalId"] for c in sim.snapshot()["courses"] if c["status"] == "live"}


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """The platform's real limits, fast operations, and our own credential."""
    return SimulatorSettings(
        op_seconds=0.02,
        clients=(SimClient(client_id=CLIENT_ID, client_secret=SECRET),),
    )


@pytest.fixture
def make_sim(sim_settings: SimulatorSettings) -> Iterator[Callable[..., SimulatorThread]]:
    """Start simulators with some settings changed; all are stopped at the end of the test."""
    started: list[SimulatorThread] = []

    def make(**overrides: Any) -> SimulatorThread:
        sim = SimulatorThread(replace(sim_settings, **overrides))
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Project]:
    """A project folder (config, 4 courses, 4x3 statistics) for a simulator (or its URL)."""
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    count = 0

    def make(sim: SimulatorThread | str, **settings: Any) -> Project:
        nonlocal count
        count += 1
        root = tmp_path / f"project{count}"
        root.mkdir()
        project = Project(root, sim) if isinstance(sim, str) else Project(root, sim.base_url, sim)
        project.write_config(**settings)
        project.write_courses(course_rows(4))
        project.write_stats(stat_rows(4, 3))
        return project

    return make


@pytest.fixture
def project(make_sim: Callable[..., SimulatorThread], make_project: Callable[..., Project]) -> Project:
    """A project against a fresh simulator with the real limits."""
    return make_project(make_sim())


@pytest.fixture(autouse=True)
def _reset_syncer_logger() -> Iterator[None]:
    """The CLI points the ``syncer`` logger at the runner's stderr: detach it after each test."""
    yield
    logger = logging.getLogger("syncer")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
