"""Benchmark of a fleet: N runners of one platform on one PostgreSQL ledger (a benchmark, not a test).

    python bench/fleet_bench.py                        # 4 runners, 50,000 statistics each
    python bench/fleet_bench.py --stats 20000 --op-seconds 1 --stat-batch 2000

It starts the simulator in its own process with the platform's limits enforced (3 unfinished
operations and 10 writes a second per company, 50 reads a second), writes each runner's CSV
sources and config, and runs, against a fresh ledger schema on the PostgreSQL server
(``SYNCER_PG_URL``, default the test server 127.0.0.1:5432 user postgres db test):

1. one runner alone (``syncer apply --integration lms1``), the baseline;
2. then, against a fresh simulator and ledger, N runners at once (``--integration lmsK`` each).

For the fleet it reports the 429 answers the platform gave (target 0: the governor shares the
slots and the write rate), the peak of unfinished operations (``createdAt``..``endedAt`` of the
simulator's own operations: at most 3), the slot occupancy while work remains (the share of
3 slots x the time from the first to the last submission during which operations were
unfinished; target 90%), and records/s against the single runner.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.apply_bench import SimProcess  # noqa: E402 - from the repository root, put on the path just above
from tests import fleet  # noqa: E402

PG_URL = os.environ.get("SYNCER_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SLOTS = 3


def _epoch(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def occupancy_while_work_remains(ops: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Busy slot-time / (3 x the span from the first to the last submission), and that span."""
    spans = [(_epoch(op["createdAt"]), _epoch(op["endedAt"])) for op in ops if op.get("endedAt")]
    if len(spans) < 2:
        return 0.0, 0.0
    first = min(s for s, _ in spans)
    last = max(s for s, _ in spans)  # the last submission: no work is left to fill a slot after it
    window = last - first
    busy = sum(max(0.0, min(e, last) - max(s, first)) for s, e in spans)
    return (busy / (SLOTS * window) if window > 0 else 0.0), window


def sim_state(sim: SimProcess) -> dict[str, Any]:
    """The simulator's whole state (``GET /_sim/state``): its journal and peaks."""
    with urllib.request.urlopen(f"{sim.base_url}/_sim/state") as resp:
        data: dict[str, Any] = json.load(resp)
    return data


def make_schema(name: str, *, drop: bool = False) -> str:
    """Create (or drop) a ledger schema on the server; its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if drop:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        else:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{name}"


def run_fleet(work: Path, runners: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start a simulator and a ledger schema, run ``runners`` runners at once, measure."""
    sim = SimProcess(args.op_seconds, work / "simulator.log")
    schema = f"fleet_bench_{uuid.uuid4().hex[:8]}"
    url = make_schema(schema)
    try:
        names = fleet.names(args.runners)
        courses = max(1, args.stats // args.learners)
        configs = fleet.write_fleet(
            work,
            sim.base_url,
            lambda _: url,
            names,
            courses=courses,
            learners=args.learners,
            course_batch=10_000,
            stat_batch=args.stat_batch,
            client=("demo-client", "demo-secret"),
            declared=True,
        )
        subprocess.run(  # migrate once, before the runners start
            [sys.executable, "-c", f"from syncer.ledger import Ledger; Ledger.open({url!r}).close()"],
            cwd=ROOT,
            check=True,
        )
        started = time.perf_counter()
        poll = ("--poll-seconds", str(args.poll_seconds))
        procs = {n: fleet.start_runner(configs[n], n, *poll) for n in names[:runners]}
        codes = fleet.wait_all(procs, args.deadline)
        seconds = time.perf_counter() - started
        bad = {n: fleet.output(configs[n])[-2000:] for n, code in codes.items() if code != 0}
        if bad:
            raise SystemExit(f"runners failed: {codes}\n{bad}")
        state = sim_state(sim)
        ops = state["operations"]
        occ, window = occupancy_while_work_remains(ops)
        records = runners * (courses * args.learners + courses)
        return {
            "runners": runners,
            "seconds": seconds,
            "records": records,
            "records_per_s": records / seconds,
            "operations": len(ops),
            "refused_429": len(fleet.refused(state["journal"])),
            "peak_unfinished": fleet.peak_unfinished(ops),
            "occupancy": occ,
            "window": window,
            "peak_writes_per_s": max(state["peaks"]["writes_per_second"].values(), default=0),
            "synced_once": set(fleet.attempts_per_pair(state).values()) == {1},
        }
    finally:
        sim.stop()
        make_schema(schema, drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--stats", type=int, default=50_000, help="statistics per runner")
    parser.add_argument("--learners", type=int, default=500)
    parser.add_argument("--stat-batch", type=int, default=5_000, help="statistics per operation")
    parser.add_argument("--op-seconds", type=float, default=2.0, help="the simulator's time per operation")
    parser.add_argument("--poll-seconds", type=float, default=0.2, help="the runners' first poll delay")
    parser.add_argument("--deadline", type=float, default=900.0)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    results = []
    for runners in (1, args.runners):
        with TemporaryDirectory(prefix="fleet-bench-") as folder:
            result = run_fleet(Path(folder), runners, args)
        results.append(result)
        print(
            f"{result['runners']} runner(s): {result['records']:,} records in {result['seconds']:.1f} s "
            f"= {result['records_per_s']:,.0f} records/s; {result['operations']} operations; "
            f"429 answers {result['refused_429']}; peak unfinished {result['peak_unfinished']}; "
            f"occupancy {result['occupancy']:.1%} over {result['window']:.1f} s; "
            f"peak writes/s {result['peak_writes_per_s']}; synced once: {result['synced_once']}"
        )
    one, many = results
    print(f"fleet vs one runner: {many['records_per_s'] / one['records_per_s']:.2f}x records/s")
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    targets = [
        ("429 answers = 0", many["refused_429"] == 0),
        ("peak unfinished <= 3", many["peak_unfinished"] <= SLOTS),
        ("occupancy >= 90%", many["occupancy"] >= 0.90),
        ("every statistic synced once", many["synced_once"]),
    ]
    for label, met in targets:
        print(f"  {'met' if met else 'MISSED'}: {label}")


if __name__ == "__main__":
    main()
