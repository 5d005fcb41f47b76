"""A lab for the attempt prediction: a config, a statistics CSV and a simulator, row by row.

``Lab.apply()`` runs ``syncer apply`` in-process against a ``SimulatorThread``; ``Lab.plan()``
gives the predicted effect of each statistic the next apply would send or hold; ``Lab.attempts()``
reads what the simulator holds per (course, learner). Rows are ``Row`` objects: one attempt of a
learner at a course, with times as datetimes.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncer.cli import cli
from syncer.config import load_config
from syncer.ledger import Ledger
from syncer.models import Effect, UnsafeStat, stat_key
from syncer.plan import build_plan
from syncer.simulator import SimClient, SimulatorSettings, SimulatorThread
from syncer.simulator.rules import format_time

CLIENT_ID = "attempts-client"
SECRET = "s3cret-attempts-41b9"
GROUP = "64b7f0c2a1e4d5f6a7b8c9d0"
AUTHOR = "64b7f0c2a1e4d5f6a7b8c9d1"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
COURSES = ("ACME-1", "ACME-2")

CONFIG = """\
version: 1
api:
  base_url: {base_url}
  client_id: {client_id}
  client_secret: ${{L360_CLIENT_SECRET}}
  retry_seconds: 30
ledger: "{ledger}"
sources:
  catalog: {{csv: courses.csv}}
  progress: {{csv: stats.csv}}
integrations:
  acme:
    platform: Acme Academy
    group: {group}
    author: {author}
    courses:
      source: catalog
      fields:
        externalId: course_id
        name: title
        launchUrl: {{template: "https://acme.example/launch/{{course_id}}"}}
        defaultLang: {{value: en}}
        sources: {{value: [{{name: Acme}}]}}
        subjects: {{value: []}}
    stats:
      source: progress
      force_new: {force_new}
      on_unsafe_change: {policy}
      fields:
        course: {{externalId: course_id}}
        user: {{mail: email}}
        progress: {{column: pct, type: number}}
        timeSpent: {{column: seconds, unit: s}}
        firstActivityAt: started
        lastActivityAt: finished
"""
PER_ROW = "{column: retake, type: boolean}"


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
    force_new: str = "false"
    policy: str = "hold"
    ledger: str = "sqlite:///syncer.db"
    outputs: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        """The config file."""
        return self.root / "syncer.yaml"

    def write(self, rows: list[Row], **settings: str) -> None:
        """Write the config (with ``settings`` changed) and both sources."""
        for name, value in settings.items():
            setattr(self, name, value)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            CONFIG.format(
                base_url=self.sim.base_url,
                client_id=CLIENT_ID,
                group=GROUP,
                author=AUTHOR,
                force_new=self.force_new,
                policy=self.policy,
                ledger=self.ledger,
            ),
            encoding="utf-8",
        )
        with open(self.root / "courses.csv", "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["course_id", "title"])
            writer.writerows([c, f"Course {c}"] for c in COURSES)
        with open(self.root / "stats.csv", "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["course_id", "email", "pct", "seconds", "started", "finished", "retake"])
            writer.writerows(row.csv() for row in rows)

    def cli(self, *args: str) -> Result:
        """``syncer ARGS`` in-process."""
        result = CliRunner().invoke(cli, list(args), prog_name="syncer")
        self.outputs += [result.stdout, result.stderr]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

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
    return SimulatorSettings(op_seconds=0.02, clients=(SimClient(client_id=CLIENT_ID, client_secret=SECRET),))


@pytest.fixture
def make_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_settings: SimulatorSettings
) -> Iterator[Callable[..., Lab]]:
    """Labs, each with its own folder and simulator; all simulators stop at the end."""
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    started: list[SimulatorThread] = []

    def make(**overrides: Any) -> Lab:
        sim = SimulatorThread(replace(sim_settings, **overrides))
        sim.start()
        started.append(sim)
        return Lab(tmp_path / f"lab{len(started)}", sim)

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture(autouse=True)
def _reset_syncer_logger() -> Iterator[None]:
    """The CLI points the ``syncer`` logger at the runner's stderr: detach it after each test."""
    yield
    logger = logging.getLogger("syncer")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
