"""Benchmark of `syncer refresh` on a lost ledger: 1,000 courses and N attempts (a benchmark, not a test).

    python bench/refresh_bench.py                  # 1,000,000 statistics
    python bench/refresh_bench.py --stats 100000   # quicker

It starts the simulator with operations that end at once, no write limit and the platform's
default read limit (50 GETs/s), writes the CSV sources of bench/apply_bench.py (1,000 courses,
N statistics, three attempts per learner) and fills the platform with a first `syncer apply`.
Then, each command in its own process (peak RSS from ``wait4``):

1. the ledger is lost (the SQLite file and its -wal/-shm deleted) and `syncer refresh CONFIG
   --format json` reads everything back and adopts it;
2. `syncer plan --detailed-exitcode` must then exit 0: nothing to send;
3. `syncer refresh` again, on the healthy ledger it just filled.

The simulator runs in its own process, as ``syncer simulator`` would, but started by this
script (``--serve LOG``): its ``on_response`` observer writes every GET it answers to LOG, with
its route, status and time, which ``GET /_sim/state`` (every attempt, the journal cut at
10,000) could not give for a million attempts. This process stays small: a child's
``ru_maxrss`` counts its parent's memory until the child's exec. Reads are split by kind; the
read budget used is reads/s over the refresh's wall time divided by the limit, and the same
over the span from its first to its last read shows what the reading itself achieves.
Targets (issue 15): read budget >= 90% used, peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from apply_bench import ROOT, Measure, SimProcess, run_syncer, stat_rows, write_config

from syncer.simulator import Exchange, SimulatorSettings, SimulatorThread
from tests.project import STAT_HEADER, TAGGED_COURSE_HEADER, course_rows, write_csv

READ_RATE = 50.0
"""The platform's default read limit (GETs per second per company), the simulator's too."""
OP_SECONDS = 0.05
"""Bulk operations end at once: the set-up apply is quick, and the refresh never writes."""
KINDS = {
    "/api/v2/integrations": "integrations",
    "/api/v2/integrations/{integrationId}/courses/{externalId}": "course details",
    "/api/v2/courses": "course list",
    "/api/v2/users": "learners",
    "/api/v2/courses/stats": "attempts",
}
Read = tuple[float, str, int]
"""One GET the simulator answered: (``time.monotonic()``, kind, status)."""


def serve(log_path: Path) -> None:
    """The simulator (fast operations, no write limit, reads at 50/s), logging every GET it answers."""
    with open(log_path, "w", buffering=1, encoding="utf-8") as log:
        _serve_logging(log)


def _serve_logging(log: TextIO) -> None:
    def observe(exchange: Exchange) -> None:
        if exchange.method == "GET":
            kind = KINDS.get(exchange.route or "", exchange.route or exchange.path)
            # CLOCK_MONOTONIC is the machine's: the benchmark compares these times with its own.
            log.write(f"{time.monotonic():.4f}\t{kind}\t{exchange.status}\n")

    settings = SimulatorSettings(
        op_seconds=OP_SECONDS, write_rate=None, read_rate=READ_RATE, check_items=False
    )
    # A benchmark started in the background (`... &`) hands SIGINT down ignored: listen to it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with SimulatorThread(settings, on_response=observe) as sim:
        print(f"simulator listening on {sim.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()  # until SIGINT (SimProcess.stop)


def reads_since(log_path: Path, moment: float) -> list[Read]:
    """The GETs answered after ``moment``, from the simulator's log."""
    out: list[Read] = []
    for line in log_path.read_text("utf-8").splitlines():
        at, kind, status = line.split("\t")
        if float(at) >= moment:
            out.append((float(at), kind, int(status)))
    return out


@dataclass
class Case:
    """One measured refresh: the process, its JSON report and the reads the simulator answered."""

    name: str
    run: Measure
    report: dict[str, Any]
    reads: list[Read]
    started: float

    def lines(self) -> list[str]:
        """The figures, as report lines."""
        run, reads = self.run, self.reads
        integration = self.report["integrations"][0]
        rate = len(reads) / run.seconds
        out = [
            f"{self.name}: wall {run.seconds:.1f} s (refresh's own clock {self.report['seconds']:.1f} s), "
            f"peak RSS {run.rss_mb:.0f} MB",
            f"  reads {len(reads):,} (refresh says {self.report['reads']:,}), "
            f"{rate:.1f} reads/s over the wall time = read budget {rate / READ_RATE:.1%} used",
        ]
        if reads:
            first, last = reads[0][0], reads[-1][0]
            span = max(last - first, 1e-9)
            out.append(
                f"  first read at {first - self.started:.1f} s, last at {last - self.started:.1f} s: "
                f"{len(reads) / span:.1f} reads/s over those {span:.1f} s "
                f"(budget {len(reads) / span / READ_RATE:.1%}); {run.seconds - span:.1f} s without reads"
            )
            per_second = Counter(math.floor(t - first) for t, _, _ in reads)
            full = sum(1 for n in per_second.values() if n >= 0.9 * READ_RATE)
            out.append(f"  seconds of that span with >= 90% of the budget read: {full} of {math.ceil(span)}")
        by_kind: dict[str, list[float]] = {}
        for moment, kind, _ in reads:
            by_kind.setdefault(kind, []).append(moment)
        for kind, moments in by_kind.items():
            span = moments[-1] - moments[0]
            pace = f"{len(moments) / span:5.1f} reads/s" if span > 0 else "          "
            out.append(
                f"    {kind:<15} {len(moments):6,}  {pace}  from {moments[0] - self.started:6.1f} s "
                f"to {moments[-1] - self.started:6.1f} s"
            )
        refused = Counter(status for _, _, status in reads if status >= 400)
        if refused:
            out.append(f"  refused reads: {dict(refused)}")
        out.append(
            f"  courses read {integration['courses_read']:,}, adopted {integration['courses_adopted']:,}; "
            f"attempts read {integration['attempts_read']:,}, statistics adopted "
            f"{integration['stats_adopted']:,}, made by others {integration['foreign_attempts']:,}; "
            f"drift {integration['drift_total']:,}"
        )
        return out


def lose_ledger(ledger: Path) -> None:
    """Delete the SQLite ledger and its -wal/-shm, as a lost disk would."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)


def refresh(name: str, slug: str, config: Path, work: Path, reads_log: Path) -> Case:
    """Run `syncer refresh CONFIG --format json` in its own process (output in work/SLUG.out,
    .err) and collect its reads."""
    started = time.monotonic()
    run = run_syncer(["refresh", str(config), "--format", "json"], work, slug)
    return Case(name, run, json.loads(run.output), reads_since(reads_log, started), started)


def load() -> str:
    """The load average, as /proc/loadavg gives it (1, 5, 15 minutes)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stats", type=int, default=1_000_000, help="statistics rows (default 1,000,000)")
    parser.add_argument("--courses", type=int, default=1_000, help="courses (default 1,000)")
    parser.add_argument("--dir", type=Path, default=ROOT / "bench" / "out" / "refresh")
    parser.add_argument("--serve", type=Path, metavar="LOG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    work: Path = args.dir
    work.mkdir(parents=True, exist_ok=True)
    ledger = work / "ledger.db"
    lose_ledger(ledger)
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; load {load()}; "
        f"{args.stats:,} statistics + {args.courses:,} courses; read limit {READ_RATE:g}/s",
        flush=True,
    )
    write_csv(work / "courses.csv", TAGGED_COURSE_HEADER, course_rows(args.courses))
    write_csv(work / "stats.csv", STAT_HEADER, stat_rows(args.stats, args.courses))
    reads_log = work / "reads.tsv"
    serve_command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(reads_log)]
    sim = SimProcess(OP_SECONDS, work / "simulator.log", serve_command)
    try:
        config = work / "bench.yaml"
        write_config(config, sim.base_url, ledger)
        first = run_syncer(["apply", str(config)], work, "apply-first")
        print(f"set-up: first apply {first.seconds:.1f} s (load {load()})", flush=True)

        lose_ledger(ledger)
        lost = refresh("refresh, ledger lost", "refresh-lost", config, work, reads_log)
        print("\n".join([*lost.lines(), f"  load {load()}"]), flush=True)
        plan = run_syncer(["plan", str(config), "--detailed-exitcode"], work, "plan-after")
        print(
            f"plan --detailed-exitcode after it: exit {plan.code} "
            f"({'nothing to send' if plan.code == 0 else 'changes present'}), {plan.seconds:.1f} s",
            flush=True,
        )
        healthy = refresh("refresh, healthy ledger", "refresh-healthy", config, work, reads_log)
        print("\n".join([*healthy.lines(), f"  load {load()}"]), flush=True)
    finally:
        sim.stop()
    targets = [
        (
            "read budget >= 90% used",
            all(c.reads and len(c.reads) / c.run.seconds >= 0.9 * READ_RATE for c in (lost, healthy)),
        ),
        ("peak RSS < 150 MB", max(lost.run.rss_mb, healthy.run.rss_mb) < 150),
        ("plan afterwards exits 0", plan.code == 0),
    ]
    print("targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets))


if __name__ == "__main__":
    main()
