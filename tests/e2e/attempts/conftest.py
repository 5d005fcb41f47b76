"""A lab for the attempt prediction: a config, a statistics CSV and a simulator, row by row.

``Lab.apply()`` runs ``syncer apply`` in-process against a ``SimulatorThread``; ``Lab.plan()``
gives the predicted effect of each statistic the next apply would send or hold; ``Lab.attempts()``
reads what the simulator holds per (course, learner). Rows are ``Row`` objects: one attempt of a
learner at a course, with times as datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.models import Effect, UnsafeStat, stat_key
from syncer.plan import build_plan
from syncer.simulator import SimulatorSettings, SimulatorThread
from syncer.simulator.rules import format_time
from tests.project import (
    ACME,
    COURSE_HEADER,
    STAT_HEADER,
    client_settings,
    config_text,
    courses_block,
    reset_syncer_logger,
    run_cli,
    simulators,
    stats_block,
    write_csv,
)

CLIENT_ID = "attempts-client"
SECRET = "s3cret-attempts-41b9"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
COURSES = ("ACME-1", "ACME-2")
PER_ROW = {"column": "retake", "type": "boolean"}
"""``force_new`` as a field rule: each row's retake column says whether it opens a new attempt."""
ForceNew = bool | dict[str, str]


@dataclass(frozen=True)
class Row:
    """One attempt of a learner at a course, as the source holds it."""

    course: str
    mail: str
    start: datetime
    end: datetime
    pct: int = 40
    seconds: int = 600
    retake: bool = False

    @property
    def first(self) -> str:
        """firstActivityAt as syncer sends it."""
        return format_time(self.start)

    @property
    def key(self) -> str:
        """The ledger key of this row's statistic."""
        return stat_key(
            {"type": "externalId", "value": self.course}, {"type": "mail", "value": self.mail}, self.first
        )

    @property
    def pair(self) -> tuple[str, str]:
        """(course, learner)."""
        return (self.course, self.mail)

    def values(self) -> tuple[str, str, float, float]:
        """What the platform's attempt holds once this version is applied."""
        return (self.first, format_time(self.end), float(self.pct), float(self.seconds * 1000))

    def csv(self) -> list[str]:
        """The CSV line."""
        return [
            self.course,
            self.mail,
            str(self.pct),
            str(self.seconds),
            self.first,
            format_time(self.end),
            "true" if self.retake else "false",
        ]


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """T0 plus an offset."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


@dataclass
class Lab:
    """A project folder with a config, its two CSV sources and a ledger, against one simulator."""

    root: Path
    sim: SimulatorThread
    force_new: ForceNew = False
    policy: str = "hold"
    ledger: str = "sqlite:///syncer.db"
    outputs: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        """The config file."""
        return self.root / "syncer.yaml"

    def write(self, rows: list[Row], **settings: Any) -> None:
        """Write the config (with ``settings`` changed) and both sources."""
        for name, value in settings.items():
            setattr(self, name, value)
        self.root.mkdir(parents=True, exist_ok=True)
        api = {
            "base_url": self.sim.base_url,
            "client_id": CLIENT_ID,
            "client_secret": "${L360_CLIENT_SECRET}",
            "retry_seconds": 30,
        }
        acme = {
            **ACME,
            "courses": courses_block(),
            "stats": stats_block(force_new=self.force_new, on_unsafe_change=self.policy),
        }
        self.config.write_text(config_text(api, self.ledger, {"acme": acme}), encoding="utf-8")
        write_csv(self.root / "courses.csv", COURSE_HEADER, ([c, f"Course {c}"] for c in COURSES))
        write_csv(self.root / "stats.csv", [*STAT_HEADER, "retake"], (row.csv() for row in rows))

    def cli(self, *args: str) -> Result:
        """``syncer ARGS`` in-process."""
        return run_cli(self.outputs, *args)

    def apply(self) -> Result:
        """``syncer apply`` with fast polling."""
        return self.cli("apply", str(self.config), "--poll-seconds", "0.01")

    def plan(self) -> dict[str, Effect]:
        """The predicted effect of every statistic the next apply sends or holds, by key."""
        config = load_config(self.config)
        ledger = Ledger.open(config.ledger_url.reveal())
        try:
            with build_plan(config, ledger) as plan:
                return {key: effect for _integration, key, effect in plan.effects()}
        finally:
            ledger.close()

    def held(self) -> dict[str, UnsafeStat]:
        """The statistics the last plan held, by key."""
        ledger = Ledger.open(load_config(self.config).ledger_url.reveal())
        try:
            return {h.key: h for h in ledger.held_records()}
        finally:
            ledger.close()

    def attempts(self) -> dict[tuple[str, str], list[tuple[str, str, float, float]]]:
        """Per (course externalId, learner): the simulator's attempts, oldest first."""
        state = self.sim.snapshot()
        external = {c["courseId"]: c["externalId"] for c in state["courses"]}
        return {
            (external[entry["courseId"]], entry["user"].removeprefix("mail:")): [
                (a["firstActivityAt"], a["lastActivityAt"], a["progress"], a["timeSpent"])
                for a in entry["attempts"]
            ]
            for entry in state["attempts"]
        }


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """Fast operations, the platform's limits, our credential."""
    return client_settings(CLIENT_ID, SECRET)


@pytest.fixture
def make_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_settings: SimulatorSettings
) -> Iterator[Callable[..., Lab]]:
    """Labs, each with its own folder and simulator; all simulators stop at the end."""
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    made: list[Lab] = []
    with simulators(sim_settings) as start:

        def make(**overrides: Any) -> Lab:
            made.append(Lab(tmp_path / f"lab{len(made) + 1}", start(**overrides)))
            return made[-1]

        yield make


@pytest.fixture(autouse=True)
def _reset_syncer_logger() -> Iterator[None]:
    """The CLI points the ``syncer`` logger at the runner's stderr: detach it after each test."""
    yield
    reset_syncer_logger()
