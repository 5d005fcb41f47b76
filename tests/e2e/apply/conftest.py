"""End-to-end fixtures: a small project (config + CSV data + SQLite ledger) against a simulator.

``make_sim(**overrides)`` starts a ``SimulatorThread`` with the platform's real limits (write
rate 10/s, 3 unfinished operations) and fast operations; ``make_project(sim)`` writes a config
whose ``base_url`` points at it. Every simulator response is checked against the official
spec by ``tests/sim_fixture.py``. The client secret is a distinctive value so that tests can
look for it in every output and in the ledger's bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from syncer.simulator import SimulatorSettings, SimulatorThread
from tests.project import (
    ACME,
    AUTHOR,
    GROUP,
    STAT_HEADER,
    TAGGED_COURSE_FIELDS,
    TAGGED_COURSE_HEADER,
    client_settings,
    config_text,
    course_rows,
    courses_block,
    reset_syncer_logger,
    run_cli,
    simulators,
    stat_rows,
    stats_block,
    write_csv,
)

__all__ = ["AUTHOR", "GROUP", "course_rows", "stat_rows"]  # used by the tests from here

CLIENT_ID = "engine-client"
SECRET = "s3cret-engine-7f3a9c1e"
POLL = ("--poll-seconds", "0.01")
BULK_PREFIX = "/api/v2/bulk/integrations/"

DECLARED = {**ACME, "settings": {"defaultProgress": 0, "defaultCompletion": False}}
"""The integration's identity and settings: declared, so that apply finds or creates it."""


@dataclass
class Project:
    """A config, its CSV sources and its ledger in one folder, pointed at one simulator."""

    root: Path
    base_url: str
    sim: SimulatorThread | None = None  # None: a simulator in another process
    client_id: str = CLIENT_ID
    integration: dict[str, Any] = field(default_factory=lambda: dict(DECLARED))
    course_batch: int = 10_000
    stat_batch: int = 10_000
    tolerate: int | str = 0
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
        api = {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": "${L360_CLIENT_SECRET}",
            "retry_seconds": 30,
            "batch_size": {"courses": self.course_batch, "stats": self.stat_batch},
        }
        acme = {
            **self.integration,
            "courses": courses_block(archive_missing=True, fields=TAGGED_COURSE_FIELDS),
            "stats": stats_block(tolerate_invalid=self.tolerate),
        }
        self.config.write_text(config_text(api, "sqlite:///syncer.db", {"acme": acme}))
        return self.config

    def write_courses(self, rows: list[list[str]]) -> None:
        """Replace courses.csv."""
        write_csv(self.root / "courses.csv", TAGGED_COURSE_HEADER, rows)

    def write_stats(self, rows: list[list[str]]) -> None:
        """Replace stats.csv."""
        write_csv(self.root / "stats.csv", STAT_HEADER, rows)

    def cli(self, *args: str) -> Result:
        """Run ``syncer ARGS`` in-process; remember its outputs for the secret check."""
        return run_cli(self.outputs, *args)

    def apply(self, *args: str) -> Result:
        """``syncer apply CONFIG ARGS`` with fast polling."""
        return self.cli("apply", str(self.config), *POLL, *args)

    def ledger_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query on the ledger (read-only)."""
        with closing(sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)) as conn:
            return conn.execute(sql).fetchall()


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
    return client_settings(CLIENT_ID, SECRET)


@pytest.fixture
def make_sim(sim_settings: SimulatorSettings) -> Iterator[Callable[..., SimulatorThread]]:
    """Start simulators with some settings changed; all are stopped at the end of the test."""
    with simulators(sim_settings) as start:
        yield start


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
    reset_syncer_logger()
