"""A fleet: several ``syncer apply --integration X`` runners of one platform, each its own process.

Shared by tests/e2e/apply/test_fleet.py (SQLite ledgers in one folder), tests/postgres/
test_pg_fleet.py (one PostgreSQL ledger) and bench/fleet_bench.py. Each runner has a config of
its own in one folder (``X.yaml``: every integration, the runner's ledger), and its integration
has its own CSV sources there; ``--integration X`` picks it. The simulator's state tells what the
platform saw: refused requests (the journal), operations unfinished at once (``createdAt`` ..
``endedAt``), attempts per (course, learner).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.project import (
    ACME,
    STAT_HEADER,
    TAGGED_COURSE_FIELDS,
    TAGGED_COURSE_HEADER,
    config_text,
    course_id,
    course_rows,
    courses_block,
    stats_block,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "fleet-client"
SECRET = "fleet-secret-4d1c9e"


def integration_id(n: int) -> str:
    """The platform id of the fleet's ``n``-th integration (24 hex digits)."""
    return f"{0xF1EE7000 + n:024x}"


def names(count: int) -> list[str]:
    """The fleet's integrations: ``lms1``, ``lms2``, ..."""
    return [f"lms{n}" for n in range(1, count + 1)]


def write_fleet(
    folder: Path,
    base_url: str,
    ledger_of: Callable[[str], str],
    integrations: Sequence[str],
    *,
    courses: int,
    learners: int,
    course_batch: int,
    stat_batch: int,
    limits: Mapping[str, Any] | None = None,
    client: tuple[str, str] = (CLIENT_ID, "${L360_CLIENT_SECRET}"),
    declared: bool = False,
) -> dict[str, Path]:
    """Sources and one config per runner in ``folder``; returns each integration's config.

    The integrations have ids (``add_integrations`` declares them on a simulator), or with
    ``declared`` an identity that apply finds or creates (a simulator in another process)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for n, name in enumerate(integrations, start=1):
        write_csv(folder / f"{name}-courses.csv", TAGGED_COURSE_HEADER, course_rows(courses))
        write_csv(folder / f"{name}-stats.csv", STAT_HEADER, _stat_rows(courses, learners))
        sources[f"{name}_courses"] = {"csv": f"{name}-courses.csv"}
        sources[f"{name}_stats"] = {"csv": f"{name}-stats.csv"}
        identity = (
            {"platform": f"LMS {name}", "group": ACME["group"], "author": ACME["author"]}
            if declared
            else {"id": integration_id(n)}
        )
        blocks[name] = {
            **identity,
            "courses": courses_block(f"{name}_courses", fields=TAGGED_COURSE_FIELDS),
            "stats": stats_block(f"{name}_stats"),
        }
    api: dict[str, Any] = {
        "base_url": base_url,
        "client_id": client[0],
        "client_secret": client[1],
        "retry_seconds": 60,
        "batch_size": {"courses": course_batch, "stats": stat_batch},
    }
    if limits:
        api["limits"] = dict(limits)
    configs = {}
    for name in integrations:
        path = folder / f"{name}.yaml"
        path.write_text(config_text(api, ledger_of(name), blocks, sources), encoding="utf-8")
        configs[name] = path
    return configs


def _stat_rows(courses: int, learners: int) -> Iterator[list[str]]:
    """One statistic per (course, learner), for any number of learners (``stat_rows`` stops at 28)."""
    for c in range(1, courses + 1):
        for u in range(1, learners + 1):
            day = f"2025-03-{1 + u % 28:02d}"
            yield [
                course_id(c),
                f"learner{u:05d}@fleet.example",
                "50",
                str(60 + u % 600),
                f"{day}T08:00:00Z",
                f"{day}T09:00:00Z",
            ]


def add_integrations(state: Any, integrations: Sequence[str]) -> None:
    """Declare the fleet's integrations on a simulator (its ``SimState``)."""
    for n, name in enumerate(integrations, start=1):
        state.add_integration(_id=integration_id(n), externalPlatform=f"LMS {name}", **_identity())


def _identity() -> dict[str, str]:
    return {"groupId": ACME["group"], "authorId": ACME["author"]}


def start_runner(
    config: Path, integration: str, *options: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``syncer apply CONFIG --integration X`` in its own process (stdout and stderr to files
    beside the config: a pipe nobody reads could stall a chatty runner)."""
    out = open(config.with_suffix(".out"), "w", encoding="utf-8")  # noqa: SIM115 (closed by the process end)
    full_env = {
        **os.environ,
        "L360_CLIENT_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    command = [sys.executable, "-m", "syncer", "apply", str(config), "--integration", integration, *options]
    proc = subprocess.Popen(
        command, cwd=config.parent, env=full_env, stdout=out, stderr=subprocess.STDOUT, text=True
    )
    out.close()
    return proc


def output(config: Path) -> str:
    """What a runner printed."""
    return config.with_suffix(".out").read_text(encoding="utf-8")


def wait_all(procs: Mapping[str, subprocess.Popen[str]], deadline: float) -> dict[str, int]:
    """Wait for every runner to end (killing them all at the deadline); their exit codes."""
    give_up = time.monotonic() + deadline
    codes: dict[str, int] = {}
    try:
        for name, proc in procs.items():
            codes[name] = proc.wait(timeout=max(0.1, give_up - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes


def refused(journal: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The requests the platform answered 429 (concurrency or write rate)."""
    return [e for e in journal if e["status"] == 429]


def _epoch(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def peak_unfinished(ops: Sequence[Mapping[str, Any]]) -> int:
    """The most operations unfinished at one moment, from their ``createdAt`` .. ``endedAt``."""
    edges: list[tuple[float, int]] = []
    for op in ops:
        start = _epoch(op["createdAt"])
        end = _epoch(op["endedAt"]) if op.get("endedAt") else float("inf")
        edges += [(start, 1), (end, -1)]
    peak = current = 0
    for _, step in sorted(edges):  # an end sorts before a start at the same moment
        current += step
        peak = max(peak, current)
    return peak


def occupancy(ops: Sequence[Mapping[str, Any]], slots: int) -> tuple[float, float]:
    """The share of slot-time in use from the first submission to the last end, and that span (s)."""
    spans = [(_epoch(op["createdAt"]), _epoch(op["endedAt"])) for op in ops if op.get("endedAt")]
    if not spans:
        return 0.0, 0.0
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    window = last - first
    busy = sum(e - s for s, e in spans)
    return (busy / (slots * window) if window > 0 else 0.0), window


def attempts_per_pair(snapshot: Mapping[str, Any]) -> dict[tuple[str, str, str], int]:
    """Attempts the platform holds per (integration id, course id, learner)."""
    return {(a["integrationId"], a["courseId"], a["user"]): len(a["attempts"]) for a in snapshot["attempts"]}


def handover_seconds(ops: Sequence[Mapping[str, Any]], victim_integration_id: str) -> float:
    """From the end of the killed runner's last operation to the next operation submitted by another
    runner (with one slot, the time its slot took to reach them)."""
    victim = [op for op in ops if op["integrationId"] == victim_integration_id]
    ended = max(_epoch(op["endedAt"]) for op in victim)
    after = [_epoch(op["createdAt"]) for op in ops if _epoch(op["createdAt"]) >= ended]
    return min(after) - ended


def finish_with_a_victim(
    procs: Mapping[str, subprocess.Popen[str]], configs: Mapping[str, Path], victim: str, deadline: float
) -> None:
    """Wait for every runner: ``victim`` SIGKILLed by its crash point, every other one done (0)."""
    codes = wait_all(procs, deadline)
    assert codes[victim] == -9  # SIGKILLed while its operation was unfinished: holding the slot
    survivors = {n: code for n, code in codes.items() if n != victim}
    assert survivors == dict.fromkeys(survivors, 0), {n: output(configs[n]) for n in survivors}
