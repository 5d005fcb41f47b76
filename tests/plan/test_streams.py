"""Staging rows: Mapper.stage agrees with Mapper.map, and worker processes change nothing but speed."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.config import (
    FieldSpec,
    FilterOp,
    FilterSpec,
    IntegrationConfig,
    ObjectConfig,
    SourceConfig,
    SourceKind,
)
from syncer.errors import SourceError
from syncer.mapping import build_checker, build_mapper, load_api_validator, map_source
from syncer.models import InvalidRow, Record, RecordKind, content_hash, stat_group, stat_key
from syncer.plan import streams as staging
from syncer.plan.streams import stage_runs, stage_source

ACME = IntegrationConfig(name="acme", id="507f1f77bcf86cd799439011")
STATS = ObjectConfig(
    source="progress",
    fields=(
        FieldSpec("course", column="course_id", identifier="externalId"),
        FieldSpec("user", column="email", identifier="mail"),
        FieldSpec("progress", column="pct", scale=100),
        FieldSpec("timeSpent", column="seconds", unit="s"),
        FieldSpec("firstActivityAt", column="started"),
        FieldSpec("lastActivityAt", column="finished", format="%d/%m/%Y %H:%M", timezone="Europe/Paris"),
    ),
    filters=(FilterSpec("status", FilterOp.NOT_EQUALS, "deleted"),),
)
COURSES = ObjectConfig(
    source="catalog",
    fields=(
        FieldSpec("externalId", column="id"),
        FieldSpec("name", column="title"),
        FieldSpec("launchUrl", template="https://acme.example/{id}"),
        FieldSpec("defaultLang", value="en", has_value=True),
        FieldSpec("sources", value=[{"name": "Acme"}], has_value=True),
        FieldSpec("subjects", column="tags", split="|"),
    ),
)
HEADER = "course_id,email,pct,seconds,started,finished,status\n"


def stat_line(i: int) -> str:
    """Mostly valid rows; some invalid, some filtered out, some with a non-API date-time form."""
    pct = "2" if i % 17 == 0 else "0.5"  # 200 > 100: invalid
    status = "deleted" if i % 13 == 0 else "ok"
    started = "2024-03-01T10:00:00.000Z" if i % 2 else f"2024-03-01 10:{i % 60:02}:00+01:00"
    return f"C{i % 7},User{i}@x.io ,{pct},{i + 1},{started},01/03/2024 12:00,{status}\n"


def csv_source(tmp_path: Path, rows: int) -> SourceConfig:
    path = tmp_path / "progress.csv"
    path.write_text(HEADER + "".join(stat_line(i) for i in range(rows)), encoding="utf-8")
    return SourceConfig("progress", SourceKind.CSV, path=path)


def as_staged(item: Record | InvalidRow) -> Any:
    if isinstance(item, InvalidRow):
        return item
    return (item.key, item.hash, dict(item.payload), item.origin, item.group, item.order, item.activity, None)


def normalised(items: list[Any]) -> list[Any]:
    return [
        item if isinstance(item, InvalidRow) else (*item[:2], orjson.loads(item[2]), *item[3:])
        for item in items
    ]


@pytest.fixture
def in_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file source is mapped in worker processes, in small chunks (many messages)."""
    monkeypatch.setattr(staging, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(staging, "_CHUNK", 7)
    monkeypatch.setattr(staging.os, "cpu_count", lambda: 4)  # three workers: round-robin is tested


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "PARALLEL_MIN_BYTES", 1 << 62)


def test_stage_matches_map_row_for_row(tmp_path: Path, inline: None) -> None:
    source = csv_source(tmp_path, 60)
    staged = normalised(list(stage_source(ACME, RecordKind.STAT, STATS, source)))
    mapped = [as_staged(item) for item in map_source(ACME, RecordKind.STAT, STATS, source)]
    assert staged == mapped
    assert any(isinstance(item, InvalidRow) for item in staged)
    assert len(staged) < 60  # filtered rows are dropped


def test_stage_hash_key_and_group_are_the_shared_ones(tmp_path: Path, inline: None) -> None:
    source = csv_source(tmp_path, 4)
    for item in stage_source(ACME, RecordKind.STAT, STATS, source):
        if isinstance(item, InvalidRow):
            continue
        key, hash_, text, _origin, group, first, _activity, _digest = item
        payload = orjson.loads(text)
        course, user = payload["courseIdentifier"], payload["userIdentifier"]
        assert hash_ == content_hash(payload)
        assert key == stat_key(course, user, first)
        assert group == stat_group(course, user)


def test_stage_of_courses(tmp_path: Path, inline: None) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text("id,title,tags\nc1,Intro,a|b\nc2,,\n", encoding="utf-8")
    source = SourceConfig("catalog", SourceKind.CSV, path=path)
    first, second = stage_source(ACME, RecordKind.COURSE, COURSES, source)
    assert first[:1] == ("c1",) and first[3:] == ("catalog.csv:2", "", "", "", None)
    assert isinstance(second, InvalidRow) and second.key == "c2" and second.field == "name"


@pytest.mark.parametrize("rows", [0, 1, 7, 21, 22, 100], ids=lambda n: f"{n}-rows")
def test_workers_give_the_same_stream_in_the_same_order(tmp_path: Path, rows: int, in_workers: None) -> None:
    source = csv_source(tmp_path, rows)
    in_parallel = list(stage_source(ACME, RecordKind.STAT, STATS, source))
    mapper = build_mapper(ACME, RecordKind.STAT, STATS)
    alone = list(staging._staged(mapper, source))
    assert in_parallel == alone
    assert not multiprocessing.active_children()


def flattened(runs: list[Any]) -> list[Any]:
    out: list[Any] = []
    for run in runs:
        if isinstance(run, list):
            assert run, "runs are never empty"
            assert all(type(item) is tuple for item in run)
            out.extend(run)
        else:
            assert isinstance(run, InvalidRow)
            out.append(run)
    return out


@pytest.mark.parametrize("rows", [0, 1, 7, 21, 22, 100], ids=lambda n: f"{n}-rows")
def test_runs_in_workers_are_the_same_stream(tmp_path: Path, rows: int, in_workers: None) -> None:
    source = csv_source(tmp_path, rows)
    runs = list(stage_runs(ACME, RecordKind.STAT, STATS, source))
    alone = list(staging._staged(build_mapper(ACME, RecordKind.STAT, STATS), source))
    assert flattened(runs) == alone
    if rows >= 22:  # chunks of 7 source rows: several runs, some cut by an invalid row
        assert sum(isinstance(run, list) for run in runs) > 2
        assert any(isinstance(run, InvalidRow) for run in runs)
    assert not multiprocessing.active_children()


def test_runs_in_process_are_the_same_stream(
    tmp_path: Path, inline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "_CHUNK", 5)  # long runs are cut: the planner gets bounded lists
    source = csv_source(tmp_path, 100)
    runs = list(stage_runs(ACME, RecordKind.STAT, STATS, source))
    assert flattened(runs) == list(stage_source(ACME, RecordKind.STAT, STATS, source))
    assert max(len(run) for run in runs if isinstance(run, list)) == 5


def test_workers_read_json_lines_too(tmp_path: Path, in_workers: None) -> None:
    path = tmp_path / "progress.jsonl"
    lines = []
    for i in range(40):
        lines.append(
            orjson.dumps(
                {
                    "course_id": f"C{i}",
                    "email": "a@x.io",
                    "pct": 0.5,
                    "seconds": 3,
                    "status": "ok",
                    "started": "2024-03-01T10:00:00.000Z",
                    "finished": "01/03/2024 12:00",
                }
            ).decode()
        )
        if i % 9 == 0:
            lines.append("")  # blank lines do not count as rows
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = SourceConfig("progress", SourceKind.JSONL, path=path)
    out = list(stage_source(ACME, RecordKind.STAT, STATS, source))
    assert [o[3] for o in out] == [f"progress.jsonl:{n}" for n, line in enumerate(lines, 1) if line]


def test_a_bad_row_in_a_worker_is_the_same_source_error(tmp_path: Path, in_workers: None) -> None:
    text = HEADER + "".join(stat_line(i) for i in range(30)) + "C1,only,three\n" + stat_line(31)
    path = tmp_path / "progress.csv"
    path.write_text(text, encoding="utf-8")
    source = SourceConfig("progress", SourceKind.CSV, path=path)
    with pytest.raises(SourceError, match=r"progress\.csv:32: 3 values, but the header has 7 columns"):
        list(stage_source(ACME, RecordKind.STAT, STATS, source))
    assert not multiprocessing.active_children()


def test_stopping_early_stops_the_workers(tmp_path: Path, in_workers: None) -> None:
    source = csv_source(tmp_path, 500)
    stream = stage_source(ACME, RecordKind.STAT, STATS, source)
    next(iter(stream))
    assert len(multiprocessing.active_children()) == 3
    stream.close()  # type: ignore[attr-defined]
    assert not multiprocessing.active_children()


def test_small_and_sql_sources_stay_in_process(tmp_path: Path) -> None:
    source = csv_source(tmp_path, 3)
    assert not staging._parallel(source)
    assert not staging._parallel(SourceConfig("lms", SourceKind.SQL, query="SELECT 1"))
    assert not staging._parallel(SourceConfig("gone", SourceKind.CSV, path=tmp_path / "nope.csv"))


def test_checker_trusts_only_what_it_is_told() -> None:
    schema = load_api_validator(RecordKind.STAT).schema
    item = {
        "courseIdentifier": {"type": "externalId", "value": "c1"},
        "userIdentifier": {"type": "mail", "value": "a@x.io"},
        "progress": 50,
        "timeSpent": 10,
        "firstActivityAt": "yesterday",
        "lastActivityAt": "yesterday",
    }
    full = build_checker(schema)
    assert full(item) == ("firstActivityAt", "'yesterday' is not a 'date-time'")
    trusting = build_checker(schema, trusted={"firstActivityAt"})
    assert trusting(item) == ("lastActivityAt", "'yesterday' is not a 'date-time'")
    assert build_checker(schema, trusted={"firstActivityAt", "lastActivityAt"})(item) is None
    fields = set(item)
    present = build_checker(schema, present=fields)
    assert present({**item, "score": 500}) == ("firstActivityAt", "'yesterday' is not a 'date-time'")
    assert full({**item, "score": 500}) == ("score", "500 is greater than the maximum of 100")
    assert present({**item, "progress": "50"}) == ("progress", "'50' is not of type 'number'")


def test_the_planner_takes_runs_as_it_takes_items(tmp_path: Path, in_workers: None) -> None:
    from syncer.ledger import Ledger
    from syncer.plan import Desired, plan_records

    source = csv_source(tmp_path, 100)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        plans = []
        for items in (
            stage_runs(ACME, RecordKind.STAT, STATS, source),
            stage_source(ACME, RecordKind.STAT, STATS, source),
        ):
            with plan_records(ledger, [Desired("acme", RecordKind.STAT, items)]) as plan:
                batches = [
                    (op, [(r.key, r.hash, r.origin) for r in batch]) for op, batch in plan.batches("acme")
                ]
                plans.append((plan.summary("acme"), [i.origin for i in plan.invalid_rows], batches))
        assert plans[0] == plans[1]
        summary, invalid, batches = plans[0]
        assert summary.stats.new > 50 and invalid and batches
    finally:
        ledger.close()
