"""Cursor values of incremental SQL sources: storage, where a read starts, and the windowed query.

``encode``/``decode`` must give back the very value (and type) the source's column held, since
the next run binds it against that column; ``start`` takes the overlap off each kind of value;
``windowed`` and ``high_water`` run on a real SQLite file, with cursor columns whose names need
quoting. The ledger's ``move_cursor`` (never backwards but on a full read) is checked on a
real SQLite ledger too.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine

from syncer.config import Secret, SourceConfig, SourceKind, Window
from syncer.errors import SourceError
from syncer.ledger import Ledger
from syncer.models import RecordKind
from syncer.plan.reads import Read, reads_from_data
from syncer.sources import load_rows
from syncer.sources.incremental import DEFAULT_OVERLAP, check_value, decode, encode, shown, start
from syncer.sources.readers import full_read_facts, high_water, windowed

WHERE = "syncer.yaml:7:5"


def source(
    overlap: Any = None, *, cursor: str = "updated_at", url: str = "sqlite://", query: str = "SELECT 1"
) -> SourceConfig:
    return SourceConfig(
        "progress", SourceKind.SQL, url=Secret(url), query=query, where=WHERE, cursor=cursor, overlap=overlap
    )


# -- encode / decode ----------------------------------------------------------------------------

ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
CURSORS = st.one_of(
    st.datetimes(timezones=ZONES),
    st.dates(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(),
)


@given(CURSORS)
def test_a_cursor_value_comes_back_as_it_was(value: Any) -> None:
    back = decode(encode(value))
    assert type(back) is type(value)
    assert back == value
    if isinstance(value, datetime):
        assert back.utcoffset() == value.utcoffset()  # the zone kept, not only the instant
    if isinstance(value, Decimal):
        assert str(back) == str(value)  # its exponent too (1.50 stays 1.50)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        pytest.param(
            datetime(2025, 6, 1, 10, 0, tzinfo=UTC),
            '{"type":"datetime","value":"2025-06-01T10:00:00+00:00"}',
            id="datetime",
        ),
        pytest.param(date(2025, 6, 1), '{"type":"date","value":"2025-06-01"}', id="date"),
        pytest.param(12, '{"type":"int","value":"12"}', id="int"),
        pytest.param(0.1, '{"type":"float","value":"0.1"}', id="float"),
        pytest.param(Decimal("1.50"), '{"type":"decimal","value":"1.50"}', id="decimal"),
        pytest.param("2025-06-01 10:00:00", '{"type":"str","value":"2025-06-01 10:00:00"}', id="text"),
    ],
)
def test_the_stored_form_names_the_type(value: Any, stored: str) -> None:
    assert encode(value) == stored


@pytest.mark.parametrize("value", [True, None, b"\x00", [1]], ids=["bool", "none", "bytes", "list"])
def test_what_cannot_be_a_cursor(value: Any) -> None:
    with pytest.raises(TypeError):
        encode(value)
    with pytest.raises(SourceError) as caught:
        check_value(source(), value)
    message = str(caught.value)
    assert message.startswith(
        f"source 'progress': cursor column 'updated_at' holds {type(value).__name__} values"
    )
    assert message.endswith(f"(source 'progress' declared at {WHERE})")


def test_shown() -> None:
    assert shown(None) == "(none)"
    assert shown(datetime(2025, 6, 1, 10, 0, tzinfo=UTC)) == "2025-06-01T10:00:00+00:00"
    assert shown(date(2025, 6, 1)) == "2025-06-01"
    assert shown(Decimal("7.0")) == "7.0"


# -- start: the recorded value less the overlap --------------------------------------------------

MOMENT = datetime(2025, 6, 1, 10, 0)


@pytest.mark.parametrize(
    ("stored", "overlap", "expected"),
    [
        pytest.param(MOMENT, None, MOMENT - DEFAULT_OVERLAP, id="datetime-default-5m"),
        pytest.param(
            MOMENT.replace(tzinfo=UTC),
            timedelta(hours=2),
            datetime(2025, 6, 1, 8, 0, tzinfo=UTC),
            id="datetime-aware",
        ),
        pytest.param(MOMENT, timedelta(0), MOMENT, id="datetime-0s"),
        pytest.param(MOMENT, 0, MOMENT, id="datetime-number-0"),
        pytest.param(date(2025, 6, 1), None, date(2025, 5, 31), id="date-default-goes-back-a-day"),
        pytest.param(date(2025, 6, 1), timedelta(days=2), date(2025, 5, 30), id="date-2d"),
        pytest.param(date(2025, 6, 1), timedelta(hours=36), date(2025, 5, 30), id="date-36h"),
        pytest.param(date(2025, 6, 1), timedelta(0), date(2025, 6, 1), id="date-0s"),
        pytest.param("2025-06-01", timedelta(hours=36), "2025-05-30", id="text-date-36h"),
        pytest.param("2025-06-01 10:00:00", None, "2025-06-01 09:55:00", id="text-space"),
        pytest.param("2025-06-01T10:00:00", timedelta(hours=1), "2025-06-01T09:00:00", id="text-T"),
        pytest.param(
            "2025-06-01T10:00:00.250000", timedelta(seconds=30), "2025-06-01T09:59:30.250000", id="text-micro"
        ),
        pytest.param("2025-06-01T10:00:00+02:00", None, "2025-06-01T09:55:00+02:00", id="text-offset"),
        pytest.param("2025-06-01", None, "2025-05-31", id="text-date"),
        pytest.param("2025-06-01 10:00:00", 0, "2025-06-01 10:00:00", id="text-number-0"),
        pytest.param("A-000123", None, "A-000123", id="text-not-a-date"),
        pytest.param("A-000123", timedelta(0), "A-000123", id="text-not-a-date-0s"),
        pytest.param(1000, None, 1000, id="int-default-0"),
        pytest.param(1000, 50, 950, id="int"),
        pytest.param(1000, 2.0, 998, id="int-whole-float-stays-int"),
        pytest.param(1000, 2.5, 997.5, id="int-fraction"),
        pytest.param(1000, timedelta(0), 1000, id="int-0s"),
        pytest.param(10.5, 0.5, 10.0, id="float"),
        pytest.param(Decimal("10.50"), 0.1, Decimal("10.40"), id="decimal"),
    ],
)
def test_start(stored: Any, overlap: Any, expected: Any) -> None:
    got = start(source(overlap), stored)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("stored", "overlap", "says"),
    [
        pytest.param(
            1000, timedelta(minutes=5), "holds numbers, but overlap is a duration", id="number-duration"
        ),
        pytest.param(
            Decimal(5),
            timedelta(seconds=1),
            "holds numbers, but overlap is a duration",
            id="decimal-duration",
        ),
        pytest.param(MOMENT, 300, "holds date-times, but overlap is a number", id="datetime-number"),
        pytest.param(date(2025, 6, 1), 1, "holds date-times, but overlap is a number", id="date-number"),
        pytest.param(
            "2025-06-01 10:00:00", 5, "holds date-times, but overlap is a number", id="iso-text-number"
        ),
        pytest.param(
            "A-000123",
            timedelta(minutes=5),
            "holds text that is not an ISO date-time ('A-000123')",
            id="text",
        ),
        pytest.param("A-000123", 5, "holds text that is not an ISO date-time", id="text-number"),
    ],
)
def test_start_refuses_an_overlap_of_the_other_kind(stored: Any, overlap: Any, says: str) -> None:
    with pytest.raises(SourceError) as caught:
        start(source(overlap), stored)
    message = str(caught.value)
    assert message.startswith(f"source 'progress': cursor column 'updated_at' {says}")
    assert message.endswith(f"(source 'progress' declared at {WHERE})")


SECONDS = st.integers(min_value=0, max_value=40 * 86400).map(lambda s: timedelta(seconds=s))
MOMENTS = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)


@given(
    stored=MOMENTS,
    row=MOMENTS,
    overlap=SECONDS,
    sep=st.sampled_from("T "),
    zone=st.sampled_from(["", "Z", "+02:00"]),
)
def test_text_cursors_compare_as_their_moments(
    stored: datetime, row: datetime, overlap: timedelta, sep: str, zone: str
) -> None:
    """The database compares text: a row's text is at least the start's text exactly when its
    moment is at least the recorded moment less the overlap (rows written in one format)."""

    def text(moment: datetime) -> str:
        return moment.isoformat(sep=sep) + zone

    since = start(source(overlap), text(stored))
    assert isinstance(since, str)
    assert (text(row) >= since) == (row >= stored - overlap)


# -- windowed and high_water on SQLite ------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    """A SQLite file whose table has cursor columns named ``updated at`` (text) and ``order`` (int)."""
    path = tmp_path / "warehouse.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute('CREATE TABLE t (id INTEGER, "updated at" TEXT, "order" INTEGER)')
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(n, f"2025-06-01 10:{n:02d}:00", 100 + n) for n in range(10)],
        )
    return f"sqlite:///{path}"


QUERY = 'SELECT id, "updated at", "order" FROM t ORDER BY id;'


def ids(src: SourceConfig) -> list[int]:
    return [int(row.values["id"]) for row in load_rows(src)]


@pytest.mark.parametrize(
    ("column", "since", "upto", "expected"),
    [
        pytest.param(
            "updated at", "2025-06-01 10:03:00", "2025-06-01 10:06:00", [3, 4, 5, 6], id="text-both"
        ),
        pytest.param("updated at", "2025-06-01 10:07:00", None, [7, 8, 9], id="text-since"),
        pytest.param("updated at", None, "2025-06-01 10:01:00", [0, 1], id="text-upto"),
        pytest.param("order", 105, 106, [5, 6], id="keyword-int"),
        pytest.param("order", 109, None, [9], id="keyword-since"),
        pytest.param("order", None, None, list(range(10)), id="no-bounds"),
    ],
)
def test_windowed_reads_the_window(
    warehouse: str, column: str, since: Any, upto: Any, expected: list[int]
) -> None:
    src = source(cursor=column, url=warehouse, query=QUERY)
    windowed_source = SourceConfig(**{**src.__dict__, "window": Window(column, since, upto)})
    assert ids(windowed_source) == expected


def test_windowed_sql_quotes_the_column(warehouse: str) -> None:
    src = source(cursor="order", url=warehouse, query=QUERY + "\n")
    engine = create_engine(warehouse)
    try:
        with engine.connect() as conn:
            bare = windowed(conn, src)
            sql, params = windowed(conn, SourceConfig(**{**src.__dict__, "window": Window("order", 3, 7)}))
    finally:
        engine.dispose()
    assert bare == (QUERY.rstrip(";"), {})  # no window: the query as it is, without its ;
    assert sql == (
        f"SELECT * FROM (\n{QUERY.rstrip(';')}\n) AS syncer_window "
        'WHERE syncer_window."order" >= :syncer_since AND syncer_window."order" <= :syncer_upto'
    )
    assert params == {"syncer_since": 3, "syncer_upto": 7}


def test_a_query_ending_in_a_comment_is_windowed(warehouse: str) -> None:
    query = 'SELECT id, "updated at", "order" FROM t\n-- the whole table'
    src = source(cursor="order", url=warehouse, query=query)
    assert ids(SourceConfig(**{**src.__dict__, "window": Window("order", 108, None)})) == [8, 9]
    assert high_water(src) == 109


@pytest.mark.parametrize(
    "query",
    [
        'SELECT id, "updated at", "order" FROM t; -- the whole table',
        'SELECT id, "updated at", "order" FROM t;\n-- the whole table\n-- (every row)\n',
        'SELECT id, "updated at", "order" FROM t -- the whole table',
    ],
)
def test_a_final_semicolon_before_a_comment_is_dropped(warehouse: str, query: str) -> None:
    src = source(cursor="order", url=warehouse, query=query)
    assert ids(SourceConfig(**{**src.__dict__, "window": Window("order", 108, None)})) == [8, 9]
    assert high_water(src) == 109 and full_read_facts(src) == (109, 0)


def test_a_colon_in_a_literal_is_no_parameter(warehouse: str) -> None:
    # text() takes ":name" for a bind parameter, even inside a literal: escaped, it is the query's.
    query = """SELECT id, "order", 'at :noon' AS note, 'a::b' AS cast FROM t WHERE 'x :y' <> ''"""
    src = source(cursor="order", url=warehouse, query=query)
    assert {(row.values["note"], row.values["cast"]) for row in load_rows(src)} == {("at :noon", "a::b")}
    assert ids(SourceConfig(**{**src.__dict__, "window": Window("order", 108, None)})) == [8, 9]
    assert high_water(src, 105) == 109


def test_high_water(warehouse: str, tmp_path: Path) -> None:
    assert high_water(source(cursor="updated at", url=warehouse, query=QUERY)) == "2025-06-01 10:09:00"
    assert high_water(source(cursor="order", url=warehouse, query=QUERY), 105) == 109
    assert high_water(source(cursor="order", url=warehouse, query=QUERY), 110) is None  # no row from there
    empty = 'SELECT id, "order" FROM t WHERE id < 0'
    assert high_water(source(cursor="order", url=warehouse, query=empty)) is None


def test_high_water_of_a_column_the_query_lacks(warehouse: str) -> None:
    with pytest.raises(SourceError) as caught:
        high_water(source(cursor="changed_at", url=warehouse, query=QUERY))
    message = str(caught.value)
    assert "progress" in message and "changed_at" in message
    assert message.endswith("(is cursor: changed_at a column of the query's result?)")


# -- plan files keep each read with its types -----------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "since", "high"),
    [
        (
            datetime(2025, 6, 1, 10, tzinfo=UTC),
            datetime(2025, 6, 1, 9, 55, tzinfo=UTC),
            datetime(2025, 6, 2, tzinfo=UTC),
        ),
        (date(2025, 6, 1), date(2025, 5, 31), date(2025, 6, 3)),
        (1000, 950, 1200),
        (Decimal("1.50"), Decimal("1.40"), Decimal("2.00")),
        ("2025-06-01 10:00:00", "2025-06-01 09:55:00", "2025-06-01 11:00:00"),
    ],
    ids=["datetime", "date", "int", "decimal", "text"],
)
def test_a_read_survives_a_plan_file(stored: Any, since: Any, high: Any) -> None:
    read = Read("acme", RecordKind.STAT, "progress", "updated_at", False, "", stored, since, high, "d" * 64)
    full = Read(
        "acme", RecordKind.COURSE, "catalog", "updated_at", True, "--full", None, None, None, "e" * 64
    )
    back = reads_from_data([read.data(), full.data()])
    assert back == {("acme", RecordKind.STAT): read, ("acme", RecordKind.COURSE): full}
    assert type(back[("acme", RecordKind.STAT)].since) is type(since)
    assert back[("acme", RecordKind.STAT)].window == Window("updated_at", since, high)
    assert back[("acme", RecordKind.COURSE)].window is None


# -- the ledger's cursors -------------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def test_a_cursor_moves_forward_only_but_on_a_full_read(ledger: Ledger) -> None:
    def move(value: Any, *, full: bool = False, digest: str = "q1") -> bool:
        return ledger.move_cursor(
            "acme", "stat", "progress", query_digest=digest, value=value, full=full, run_id=7
        )

    assert ledger.cursor_of("acme", "stat", "progress") is None
    assert move(100, full=True)
    first = ledger.cursor_of("acme", "stat", "progress")
    assert first is not None and (first.value, first.query_digest) == (100, "q1")
    assert first.full_read_at is not None
    generation = ledger.generation(["acme"])

    assert not move(90)  # an incremental read never takes it back
    assert not move(100)  # nor moves it to where it is
    assert not move(None)  # a read that found nothing past it
    assert ledger.generation(["acme"]) == generation  # nothing written, no plan made stale
    assert move(150)
    moved = ledger.cursor_of("acme", "stat", "progress")
    assert moved is not None and moved.value == 150
    assert moved.full_read_at == first.full_read_at  # an incremental read keeps the last full one
    assert ledger.generation(["acme"]) == generation + 1  # a saved plan from 100 is stale
    assert ledger.generation(["beta"]) == 0

    assert move(20, full=True)  # rows deleted: a full read starts over
    assert move(10, digest="q2")  # read for another query
    assert move(None, full=True)  # the source is empty now
    last = ledger.cursor_of("acme", "stat", "progress")
    assert last is not None and last.value is None
    # Per integration, kind and source.
    assert ledger.cursor_of("acme", "course", "progress") is None
    assert [(c.integration, c.kind, c.source) for c in ledger.cursors()] == [("acme", "stat", "progress")]


def test_a_cursor_whose_type_changed_is_taken(ledger: Ledger) -> None:
    ledger.move_cursor("acme", "stat", "progress", query_digest="q", value="2025-06-01 10:00:00", full=True)
    later = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    assert ledger.move_cursor("acme", "stat", "progress", query_digest="q", value=later, full=False)
    held = ledger.cursor_of("acme", "stat", "progress")
    assert held is not None and held.value == later
