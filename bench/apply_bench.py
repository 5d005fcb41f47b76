"""Benchmark of `syncer apply` end to end: N statistics and 1,000 courses (a benchmark, not a test).

    python bench/apply_bench.py                      # 1,000,000 statistics, both server speeds
    python bench/apply_bench.py --stats 100000       # quicker
    python bench/apply_bench.py --speeds realistic   # only the realistic server

For each server speed it starts the simulator in another process (``python -m syncer
simulator``), generates the CSV sources, then runs in subprocesses: `syncer apply` into an
empty ledger, `syncer plan` and a no-op `syncer apply` on the same data, and an apply with 1% of
the statistics changed. It reports wall time, records/s, submissions, peak unfinished
operations, slot occupancy and peak RSS (``wait4``'s ru_maxrss of the apply process).

Slot occupancy is read from the simulator's own operation timestamps (``GET
/api/v2/bulk/operations``, ``createdAt``..``endedAt``): the share of the time from the first to
the last statistics submission during which all slots were taken. Before the first statistics
batch the courses must be complete (product.md §4), so that window is where slots can be full.
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


def write_config(path: Path, base_url: str, ledger: Path) -> None:
    """The config: the CSV sources beside it, a SQLite ledger."""
    api = {"base_url": base_url, "client_id": "demo-client", "client_secret": "demo-secret"}
    acme = {**ACME, "courses": courses_block(fields=TAGGED_COURSE_FIELDS), "stats": stats_block()}
    path.write_text(config_text(api, f"sqlite:///{ledger}", {"acme": acme}), "utf-8")


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


def run_syncer(args: list[str], work: Path, name: str) -> Measure:
    """Run ``python -m syncer ARGS``; its peak RSS comes from ``wait4``."""
    out_path, err_path = work / f"{name}.out", work / f"{name}.err"
    started = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", "--log-format", "json", *args], stdout=out, stderr=err, cwd=ROOT
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
    write_csv(work / "courses.csv", TAGGED_COURSE_HEADER, course_rows(args.courses))
    write_csv(work / "stats.csv", STAT_HEADER, stat_rows(args.stats, args.courses))
    sim = SimProcess(SPEEDS[speed], work / "simulator.log")
    lines = [f"## server speed: {speed} (op_seconds {SPEEDS[speed]:g})"]
    try:
        config = work / "bench.yaml"
        write_config(config, sim.base_url, ledger)
        total = args.stats + args.courses
        started = time.time()
        first = run_syncer(["apply", str(config)], work, "apply-first")
        summary = run_summary(ledger)
        occ, window, peak = occupancy(sim.operations(), 3, started)
        lines.append(
            f"first apply   {first.seconds:8.1f} s  {total / first.seconds:9,.0f} records/s  "
            f"submissions {summary.get('submissions')}  peak in flight {summary.get('peak_in_flight')} "
            f"(server {peak})  occupancy {occ:6.1%} over {window:.1f} s  peak RSS {first.rss_mb:4.0f} MB"
        )
        lines.append(
            f"first apply   CPU {first.cpu:7.1f} s = {first.cpu / total * 10_000:.2f} CPU-s "
            f"per 10,000 records  load {_load()}"
        )
        if args.first_only:
            return lines
        plan = run_syncer(["plan", str(config)], work, "plan-noop")
        noop = run_syncer(["apply", str(config)], work, "apply-noop")
        summary = run_summary(ledger)
        lines.append(f"plan (no-op)  {plan.seconds:8.1f} s  peak RSS {plan.rss_mb:4.0f} MB")
        lines.append(
            f"no-op apply   {noop.seconds:8.1f} s  = {noop.seconds / plan.seconds:.2f}x plan  "
            f"submissions {summary.get('submissions')}  peak RSS {noop.rss_mb:4.0f} MB"
        )
        write_csv(work / "stats.csv", STAT_HEADER, stat_rows(args.stats, args.courses, changed_share=0.01))
        started = time.time()
        changed = run_syncer(["apply", str(config)], work, "apply-changed")
        summary = run_summary(ledger)
        lines.append(
            f"1% changed    {changed.seconds:8.1f} s  submissions {summary.get('submissions')}  "
            f"synced {summary.get('integrations', {}).get('acme', {}).get('synced')}  "
            f"peak RSS {changed.rss_mb:4.0f} MB"
        )
        targets = [
            ("peak RSS < 300 MB", max(first.rss_mb, noop.rss_mb, changed.rss_mb) < 300),
            ("no-op <= 1.2x plan", noop.seconds <= 1.2 * plan.seconds),
        ]
        if speed == "realistic":
            targets.append(("occupancy >= 95%", occ >= 0.95))
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
    parser.add_argument("--dir", type=Path, default=ROOT / "bench" / "out" / "apply")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.stats:,} statistics + {args.courses:,} courses"
    )
    for speed in args.speeds.split(","):
        for line in bench_speed(speed.strip(), args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
