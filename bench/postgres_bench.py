"""Benchmark of `syncer plan` with PostgreSQL everywhere (a benchmark, not a test).

    python bench/postgres_bench.py                  # 1,000,000 rows
    python bench/postgres_bench.py --rows 100000    # quicker
    python bench/postgres_bench.py --url postgresql+psycopg://user@host:5432/db

It creates a schema (``syncer_bench``, dropped first) on the server, fills a statistics table
of N rows there with ``generate_series`` (three statistics per learner, 2,000
courses), and points a config at it: the source is an SQL query on that table and the ledger
is the same schema. It records every statistic in the ledger as synced, then measures, each in
its own process (peak RSS from ``wait4``'s rusage): streaming the source through
``sources.load_rows`` alone (the floor), the same query fetched whole by a client-side cursor
(the contrast), ``syncer plan`` with nothing changed and with 10% of the rows changed.
Target: peak RSS under 300 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.project import stats_only_config  # noqa: E402 - from the repository root, on the path above

SCHEMA = "syncer_bench"

QUERY = "SELECT course_id, email, pct, seconds, started, finished FROM bench_stats"

FILL = """
CREATE TABLE bench_stats AS
SELECT n,
       'C' || lpad(((n * 7919) % 2000)::text, 5, '0') AS course_id,
       'learner' || lpad((n / 3)::text, 7, '0') || '@example.com' AS email,
       (n * 31) % 101 AS pct,
       1 + (n * 17) % 36000 AS seconds,
       to_char(timestamp '2024-01-01' + n * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS".000Z"') AS started,
       to_char(timestamp '2024-01-01' + n * interval '1 minute' + interval '47 minutes',
               'YYYY-MM-DD"T"HH24:MI:SS".000Z"') AS finished
FROM generate_series(1::bigint, CAST(:rows AS bigint)) AS n
"""

# Run in a child process: the floor (streamed through syncer.sources) and the contrast.
STREAM = """
import sys
from pathlib import Path
from syncer.config import load_config
from syncer.sources import load_rows
count = sum(1 for _ in load_rows(load_config(Path(sys.argv[1])).sources["progress"]))
print(f"{count} rows")
"""
FETCHALL = """
import sys
from sqlalchemy import create_engine, text
from pathlib import Path
from syncer.config import load_config
source = load_config(Path(sys.argv[1])).sources["progress"]
with create_engine(source.url.reveal()).connect() as conn:
    rows = conn.execute(text(source.query)).fetchall()
print(f"{len(rows)} rows")
"""


def schema_url(base: str) -> str:
    """The base URL with every connection working in the benchmark's schema."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{SCHEMA}"


def setup(base: str, rows: int) -> None:
    """(Re)create the schema and fill the source table, server-side."""
    from sqlalchemy import create_engine, text

    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        conn.execute(text(f"SET search_path = {SCHEMA}"))
        conn.execute(text(FILL), {"rows": rows})
        conn.execute(text("ANALYZE bench_stats"))
    engine.dispose()


def change(base: str, share: float) -> None:
    """Give a share of the source rows another progress."""
    from sqlalchemy import create_engine, text

    step = max(1, int(1 / share))
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            text(f"UPDATE {SCHEMA}.bench_stats SET pct = (pct + 1) % 101 WHERE n % :s = 0"), {"s": step}
        )
    engine.dispose()


def fill_ledger(config_path: Path) -> int:
    """Record every statistic of the source as synced (set-up, not measured): one INSERT ... SELECT
    from the plan's own staging table, in the plan's connection where that temporary table lives."""
    from sqlalchemy import text

    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.plan import build_plan

    config = load_config(config_path)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        with build_plan(config, ledger) as plan:
            conn, staged = plan._conn, plan._staged  # bench only: reach into the plan's staging
            assert conn is not None and staged is not None
            done = conn.execute(
                text(
                    "INSERT INTO records (integration, kind, key, hash, payload, status, live, origin, "
                    "source_digest, grp, first_at, att_end, att_done, created_at, updated_at) "
                    "SELECT integration, kind, key, hash, CAST(payload AS JSON), 'synced', false, "
                    "origin, digest, grp, ord, CAST(payload AS JSON) ->> 'lastActivityAt', "
                    "CAST(CAST(payload AS JSON) ->> 'progress' AS numeric) >= 100, now(), now() "
                    f"FROM {staged.name} WHERE state = 'ok'"
                )
            )
            conn.execute(text("ANALYZE records"))
            conn.commit()
            size = conn.execute(text("SELECT pg_total_relation_size('records')")).scalar_one()
            conn.commit()
            print(f"ledger records table: {int(size) / 1e6:.0f} MB on the server (indexes included)")
            return int(done.rowcount)
    finally:
        ledger.close()


def export_csv(base: str, path: Path) -> None:
    """Write the source table as a CSV file (the SQLite comparison's source), through COPY."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base).set(drivername="postgresql")
    sql = f"COPY ({QUERY.replace('bench_stats', SCHEMA + '.bench_stats')}) TO STDOUT WITH CSV HEADER"
    with (
        psycopg.connect(url.render_as_string(hide_password=False)) as conn,
        open(path, "wb") as out,
        conn.cursor().copy(sql) as copy,
    ):
        for block in copy:
            out.write(block)


def run_child(args: list[str]) -> tuple[float, float, str]:
    """Run a child process and reap it with ``wait4``: (seconds, peak RSS in MB, first output line)."""
    out_path = ROOT / "bench" / "out" / "pg_child.out"
    err_path = out_path.with_suffix(".err")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT)
        # wait4 reaps the child itself, so its rusage (ru_maxrss, in KB on Linux) is its own.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 2, 3):  # 3: held statistics (a plan exits as apply would)
        raise SystemExit(f"{' '.join(args[:4])} failed ({proc.returncode}): {err_path.read_text()[-2000:]}")
    lines = [line for line in out_path.read_text().splitlines() if not line.startswith("warning:")]
    return elapsed, usage.ru_maxrss / 1024, lines[0] if lines else ""


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="Keep the schema afterwards.")
    args = parser.parse_args()
    url = schema_url(args.url)
    work = ROOT / "bench" / "out"
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "pg_bench.yaml"
    config_path.write_text(stats_only_config(url, {"sql": {"url": url, "query": QUERY}}), "utf-8")

    t = time.perf_counter()
    setup(args.url, args.rows)
    print(f"source table: {args.rows:,} rows in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    filled = fill_ledger(config_path)
    print(
        f"first plan (all new), ledger filled with {filled:,} synced records: {time.perf_counter() - t:.1f} s"
    )

    # The same rows as a CSV file planned against an SQLite ledger filled the same way
    # (bench/plan_bench.py's set-up): the comparison the issue asks for, in the same run.
    csv_path = work / "pg_stats.csv"
    sqlite_path = work / "pg_sqlite.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
    sqlite_config = work / "pg_sqlite.yaml"
    sqlite_config.write_text(stats_only_config(f"sqlite:///{sqlite_path}", {"csv": csv_path.name}), "utf-8")
    t = time.perf_counter()
    export_csv(args.url, csv_path)
    python = sys.executable
    subprocess.run([python, str(ROOT / "bench" / "plan_bench.py"), "--fill", str(sqlite_config)], check=True)
    print(f"SQLite comparison: CSV export and ledger filled in {time.perf_counter() - t:.1f} s")

    stream_s, stream_mb, stream_line = run_child([python, "-c", STREAM, str(config_path)])
    fetch_s, fetch_mb, _ = run_child([python, "-c", FETCHALL, str(config_path)])
    plan = [python, "-m", "syncer", "plan", str(config_path)]
    sqlite_plan = [python, "-m", "syncer", "plan", str(sqlite_config)]
    loads = [os.getloadavg()[0]]
    same_s, same_mb, same_line = run_child(plan)
    lite_s, lite_mb, lite_line = run_child(sqlite_plan)
    change(args.url, 0.10)
    export_csv(args.url, csv_path)
    loads.append(os.getloadavg()[0])
    changed_s, changed_mb, changed_line = run_child(plan)
    lite_changed_s, lite_changed_mb, lite_changed_line = run_child(sqlite_plan)
    loads.append(os.getloadavg()[0])

    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        f" load {min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"source streamed (load_rows)      {stream_s:7.2f} s  peak {stream_mb:5.0f} MB  | {stream_line}")
    print(f"source fetched whole (contrast)  {fetch_s:7.2f} s  peak {fetch_mb:5.0f} MB")
    print(f"plan, nothing changed            {same_s:7.2f} s  peak {same_mb:5.0f} MB  | {same_line}")
    print(f"  SQLite ledger, CSV source      {lite_s:7.2f} s  peak {lite_mb:5.0f} MB  | {lite_line}")
    print(f"  PostgreSQL / SQLite            {same_s / lite_s:7.1f}x")
    print(f"plan, 10% changed                {changed_s:7.2f} s  peak {changed_mb:5.0f} MB  | {changed_line}")
    print(
        f"  SQLite ledger, CSV source      {lite_changed_s:7.2f} s  peak {lite_changed_mb:5.0f} MB"
        f"  | {lite_changed_line}"
    )
    print(f"  PostgreSQL / SQLite            {changed_s / lite_changed_s:7.1f}x")
    print("target (< 300 MB):", "met" if max(stream_mb, same_mb, changed_mb) < 300 else "NOT met")
    print("target (nothing changed, <= 3x SQLite):", "met" if same_s <= 3 * lite_s else "NOT met")
    if not args.keep:
        from sqlalchemy import create_engine, text

        engine = create_engine(args.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        engine.dispose()


if __name__ == "__main__":
    main()
