"""The test project the end-to-end tests and the benchmarks share: a config, its CSV sources, a simulator.

A project is a folder with a config (``syncer.yaml``), its sources (``courses.csv``,
``stats.csv``, or SQL queries) and a ledger, pointed at a simulator. This module holds what
every such project has in common; the fixture classes (``Project`` in tests/e2e/apply, ``Lab``
in tests/e2e/attempts, ``World`` in tests/e2e/reliability), the other end-to-end tests and the
benchmarks (which put the repository root on ``sys.path``) build on it:

- the config: ``config_text(api, ledger, integrations)`` renders it; an integration is its
  identity (``ACME``, or an ``id``) with a ``courses_block()`` and a ``stats_block()``, which hold
  the standard field rules (``COURSE_FIELDS`` or ``TAGGED_COURSE_FIELDS``, ``STAT_FIELDS``) and the
  options each test sets (archive_missing, force_new, on_unsafe_change, tolerate_invalid, ...);
  ``stats_only_config()`` is the plan benchmarks' config;
- the CSV sources: ``COURSE_HEADER``, ``TAGGED_COURSE_HEADER``, ``STAT_HEADER``, ``write_csv()``
  and the common rows, ``course_rows()`` and ``stat_rows()``;
- the simulator: ``simulators()`` starts simulator threads and stops them all at the end,
  ``simulator_command()`` is the command line of one in its own process, which prints its URL
  in a ``LISTENING`` line;
- the CLI in-process: ``run_cli()``, and ``reset_syncer_logger()`` after it.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from syncer.cli import cli
from syncer.simulator import SimClient, SimulatorSettings, SimulatorThread

GROUP = "64b7f0c2a1e4d5f6a7b8c9d0"
AUTHOR = "64b7f0c2a1e4d5f6a7b8c9d1"
ACME = {"platform": "Acme Academy", "group": GROUP, "author": AUTHOR}
"""A declared integration's identity: found on the platform by platform and group, or created."""

CSV_SOURCES = {"catalog": {"csv": "courses.csv"}, "progress": {"csv": "stats.csv"}}
"""The two CSV sources beside the config: what ``courses_block()`` and ``stats_block()`` read."""

COURSE_FIELDS = {
    "externalId": "course_id",
    "name": "title",
    "launchUrl": {"template": "https://acme.example/launch/{course_id}"},
    "defaultLang": {"value": "en"},
    "sources": {"value": [{"name": "Acme"}]},
    "subjects": {"value": []},
}
TAGGED_COURSE_FIELDS = {**COURSE_FIELDS, "subjects": {"column": "tags", "split": "|"}}
"""For the courses of ``course_rows()``: their subjects are the tags column, split at "|"."""
STAT_FIELDS = {
    "course": {"externalId": "course_id"},
    "user": {"mail": "email"},
    "progress": {"column": "pct", "type": "number"},
    "timeSpent": {"column": "seconds", "unit": "s"},
    "firstActivityAt": "started",
    "lastActivityAt": "finished",
}

COURSE_HEADER = ["course_id", "title"]
TAGGED_COURSE_HEADER = [*COURSE_HEADER, "tags"]
STAT_HEADER = ["course_id", "email", "pct", "seconds", "started", "finished"]


# -- the config ------------------------------------------------------------------------------


def courses_block(
    source: str = "catalog", fields: Mapping[str, Any] = COURSE_FIELDS, **options: Any
) -> dict[str, Any]:
    """An integration's courses, read from ``source``, with options such as ``archive_missing``."""
    return {"source": source, **options, "fields": fields}


def stats_block(
    source: str = "progress", fields: Mapping[str, Any] = STAT_FIELDS, **options: Any
) -> dict[str, Any]:
    """An integration's statistics, read from ``source``, with options such as ``force_new``,
    ``on_unsafe_change`` or ``tolerate_invalid``."""
    return {"source": source, **options, "fields": fields}


class _Dumper(yaml.SafeDumper):
    """Writes a value shared by two places (``STAT_FIELDS`` of two integrations) out twice,
    without YAML anchors: the file reads as a person would write it."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def config_text(
    api: Mapping[str, Any],
    ledger: str,
    integrations: Mapping[str, Mapping[str, Any]],
    sources: Mapping[str, Any] = CSV_SOURCES,
) -> str:
    """The YAML of a config: ``api`` (base_url, client_id, client_secret, and settings such as
    retry_seconds, batch_size or limits), the ledger URL, the sources and the integrations."""
    document = {"version": 1, "api": api, "ledger": ledger, "sources": sources, "integrations": integrations}
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=1_000)


def stats_only_config(ledger: str, progress: Mapping[str, Any]) -> str:
    """A config for the plan benchmarks: one integration (by ``id``) with statistics only, read from
    the ``progress`` source (a CSV file or an SQL query); its platform is never called."""
    api = {"base_url": "http://127.0.0.1:8360", "client_id": "bench", "client_secret": "bench"}
    integrations = {"acme": {"id": "507f1f77bcf86cd799439011", "stats": stats_block()}}
    return config_text(api, ledger, integrations, {"progress": progress})


# -- the CSV sources -------------------------------------------------------------------------


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV source: the header, then the rows (an iterable: large sources stream)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def course_id(n: int) -> str:
    """The id of the ``n``-th course of ``course_rows()``: C001, C002, ..."""
    return f"C{n:03d}"


def course_rows(count: int) -> list[list[str]]:
    """``count`` courses C001, C002, ... with tags (columns: ``TAGGED_COURSE_HEADER``)."""
    return [[course_id(n), f"Course {n}", "safety|compliance"] for n in range(1, count + 1)]


def stat_rows(courses: int, learners: int) -> list[list[str]]:
    """One statistic per (course, learner) of the first ``courses`` courses: ``courses * learners``
    rows (columns: ``STAT_HEADER``)."""
    return [
        [
            course_id(c),
            f"learner{u:02d}@acme.example",
            "50",
            str(60 + u),
            f"2025-03-{u:02d}T08:00:00Z",
            f"2025-03-{u:02d}T09:00:00Z",
        ]
        for c in range(1, courses + 1)
        for u in range(1, learners + 1)
    ]


# -- the simulator ---------------------------------------------------------------------------


def client_settings(client_id: str, client_secret: str) -> SimulatorSettings:
    """The platform's real limits (write rate 10/s, 3 unfinished operations), operations that end
    in 20 ms, and one credential."""
    return SimulatorSettings(
        op_seconds=0.02, clients=(SimClient(client_id=client_id, client_secret=client_secret),)
    )


@contextmanager
def simulators(settings: SimulatorSettings) -> Iterator[Callable[..., SimulatorThread]]:
    """A function that starts a simulator thread with some of ``settings`` changed
    (``start(op_seconds=1)``); every simulator it started stops when the block ends."""
    started: list[SimulatorThread] = []

    def start(**overrides: Any) -> SimulatorThread:
        sim = SimulatorThread(replace(settings, **overrides))
        sim.start()
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in started:
            sim.stop()


LISTENING = re.compile(r"listening on (http://\S+)")
"""What a simulator process prints once it listens: its base URL is the group."""


def simulator_command(op_seconds: float, *options: str) -> list[str]:
    """The command line of ``syncer simulator`` in its own process, on a free port (it says
    where in a ``LISTENING`` line)."""
    return [
        sys.executable,
        "-m",
        "syncer",
        "simulator",
        "--port",
        "0",
        "--op-seconds",
        str(op_seconds),
        *options,
    ]


# -- the CLI in-process ----------------------------------------------------------------------


def run_cli(outputs: list[str], *args: str) -> Result:
    """Run ``syncer ARGS`` in-process; append its stdout and stderr to ``outputs`` (for the
    secret checks). An exception other than the CLI's own exit is raised again."""
    result = CliRunner().invoke(cli, list(args), prog_name="syncer")
    outputs.extend([result.stdout, result.stderr])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def reset_syncer_logger() -> None:
    """The CLI points the ``syncer`` logger at the runner's stderr: detach it (after a test)."""
    logger = logging.getLogger("syncer")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
