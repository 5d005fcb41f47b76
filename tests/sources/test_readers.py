"""Sources: CSV, JSON Lines and SQL rows with their origins, and located errors."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from syncer.config import Secret, SourceConfig, SourceKind
from syncer.errors import SourceError
from syncer.sources import load_columns, load_rows


def csv_source(path: Path, **kw: object) -> SourceConfig:
    return SourceConfig(name="catalog", kind=SourceKind.CSV, path=path, **kw)  # type: ignore[arg-type]


def jsonl_source(path: Path, **kw: object) -> SourceConfig:
    return SourceConfig(name="events", kind=SourceKind.JSONL, path=path, **kw)  # type: ignore[arg-type]


def sql_source(url: str, query: str) -> SourceConfig:
    return SourceConfig(name="lms", kind=SourceKind.SQL, url=Secret(url), query=query)


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", newline="")
    return path


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_rows_origins_are_physical_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "courses.csv",
        'id,title\nc1,First\n\nc2,"two\nlines"\nc3,Third\n',
    )
    rows = list(load_rows(csv_source(path)))
    assert [(r.origin, dict(r.values)) for r in rows] == [
        ("courses.csv:2", {"id": "c1", "title": "First"}),
        ("courses.csv:4", {"id": "c2", "title": "two\nlines"}),  # line 3 is blank
        ("courses.csv:6", {"id": "c3", "title": "Third"}),  # the quoted value used lines 4 and 5
    ]


def test_csv_delimiter_bom_and_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "progress.csv", "\ufeffemail;pct\r\na@x.io;0.5\r\n".encode())
    source = csv_source(path, delimiter=";")
    assert load_columns(source) == ["email", "pct"]  # the BOM is not part of the first name
    assert [dict(r.values) for r in load_rows(source)] == [{"email": "a@x.io", "pct": "0.5"}]


def test_csv_other_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", "id,title\nc1,Café\n".encode("latin-1"))
    rows = list(load_rows(csv_source(path, encoding="latin-1")))
    assert rows[0].values["title"] == "Café"


def test_csv_empty_file_has_no_columns_and_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", "")
    assert load_columns(csv_source(path)) == []
    assert list(load_rows(csv_source(path))) == []


def test_csv_streams_in_constant_memory(tmp_path: Path) -> None:
    line = "c{0},{1}\n"
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write("id,title\n")
        for i in range(60_000):
            f.write(line.format(i, "x" * 80))
    assert path.stat().st_size > 5_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in load_rows(csv_source(path)))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 1_000_000, f"peak {peak} bytes: rows are being kept"


# --- JSON Lines --------------------------------------------------------------------------------


def test_jsonl_rows_skip_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "events.jsonl", '{"id": "a", "n": 1}\n\n   \n{"id": "b", "n": null}\n')
    rows = list(load_rows(jsonl_source(path)))
    assert [(r.origin, dict(r.values)) for r in rows] == [
        ("events.jsonl:1", {"id": "a", "n": 1}),
        ("events.jsonl:4", {"id": "b", "n": None}),
    ]
    assert load_columns(jsonl_source(path)) == ["id", "n"]


# --- errors ------------------------------------------------------------------------------------

ERRORS = [
    pytest.param("missing.csv", None, SourceKind.CSV, {}, "{path}: file not found", id="csv-missing-file"),
    pytest.param("dir", "<dir>", SourceKind.CSV, {}, "{path}: is a directory", id="csv-directory"),
    pytest.param(
        "short.csv",
        "a,b,c\n1,2,3\n4,5\n",
        SourceKind.CSV,
        {},
        "{path}:3: 2 values, but the header has 3 columns",
        id="csv-too-few-values",
    ),
    pytest.param(
        "long.csv",
        "a,b\n1,2\n\n3,4,5\n",
        SourceKind.CSV,
        {},
        "{path}:4: 3 values, but the header has 2 columns",
        id="csv-too-many-values",
    ),
    pytest.param(
        "bad.csv",
        "a,b\n1,2\n3,\xe9t\xe9\n".encode("latin-1"),
        SourceKind.CSV,
        {},
        "{path}:3: cannot decode the file as utf-8",
        id="csv-wrong-encoding",
    ),
    pytest.param(
        "x.csv",
        "a\n1\n",
        SourceKind.CSV,
        {"encoding": "klingon"},
        "{path}: unknown encoding 'klingon'",
        id="csv-unknown-encoding",
    ),
    pytest.param(
        "bad.jsonl",
        '{"a": 1}\n{"a": 2\n',
        SourceKind.JSONL,
        {},
        "{path}:2: not valid JSON",
        id="jsonl-invalid-json",
    ),
    pytest.param(
        "arr.jsonl",
        '{"a": 1}\n\n[1, 2]\n',
        SourceKind.JSONL,
        {},
        "{path}:3: a JSON array, not an object",
        id="jsonl-not-an-object",
    ),
    pytest.param(
        "num.jsonl",
        '{"a": 1}\n42\n',
        SourceKind.JSONL,
        {},
        "{path}:2: a JSON number, not an object",
        id="jsonl-number",
    ),
    pytest.param(
        "enc.jsonl",
        b'{"a": "x"}\n' * 3 + b'{"a": "\xff"}\n',
        SourceKind.JSONL,
        {},
        "{path}:4: cannot decode the file as utf-8",
        id="jsonl-wrong-encoding",
    ),
]


@pytest.mark.parametrize(("name", "data", "kind", "options", "expected"), ERRORS)
def test_source_errors_name_file_and_line(
    tmp_path: Path,
    name: str,
    data: str | bytes | None,
    kind: SourceKind,
    options: dict[str, str],
    expected: str,
) -> None:
    path = tmp_path / name
    if data == "<dir>":
        path.mkdir()
    elif data is not None:
        write(tmp_path, name, data)
    source = SourceConfig(name="src", kind=kind, path=path, where="config.yaml:7:3", **options)  # type: ignore[arg-type]
    with pytest.raises(SourceError) as caught:
        list(load_rows(source))
    message = str(caught.value)
    assert message.startswith(expected.format(path=path)), message
    assert message.endswith("(source 'src' declared at config.yaml:7:3)")


def test_wrong_encoding_is_located_beyond_the_first_chunk(tmp_path: Path) -> None:
    # The text layer decodes 8 KiB chunks ahead: the line must still be the real one.
    body = "".join(f"c{i},ok\n" for i in range(5000)).encode() + b"c,\xff\n"
    path = write(tmp_path, "late.csv", b"id,title\n" + body)
    with pytest.raises(SourceError, match=r"late\.csv:5002: cannot decode"):
        list(load_rows(csv_source(path)))


# --- SQL ---------------------------------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE progress (email TEXT, pct REAL)")
        db.executemany("INSERT INTO progress VALUES (?, ?)", [(f"u{i}@x.io", i / 10) for i in range(5)])
    db.close()
    return f"sqlite:///{path}"


def test_sql_rows_and_columns(warehouse: str) -> None:
    source = sql_source(warehouse, "SELECT email, pct AS progress FROM progress ORDER BY email")
    assert load_columns(source) == ["email", "progress"]
    rows = list(load_rows(source))
    assert [r.origin for r in rows] == [f"lms row {n}" for n in range(1, 6)]
    assert dict(rows[2].values) == {"email": "u2@x.io", "progress": 0.2}


def test_sql_rows_are_lazy(warehouse: str) -> None:
    rows = load_rows(sql_source(warehouse, "SELECT email FROM progress ORDER BY email"))
    assert next(rows).values == {"email": "u0@x.io"}
    rows.close()  # closing early releases the connection without reading the rest


def test_sql_error_is_a_source_error(warehouse: str) -> None:
    with pytest.raises(SourceError, match=r"^source 'lms' \(sqlite:///.*\): no such table: nope"):
        list(load_rows(sql_source(warehouse, "SELECT * FROM nope")))


SQL_SETUP_ERRORS = [
    pytest.param(
        "mysql+mysqldb://u:pw@127.0.0.1/db", "the database driver is not installed (MySQLdb)", id="no-driver"
    ),
    pytest.param(
        "mysql+nosuch://u:pw@127.0.0.1/db",
        "Can't load plugin: sqlalchemy.dialects:mysql.nosuch",
        id="no-dialect",
    ),
]


@pytest.mark.parametrize(("url", "message"), SQL_SETUP_ERRORS)
def test_sql_setup_errors_are_source_errors(url: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_columns(sql_source(url, "SELECT 1"))
    assert message in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_sql_error_never_shows_the_password() -> None:
    # Port 1 on loopback refuses at once: the driver's message must not carry the password.
    url = "postgresql+psycopg://syncer:s3cr3t-pw@127.0.0.1:1/warehouse?connect_timeout=2"
    with pytest.raises(SourceError) as caught:
        load_columns(sql_source(url, "SELECT 1"))
    message = str(caught.value)
    assert "s3cr3t-pw" not in message
    assert "syncer:***@127.0.0.1:1" in message
