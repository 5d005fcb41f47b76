"""Benchmark of `syncer apply` end to end: N statistics and 1,000 courses (a benchmark, not a test).

    python bench/apply_bench.py                      # 1,000,000 statistics, both server speeds
    python bench/apply_bench.py --stats 100000       # quicker
    python bench/apply_bench.py --speeds realistic   # only the realistic server
    python bench/apply_bench.py --stats 100000 --speeds realistic --first-only --integrations 2
    python bench/apply_bench.py ... --syncer-root /tmp/before   # apply another checkout's syncer

For each server speed it starts the simulator in another process (``python -m syncer
simulator``), generates the CSV sources, then runs in subprocesses: `syncer apply` into an
empty ledger, `syncer plan` and a no-op `syncer apply` on the same data, and an apply with 1% of
the statistics changed. It reports wall time, records/s, submissions, peak unfinished
operations, slot occupancy and peak RSS (``wait4``'s ru_maxrss of the apply process).

Slot occupancy is read from the simulator's own operation timestamps (``GET
/api/v2/bulk/operations``, ``createdAt``..``endedAt``): the share of the time from the first to
the last statistics submission during which all slots were taken. Before the first statistics
batch the courses must be complete (product.md §4), so that window is where slots can be full.

With ``--integrations N`` the statistics and the courses are split between N integrations of
one platform (``acme1``, ``acme2``, ...: each its own identity, its own CSV sources and its own
courses), applied by one ``syncer apply``. It then also reports the occupancy over the whole run
while work remains: the share of the time from the first submission (of any type) to the last
operation's end during which all slots were taken, and the busy slot-time over slots x that
span. ``--syncer-root`` runs the syncer commands from another checkout (a git worktree of an
older commit: ``PYTHONPATH`` and the working directory point at it); the simulator and this
script stay those of this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.project import (  # noqa: E402 - from the repository root, put on the path just above
    ACME,
    LISTENING,
    STAT_HEADER,
    TAGGED_COURSE_FIELDS,
    TAGGED_COURSE_HEADER,
    config_text,
    course_id,
    course_rows,
    courses_block,
    simulator_command,
    stats_block,
    write_csv,
)

SPEEDS = {
    # op_seconds of one operation, whatever its size. "fast": the server is never the
    # bottleneck, so the figures are syncer's own ceiling. "realistic": 10,000 statistics take
    # 10 s on the server (1,000 items/s per operation), the pace the pipeline must keep fed.
    "fast": 0.05,
    "realistic": 10.0,
}


def write_config(path: Path, base_url: str, ledger: Path, integrations: int = 1) -> None:
    """The config: the CSV sources beside it, a SQLite ledger; with ``integrations`` > 1, the
    integrations ``acme1``.. of one platform, each with its own sources (``integration_names``)."""
    api = {"base_url": base_url, "client_id": "demo-client", "client_secret": "demo-secret"}
    if integrations == 1:
        acme = {**ACME, "courses": courses_block(fields=TAGGED_COURSE_FIELDS), "stats": stats_block()}
        path.write_text(config_text(api, f"sqlite:///{ledger}", {"acme": acme}), "utf-8")
        return
    sources: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for name in integration_names(integrations):
        sources[f"{name}_catalog"] = {"csv": f"{name}-courses.csv"}
        sources[f"{name}_progress"] = {"csv": f"{name}-stats.csv"}
        blocks[name] = {
            **ACME,
            "platform": f"{ACME['platform']} {name}",
            "courses": courses_block(f"{name}_catalog", fields=TAGGED_COURSE_FIELDS),
            "stats": stats_block(f"{name}_progress"),
        }
    path.write_text(config_text(api, f"sqlite:///{ledger}", blocks, sources), "utf-8")


def integration_names(integrations: int) -> list[str]:
    """The integrations of a run: ``acme`` alone, or ``acme1``, ``acme2``, ..."""
    return ["acme"] if integrations == 1 else [f"acme{n}" for n in range(1, integrations + 1)]


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` shares as even as can be (the first ones take the rest)."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


def write_sources(work: Path, args: argparse.Namespace, changed_share: float = 0.0) -> None:
    """The CSV sources: ``courses.csv`` and ``stats.csv``, or one pair per integration
    (``acmeK-courses.csv``, ``acmeK-stats.csv``) holding its share of the courses and statistics."""
    names = integration_names(args.integrations)
    if len(names) == 1:
        if not changed_share:
            write_csv(work / "courses.csv", TAGGED_COURSE_HEADER, course_rows(args.courses))
        write_csv(work / "stats.csv", STAT_HEADER, stat_rows(args.stats, args.courses, changed_share))
        return
    for n, (name, stats, courses) in enumerate(
        zip(names, split(args.stats, len(names)), split(args.courses, len(names)), strict=True)
    ):
        if not changed_share:
            write_csv(work / f"{name}-courses.csv", TAGGED_COURSE_HEADER, course_rows(courses))
        write_csv(
            work / f"{name}-stats.csv", STAT_HEADER, stat_rows(stats, courses, changed_share, seed=7 + n)
        )


def stat_rows(rows: int, courses: int, changed_share: float = 0.0, seed: int = 7) -> Iterator[list[Any]]:
    """``rows`` statistics (three attempts per learner); ``changed_share`` of them get another progress.

    A learner's three attempts are at three different courses (given three or more), start a
    minute apart and last under a minute: a change of one never meets another open attempt of
    its pair, and the attempt prediction holds none of them (docs/attempts.md).
    """
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    step = max(1, round(1 / changed_share)) if changed_share else 0
    first = 0
    for i in range(rows):
        start = base + timedelta(minutes=i)  # unique, so no key repeats
        if i % 3 == 0:
            first = rng.randrange(courses)
        end = start + timedelta(seconds=rng.randrange(1, 60))
        pct = rng.randrange(0, 100)
        if step and i % step == 0:
            pct += 1
        yield [
            course_id((first + i % 3) % courses + 1),
            f"learner{i // 3:07}@example.com",
            pct,
            rng.randrange(1, 36_000),
            start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        ]


class SimProcess:
    """The simulator in its own process, stopped with SIGINT; ``command`` replaces ``syncer
    simulator`` by another program that prints a ``LISTENING`` line (bench/refresh_bench.py)."""

    def __init__(self, op_seconds: float, log: Path, command: list[str] | None = None) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command or simulator_command(op_seconds, "--trust-items"),
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        found = LISTENING.search(line)
        if not found:
            self.stop()
            raise SystemExit(f"the simulator did not start: {line!r}")
        self.base_url = found.group(1)
        self._token = ""

    def _get(self, url: str) -> tuple[Any, str | None]:
        if not self._token:
            body = json.dumps(
                {
                    "grant_type": "client_credentials",
                    "client_id": "demo-client",
                    "client_secret": "demo-secret",
                }
            ).encode()
            req = urllib.request.Request(
                f"{self.base_url}/api/v2/oauth2/token", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req) as resp:
                self._token = json.load(resp)["access_token"]
        req = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self._token}", "360-api-version": "v2.0"}
        )
        with urllib.request.urlopen(req) as resp:
            link = resp.headers.get("Link")
            data = json.load(resp)
        found = re.search(r"<([^>]+)>;\s*rel=\"?next", link or "")
        return data, found.group(1) if found else None

    def operations(self) -> list[dict[str, Any]]:
        """Every bulk operation, through the official list endpoint."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/api/v2/bulk/operations"
        while url:
            page, url = self._get(url)
            out.extend(page)
            if url and url.startswith("/"):
                url = self.base_url + url
        return out

    def stop(self) -> None:
        """Stop the simulator process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class Measure:
    """One subprocess run of syncer."""

    seconds: float
    rss_mb: float
    code: int
    output: str
    cpu: float  # user + system CPU-s of the process and the children it waited for (mapping workers)


def syncer_env(root: Path) -> dict[str, str]:
    """The environment of the syncer subprocesses: ``root``'s package first on the path."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }


def syncer_file(root: Path) -> str:
    """Where the syncer subprocesses import ``syncer`` from (``--syncer-root``: check it is that one)."""
    command = [sys.executable, "-c", "import syncer; print(syncer.__file__)"]
    return subprocess.run(
        command, cwd=root, env=syncer_env(root), capture_output=True, text=True
    ).stdout.strip()


def run_syncer(args: list[str], work: Path, name: str, root: Path = ROOT) -> Measure:
    """Run ``python -m syncer ARGS`` from the checkout ``root``; its peak RSS comes from ``wait4``."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    started = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", "--log-format", "json", *args],
            stdout=out,
            stderr=err,
            cwd=root,
            env=syncer_env(root),
        )
        # wait4 reaps the child itself, so its rusage (ru_maxrss, in KB on Linux) is its own.
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        raise SystemExit(f"syncer {' '.join(args)} failed ({code}): {err_path.read_text()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measure(elapsed, usage.ru_maxrss / 1024, code, out_path.read_text(), cpu)


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def occupancy(ops: list[dict[str, Any]], slots: int, since: float) -> tuple[float, float, int]:
    """(share of the stats submission window with all slots taken, window seconds, peak)."""
    spans = [
        (_epoch(op["createdAt"]), _epoch(op.get("endedAt") or op["createdAt"]), op["type"])
        for op in ops
        if _epoch(op["createdAt"]) >= since - 1
    ]
    events: list[tuple[float, int]] = []
    for start, end, _ in spans:
        events += [(start, 1), (end, -1)]
    events.sort(key=lambda e: (e[0], e[1]))  # an end and a start at the same ms: the end first
    peak = level = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    stats = sorted(s for s, _, kind in spans if kind == "importExternalStatistics")
    if len(stats) < 2:
        return 1.0, 0.0, peak
    lo, hi = stats[0], stats[-1]
    full = 0.0
    level, last = 0, lo
    for moment, delta in events:
        if moment > lo and last < hi:
            seg_start, seg_end = max(last, lo), min(moment, hi)
            if level >= slots and seg_end > seg_start:
                full += seg_end - seg_start
        level += delta
        last = moment
    return full / (hi - lo), hi - lo, peak


def whole_run_occupancy(ops: list[dict[str, Any]], slots: int, since: float) -> tuple[float, float, float]:
    """Over the whole run while work remains, from the first submission (of any type) to the
    last operation's end: (share of that span with all ``slots`` taken, busy slot-time over
    ``slots`` x the span, the span in seconds)."""
    spans = [
        (_epoch(op["createdAt"]), _epoch(op.get("endedAt") or op["createdAt"]))
        for op in ops
        if _epoch(op["createdAt"]) >= since - 1
    ]
    if not spans:
        return 0.0, 0.0, 0.0
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    if hi <= lo:
        return 0.0, 0.0, 0.0
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda e: (e[0], e[1]))
    full = 0.0
    level, last = 0, lo
    for moment, delta in events:  # an end and a start at the same ms: the end first
        if level >= slots:
            full += moment - last
        level += delta
        last = moment
    busy = sum(e - s for s, e in spans)
    return full / (hi - lo), busy / (slots * (hi - lo)), hi - lo


def _load() -> str:
    """The 1-minute load average (the machine may be shared: compare CPU times, not wall times)."""
    return f"{os.getloadavg()[0]:.2f}"


def run_summary(ledger: Path) -> dict[str, Any]:
    """The summary of the last run recorded in the ledger (submissions, peak in flight)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(ledger)) as conn:
        row = conn.execute("SELECT summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def bench_speed(speed: str, args: argparse.Namespace) -> list[str]:
    """All measurements at one server speed; returns report lines."""
    work: Path = args.dir / speed
    work.mkdir(parents=True, exist_ok=True)
    ledger = work / "ledger.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    write_sources(work, args)
    op_seconds = args.op_seconds if args.op_seconds is not None else SPEEDS[speed]
    sim = SimProcess(op_seconds, work / "simulator.log")
    lines = [f"## server speed: {speed} (op_seconds {op_seconds:g}), {args.integrations} integration(s)"]
    root: Path = args.syncer_root
    try:
        config = work / "bench.yaml"
        write_config(config, sim.base_url, ledger, args.integrations)
        total = args.stats + args.courses
        started = time.time()
        first = run_syncer(["apply", str(config)], work, "apply-first", root)
        summary = run_summary(ledger)
        ops = sim.operations()
        occ, window, peak = occupancy(ops, 3, started)
        whole, busy, span = whole_run_occupancy(ops, 3, started)
        kinds = sorted({op["type"] for op in ops if _epoch(op["createdAt"]) >= started - 1})
        count = sum(1 for op in ops if _epoch(op["createdAt"]) >= started - 1)
        lines.append(
            f"first apply   {first.seconds:8.1f} s  {total / first.seconds:9,.0f} records/s  "
            f"submissions {summary.get('submissions')}  peak in flight {summary.get('peak_in_flight')} "
            f"(server {peak})  occupancy {occ:6.1%} over {window:.1f} s  peak RSS {first.rss_mb:4.0f} MB"
        )
        lines.append(
            f"first apply   CPU {first.cpu:7.1f} s = {first.cpu / total * 10_000:.2f} CPU-s "
            f"per 10,000 records  load {_load()}"
        )
        lines.append(
            f"whole run     all {3} slots taken {whole:6.1%} of {span:.1f} s (first submission to last end), "
            f"busy slot-time {busy:6.1%}; {count} operations ({', '.join(kinds)})"
        )
        if args.first_only:
            return lines
        plan = run_syncer(["plan", str(config)], work, "plan-noop", root)
        noop = run_syncer(["apply", str(config)], work, "apply-noop", root)
        summary = run_summary(ledger)
        lines.append(f"plan (no-op)  {plan.seconds:8.1f} s  peak RSS {plan.rss_mb:4.0f} MB")
        lines.append(
            f"no-op apply   {noop.seconds:8.1f} s  = {noop.seconds / plan.seconds:.2f}x plan  "
            f"submissions {summary.get('submissions')}  peak RSS {noop.rss_mb:4.0f} MB"
        )
        write_sources(work, args, changed_share=0.01)
        started = time.time()
        changed = run_syncer(["apply", str(config)], work, "apply-changed", root)
        summary = run_summary(ledger)
        outcomes = summary.get("integrations", {})
        synced = [outcomes.get(name, {}).get("synced") for name in integration_names(args.integrations)]
        lines.append(
            f"1% changed    {changed.seconds:8.1f} s  submissions {summary.get('submissions')}  "
            f"synced {synced[0] if len(synced) == 1 else synced}  "
            f"peak RSS {changed.rss_mb:4.0f} MB"
        )
        targets = [
            ("peak RSS < 300 MB", max(first.rss_mb, noop.rss_mb, changed.rss_mb) < 300),
            ("no-op <= 1.2x plan", noop.seconds <= 1.2 * plan.seconds),
        ]
        if speed == "realistic":
            targets.append(("occupancy >= 95%", occ >= 0.95))
            if args.integrations > 1:
                targets.append(("whole-run occupancy >= 90%", whole >= 0.90))
        lines.append("targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets))
    finally:
        sim.stop()
    return lines


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stats", type=int, default=1_000_000, help="statistics rows (default 1,000,000)")
    parser.add_argument("--courses", type=int, default=1_000, help="courses (default 1,000)")
    parser.add_argument("--speeds", default="fast,realistic", help="comma-separated: fast, realistic")
    parser.add_argument(
        "--first-only", action="store_true", help="measure only the first apply (into an empty ledger)"
    )
    parser.add_argument(
        "--integrations",
        type=int,
        default=1,
        help="split the statistics and courses between N integrations of one platform (default 1)",
    )
    parser.add_argument(
        "--op-seconds",
        type=float,
        default=None,
        help="the server's time per operation, instead of the speed's",
    )
    parser.add_argument(
        "--syncer-root",
        type=Path,
        default=ROOT,
        help="the checkout whose syncer the commands run (e.g. a git worktree of an older commit)",
    )
    parser.add_argument("--dir", type=Path, default=ROOT / "bench" / "out" / "apply")
    args = parser.parse_args()
    if args.integrations < 1:
        parser.error("--integrations must be at least 1")
    args.syncer_root = args.syncer_root.resolve()
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.stats:,} statistics + {args.courses:,} courses in {args.integrations} integration(s); "
        f"load {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"syncer commands import {syncer_file(args.syncer_root)}", flush=True)
    for speed in args.speeds.split(","):
        for line in bench_speed(speed.strip(), args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
