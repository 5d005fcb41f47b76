"""Benchmark of `syncer plan` on a large statistics source (a benchmark, not a test).

    python bench/plan_bench.py                 # 1,000,000 rows in bench/out/
    python bench/plan_bench.py --rows 100000   # quicker

It generates N statistics rows as CSV and a config, fills a ledger with them as synced (with
the attempts the platform confirmed, as apply records them), then measures: parsing the CSV with
the csv module alone (the floor), `syncer plan` with nothing changed, and `syncer plan` with 1%
and 10% of the rows changed (--changed); every changed statistic goes through the attempt
prediction (syncer/plan/attempts.py). Each plan runs in a subprocess whose peak RSS is read from
wait4's rusage. Targets: plan time <= 4x the floor, peak RSS < 300 MB; with 1% changed, peak
RSS < 150 MB. The 1% plan's time is compared with this benchmark run on an earlier commit
(docs/performance.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.project import STAT_HEADER, stats_only_config, write_csv  # noqa: E402 - on the path above


def stat_rows(rows: int, changed_share: float = 0.0, seed: int = 7) -> Iterator[list[Any]]:
    """``rows`` statistics; with ``changed_share`` a share of them get another progress."""
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    step = max(1, int(1 / changed_share)) if changed_share else 0
    for i in range(rows):
        start = base + timedelta(minutes=rng.randrange(500_000))
        end = start + timedelta(minutes=rng.randrange(1, 600))
        pct = rng.randrange(0, 101)
        if step and i % step == 0:
            pct = (pct + 1) % 101
        yield [
            f"C{rng.randrange(2000):05}",
            f"learner{i // 3:07}@example.com",  # three attempts per learner and course
            pct,
            rng.randrange(1, 36_000),
            start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        ]


def generate(path: Path, rows: int, changed_share: float = 0.0) -> None:
    """Write ``rows`` statistics to the CSV source; ``changed_share`` of them get another progress."""
    write_csv(path, STAT_HEADER, stat_rows(rows, changed_share))


def csv_floor(path: Path) -> float:
    """Seconds to read every row with the csv module and nothing else."""
    started = time.perf_counter()
    with open(path, newline="", encoding="utf-8") as handle:
        for _ in csv.DictReader(handle):
            pass
    return time.perf_counter() - started


def fill_ledger(config_path: Path) -> None:
    """Record every statistic of the source as synced (directly: this is set-up, not measured)."""
    from sqlalchemy import insert

    from syncer.config import load_config
    from syncer.ledger import Ledger, records
    from syncer.models import RecordStatus
    from syncer.plan import build_plan

    config = load_config(config_path)
    ledger = Ledger.open(config.ledger_url.reveal())
    now = datetime.now(UTC)
    attempts = "att_end" in records.c  # the confirmed attempt's columns (ledger schema 0003 on)
    with build_plan(config, ledger) as plan, ledger.engine.begin() as conn:
        for _, batch in plan.batches("acme"):
            conn.execute(
                insert(records),
                [
                    {
                        "integration": "acme",
                        "kind": r.kind,
                        "key": r.key,
                        "hash": r.hash,
                        "payload": dict(r.payload),
                        "status": RecordStatus.SYNCED,
                        "live": False,
                        "origin": r.origin,
                        "source_digest": r.digest,  # as apply records it (ledger.prepare_operation)
                        "created_at": now,
                        "updated_at": now,
                        # The confirmed attempt, as Ledger.record_results records it.
                        **(
                            {
                                "grp": r.group,
                                "first_at": r.order,
                                "att_end": r.payload["lastActivityAt"],
                                "att_done": r.payload["progress"] >= 100,
                            }
                            if attempts
                            else {}
                        ),
                    }
                    for r in batch
                ],
            )
    ledger.close()


def timed_plan(config_path: Path) -> tuple[float, float, float, str]:
    """Run `syncer plan` in a subprocess: (seconds, peak RSS in MB, CPU seconds, first output line).

    The CPU time (user + system, the mapping worker processes included) tells a busy machine
    from a slow plan: on an idle one the wall time is about CPU time / cores in use.
    """
    out_path, err_path = config_path.with_suffix(".out"), config_path.with_suffix(".err")
    started = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", "plan", str(config_path)], stdout=out, stderr=err
        )
        # wait4 reaps the child itself, so its rusage (ru_maxrss, in KB on Linux) is its own.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"syncer plan failed ({proc.returncode}): {err_path.read_text()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss / 1024, cpu, out_path.read_text().splitlines()[0]


def main() -> None:
    """Run the benchmark and print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--changed", default="0.01,0.10", help="shares of rows changed, a plan each")
    parser.add_argument("--fill", type=Path, help=argparse.SUPPRESS)  # internal: set-up in a child
    args = parser.parse_args()
    if args.fill:
        fill_ledger(args.fill)
        return
    work: Path = args.dir
    work.mkdir(parents=True, exist_ok=True)
    ledger = work / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    config_path = work / "bench.yaml"
    config_path.write_text(stats_only_config(f"sqlite:///{ledger}", {"csv": "stats.csv"}), "utf-8")
    source = work / "stats.csv"

    t = time.perf_counter()
    generate(source, args.rows)
    size_mb = source.stat().st_size / 1e6
    print(f"generated {args.rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    # In a child process: a plan's peak RSS (wait4) would otherwise include this process's
    # memory, which the forked child shares until it execs.
    subprocess.run([sys.executable, __file__, "--fill", str(config_path)], check=True)
    print(f"filled the ledger in {time.perf_counter() - t:.1f} s")

    floor = min(csv_floor(source) for _ in range(2))
    runs = {0.0: timed_plan(config_path)}
    for share in (float(s) for s in args.changed.split(",") if s):
        generate(source, args.rows, changed_share=share)
        floor = min(floor, csv_floor(source))
        runs[share] = timed_plan(config_path)

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    print(f"csv floor             {floor:7.2f} s")
    for share, (secs, mb, cpu, line) in runs.items():
        what = f"{share:.0%} changed" if share else "nothing changed"
        print(
            f"plan, {what:<16}{secs:6.2f} s  {secs / floor:4.1f}x floor  peak {mb:5.0f} MB"
            f"  cpu {cpu:5.1f} s  | {line}"
        )
    ok = max(r[0] for r in runs.values()) <= 4 * floor and max(r[1] for r in runs.values()) < 300
    print("targets (<= 4x floor, < 300 MB):", "met" if ok else "NOT met")
    if 0.01 in runs:
        print("target (1% changed: peak RSS < 150 MB):", "met" if runs[0.01][1] < 150 else "NOT met")


if __name__ == "__main__":
    main()
