"""Benchmark of `syncer plan` with PostgreSQL everywhere (a benchmark, not a test).

    python bench/postgres_bench.py                  # 1,000,000 rows
    python bench/postgres_bench.py --rows 100000    # quicker
    python bench/postgres_bench.py --only incremental   # the incremental source's part alone
    python bench/postgres_bench.py --url postgresql+psycopg://user@host:5432/db

It creates a schema (``syncer_bench``, dropped first) on the server, fills a statistics table
of N rows there with ``generate_series`` (three statistics per learner, 2,000
courses), and points a config at it: the source is an SQL query on that table and the ledger
is the same schema. It records every statistic in the ledger as synced, then measures, each in
its own process (peak RSS from ``wait4``'s rusage, see ``PEAK``): streaming the source through
``sources.load_rows`` alone (the floor), the same query fetched whole by a client-side cursor
(the contrast), ``syncer plan`` with nothing changed and with 10% of the rows changed.
Target: peak RSS under 300 MB.

Then the incremental source (issue 19; ``--only incremental`` runs this part alone): the schema is
made again with an ``updated_at timestamptz`` column, indexed, on the same N rows (one minute
apart, all long past), read by a source with ``cursor: updated_at`` and ``overlap: 5m``. The
first plan (a full read) fills the ledger as above and its read's greatest ``updated_at`` is
recorded as the cursor, as apply records it. 1% of the rows then get a greater time spent and
``updated_at = now()``, and ``syncer plan`` (incremental) and ``syncer plan --full`` are measured,
twice each, alternately, each in its own process: with the source's ``url`` the ledger's own (a
full read is then digested on the server, ``plan/query.py``) and with another ``url`` (as a
source in another database: a full read maps every row). Each plan's JSON is checked: the rows
it read (its classified statistics) against the rows of its window counted on the server, and
its statistics to send plus those held against the rows written (the same in every plan).
Last, the incremental plan without the index on ``updated_at``, and EXPLAIN ANALYZE of the
window read and of the ``max(updated_at)`` high-water query with and without it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

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
               'YYYY-MM-DD"T"HH24:MI:SS".000Z"') AS finished{extra}
FROM generate_series(1::bigint, CAST(:rows AS bigint)) AS n
"""

# The incremental source (issue 19). Its rows were last written one minute apart, long ago: the
# recorded cursor is the last of them, and only the few rows of its last 5 minutes (the overlap)
# are read again besides the updated ones.
CURSOR_QUERY = "SELECT course_id, email, pct, seconds, started, finished, updated_at FROM bench_stats"
UPDATED_AT = ",\n       timestamptz '2024-01-01 00:00:00+00' + n * interval '1 minute' AS updated_at"
CURSOR_SHARE = 0.01
OTHER_URL = "application_name=syncer_bench_source"
"""Added to the source's url: no longer the ledger's string, it is read as a source in another
database would be (``plan/query.py`` ``in_ledger``), here over the same loopback connection."""

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


def setup(base: str, rows: int, *, cursor: bool = False) -> None:
    """(Re)create the schema and fill the source table, server-side (``cursor``: with an
    ``updated_at`` column and its index, for the incremental source)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        conn.execute(text(f"SET search_path = {SCHEMA}"))
        conn.execute(text(FILL.format(extra=UPDATED_AT if cursor else "")), {"rows": rows})
        if cursor:
            conn.execute(text("CREATE INDEX bench_stats_updated_at ON bench_stats (updated_at)"))
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
    from the plan's own staging table, in the plan's connection where that temporary table lives.
    An incremental source's cursor is then recorded where that (full) read ended, as apply's
    ``move_cursors`` records it."""
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
        for read in plan.reads:
            ledger.move_cursor(
                read.integration,
                read.kind.value,
                read.source,
                query_digest=read.query_digest,
                value=read.high,
                full=read.full,
            )
            print(f"cursor recorded: {read.column} = {read.high}")
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


CHILD_OUT = ROOT / "bench" / "out" / "pg_child.out"
"""The last child's standard output (``run_child``)."""

# A small go-between that starts the measured child and reaps it with wait4. Linux carries the
# memory high-water mark of the process that execs into the new program's ru_maxrss: a child
# started from this process (about 100 MB after its imports, more once it has filled a ledger)
# would report at least this process's peak, whatever its own. Started from the
# go-between (about 12 MB), the child's ru_maxrss is its own.
PEAK = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
elapsed = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {elapsed}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(args: list[str]) -> tuple[float, float, str]:
    """Run a child process through ``PEAK``: (seconds, peak RSS in MB, first output line)."""
    out_path = CHILD_OUT
    err_path = out_path.with_suffix(".err")
    peak_path = out_path.with_suffix(".peak")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", PEAK, str(peak_path), *args], stdout=out, stderr=err, cwd=ROOT
        )
        proc.wait()
    if proc.returncode not in (0, 2, 3):  # 3: held statistics (a plan exits as apply would)
        raise SystemExit(f"{' '.join(args[:4])} failed ({proc.returncode}): {err_path.read_text()[-2000:]}")
    kb, elapsed = peak_path.read_text().split()
    lines = [line for line in out_path.read_text().splitlines() if not line.startswith("warning:")]
    return float(elapsed), int(kb) / 1024, lines[0] if lines else ""


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="Keep the schema afterwards (the last part's).")
    parser.add_argument(
        "--only",
        choices=("plans", "incremental"),
        help="Run one part: the plans of an ordinary source (with the SQLite comparison), or the "
        "incremental source's (issue 19). Both by default.",
    )
    args = parser.parse_args()
    if args.only != "incremental":
        measure_plans(args)
    if args.only != "plans":
        measure_incremental(args)
    if not args.keep:
        from sqlalchemy import create_engine, text

        engine = create_engine(args.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        engine.dispose()


def measure_plans(args: argparse.Namespace) -> None:
    """Plans of an ordinary SQL source in the ledger's database, and of the same rows as CSV on SQLite."""
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


def measure_incremental(args: argparse.Namespace) -> None:
    """Plans of an incremental source (``cursor: updated_at``) after 1% of its rows were written,
    against full reads of it, in the ledger's database and as if in another (issue 19)."""
    from syncer.config import Window, load_config

    url = schema_url(args.url)
    work = ROOT / "bench" / "out"
    work.mkdir(parents=True, exist_ok=True)
    source: dict[str, Any] = {"url": url, "query": CURSOR_QUERY, "cursor": "updated_at", "overlap": "5m"}
    same_config = work / "pg_incremental.yaml"
    same_config.write_text(stats_only_config(url, {"sql": source}), "utf-8")
    other_config = work / "pg_incremental_other.yaml"
    other_source = {**source, "url": f"{url}&{OTHER_URL}"}
    other_config.write_text(stats_only_config(url, {"sql": other_source}), "utf-8")

    t = time.perf_counter()
    setup(args.url, args.rows, cursor=True)
    print(
        f"incremental source table: {args.rows:,} rows, indexed on updated_at,"
        f" in {time.perf_counter() - t:.1f} s"
    )
    t = time.perf_counter()
    filled = fill_ledger(same_config)
    print(
        f"first plan (a full read), ledger filled with {filled:,} synced records:"
        f" {time.perf_counter() - t:.1f} s"
    )
    written = write_share(args.url, CURSOR_SHARE)
    print(f"{written:,} rows written ({CURSOR_SHARE:.0%}): a greater time spent, updated_at = now()")

    python = sys.executable
    commands = {
        (where, full): [python, "-m", "syncer", "plan", *(["--full"] if full else []), str(config)]
        for where, config in (("ledger's database", same_config), ("elsewhere", other_config))
        for full in (False, True)
    }
    results: dict[tuple[str, bool], list[tuple[float, float, dict[str, Any]]]] = {key: [] for key in commands}
    load_before = Path("/proc/loadavg").read_text().strip()
    for _round in range(2):  # alternately: the ratios of each round are measured side by side
        for key, command in commands.items():
            results[key].append(run_plan(command))
    load_after = Path("/proc/loadavg").read_text().strip()

    window = reads_window(results[("ledger's database", False)][0][2])
    source_config = load_config(same_config).sources["progress"]
    explained = explain(args.url, source_config, Window("updated_at", *window))
    drop_index(args.url)
    no_index = run_plan(commands[("ledger's database", False)])
    explained_without = explain(args.url, source_config, Window("updated_at", *window))
    in_window = count_window(args.url, *window)

    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"/proc/loadavg before: {load_before}; after: {load_after}"
    )
    print(f"the incremental reads' window: updated_at from {window[0]} up to {window[1]}, {in_window:,} rows")
    print(
        f"{'plan, source':44} {'time, rounds 1 and 2':>21} {'peak RSS':>9} {'rows read':>10} {'to send':>8}"
        f" {'held':>5}"
    )
    rows = [
        (f"{'--full' if full else 'incremental'}, {where}", full, runs)
        for (where, full), runs in results.items()
    ]
    rows.append(("incremental, ledger's db, no index", False, [no_index]))
    outcome = (to_send(no_index[2]), no_index[2]["held_total"])
    for name, full, runs in rows:
        times = "  ".join(f"{seconds:7.2f} s" for seconds, _, _ in runs)
        data = runs[0][2]
        print(
            f"{name:44} {times:>21} {max(mb for _, mb, _ in runs):6.0f} MB {rows_read(data):>10,}"
            f" {to_send(data):>8,} {data['held_total']:>5,}"
        )
        for _, _, data in runs:
            # Every written row is to send or held (a completed attempt given more time would
            # open a second one: docs/attempts.md), and every read of them finds the same.
            checks = {
                "rows read": rows_read(data) == (args.rows if full else in_window),
                "written rows": to_send(data) + data["held_total"] == written,
                "same outcome": (to_send(data), data["held_total"]) == outcome,
                "read": [r["full"] for r in data["reads"]] == [full],
            }
            if not all(checks.values()):
                failed = ", ".join(k for k, ok in checks.items() if not ok)
                print(f"  CHECK FAILED ({failed}): {data['integrations']}, reads {data['reads']}")
    for where in ("ledger's database", "elsewhere"):
        pairs = zip(results[(where, False)], results[(where, True)], strict=True)
        ratios = "  ".join(f"{incremental[0] / full[0]:.3f}" for incremental, full in pairs)
        print(f"incremental / full time, source in {where}: {ratios} (rounds 1 and 2)")
    print("EXPLAIN ANALYZE on the server, with the index on updated_at and without:")
    for what, with_index in explained.items():
        print(f"  {what:18} {with_index}")
        print(f"  {'':18} {explained_without[what]}")


def write_share(base: str, share: float) -> int:
    """Write a share of the incremental source's rows as an application would: a greater time
    spent (and progress, up to 100), ``updated_at = now()``. Returns how many."""
    from sqlalchemy import create_engine, text

    step = max(1, int(1 / share))
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        done = conn.execute(
            text(
                f"UPDATE {SCHEMA}.bench_stats SET seconds = seconds + 60, pct = least(pct + 1, 100), "
                "updated_at = now() WHERE n % :s = 0"
            ),
            {"s": step},
        )
        conn.execute(text(f"ANALYZE {SCHEMA}.bench_stats"))
    engine.dispose()
    return int(done.rowcount)


def run_plan(command: list[str]) -> tuple[float, float, dict[str, Any]]:
    """``run_child`` of a plan in JSON: (seconds, peak RSS in MB, the plan's data)."""
    import orjson

    seconds, mb, _ = run_child([*command, "--format", "json"])
    return seconds, mb, orjson.loads(CHILD_OUT.read_bytes())


def rows_read(data: dict[str, Any]) -> int:
    """The source rows a plan read: every statistic it classified, and its invalid rows."""
    (integration,) = data["integrations"]
    return int(sum(integration["stats"].values()) + integration["invalid"])


def to_send(data: dict[str, Any]) -> int:
    """The statistics a plan would send."""
    (integration,) = data["integrations"]
    stats = integration["stats"]
    return int(stats["new"] + stats["changed"] + stats["resend"] + stats["retry"])


def reads_window(data: dict[str, Any]) -> tuple[datetime, datetime]:
    """The bounds of a plan's incremental read (its JSON's ``reads``)."""
    (read,) = data["reads"]
    return datetime.fromisoformat(read["since"]), datetime.fromisoformat(read["upto"])


def count_window(base: str, since: datetime, upto: datetime) -> int:
    """The source rows from ``since`` up to ``upto``, counted on the server."""
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.connect() as conn:
        sql = f"SELECT count(*) FROM {SCHEMA}.bench_stats WHERE updated_at >= :since AND updated_at <= :upto"
        count = conn.execute(text(sql), {"since": since, "upto": upto}).scalar_one()
    engine.dispose()
    return int(count)


def drop_index(base: str) -> None:
    """Drop the index on the cursor column (the contrast)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP INDEX {SCHEMA}.bench_stats_updated_at"))
        conn.execute(text(f"ANALYZE {SCHEMA}.bench_stats"))
    engine.dispose()


def explain(base: str, source: Any, window: Any) -> dict[str, str]:
    """EXPLAIN ANALYZE of an incremental read's two statements, as syncer words them: the
    high-water query (``readers.high_water``) and the windowed read (``readers.windowed``)."""
    from dataclasses import replace

    import orjson
    from sqlalchemy import create_engine, text

    from syncer.sources.readers import windowed

    engine = create_engine(schema_url(base))
    out = {}
    with engine.connect() as conn:
        query = source.query.strip().rstrip(";").strip()
        high = f"SELECT max(syncer_window.updated_at) FROM ({query}) AS syncer_window"  # as high_water's
        read, params = windowed(conn, replace(source, window=window))
        statements = {
            "high water": (
                f"{high} WHERE syncer_window.updated_at >= :syncer_since",
                {"syncer_since": window.since},
            ),
            "high water (full)": (high, {}),
            "windowed read": (read, params),
        }
        for what, (sql, bound) in statements.items():
            raw = conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), bound).scalar_one()
            (top,) = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
            out[what] = f"{' > '.join(_nodes(top['Plan']))}: {top['Execution Time']:.2f} ms"
    engine.dispose()
    return out


def _nodes(node: dict[str, Any]) -> list[str]:
    name = node["Node Type"] + (f" on {node['Index Name']}" if "Index Name" in node else "")
    return [name + (" Backward" if node.get("Scan Direction") == "Backward" else "")] + [
        step for child in node.get("Plans", []) for step in _nodes(child)
    ]


if __name__ == "__main__":
    main()
