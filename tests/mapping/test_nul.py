"""A value holding a NUL byte is an invalid row (origin, field, reason), never sent nor a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncer.config import FieldSpec, IntegrationConfig, ObjectConfig, Secret, SourceConfig, SourceKind
from syncer.errors import ConfigError
from syncer.mapping import build_mapper, map_source
from syncer.models import InvalidRow, Record, RecordKind, Row

ACME = IntegrationConfig(name="acme", id="507f1f77bcf86cd799439011")
FIELDS = (
    FieldSpec("externalId", column="id"),
    FieldSpec("name", column="title"),
    FieldSpec("launchUrl", template="https://acme.example/launch/{id}"),
    FieldSpec("defaultLang", value="en", has_value=True),
    FieldSpec("sources", value=[{"name": "Acme"}], has_value=True),
    FieldSpec("subjects", column="tags", split="|"),
)
SPEC = ObjectConfig(source="src", fields=FIELDS, where="config.yaml:20:5")


def courses(source: SourceConfig) -> list[Record | InvalidRow]:
    return list(map_source(ACME, RecordKind.COURSE, SPEC, source))


def invalid(results: list[Record | InvalidRow]) -> list[tuple[str, str | None, str]]:
    return [(r.origin, r.field, r.reason) for r in results if isinstance(r, InvalidRow)]


def test_csv_values_with_nul_are_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "courses.csv"
    path.write_bytes(b"id,title,tags\nc1,One,a\nc2,T\x00wo,a\nc3,Three,x\x00y|z\n\x00c4,Four,\nc5,Five,b\n")
    results = courses(SourceConfig("src", SourceKind.CSV, path=path))
    assert [r.key for r in results if isinstance(r, Record)] == ["c1", "c5"]
    assert invalid(results) == [
        ("courses.csv:3", "name", "contains a NUL byte in column 'title'"),
        ("courses.csv:4", "subjects", "contains a NUL byte in column 'tags'"),
        ("courses.csv:5", "externalId", "contains a NUL byte in column 'id'"),
    ]


def test_jsonl_values_with_nul_are_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "courses.jsonl"
    path.write_text(
        '{"id": "c1", "title": "One", "tags": "a"}\n'
        '{"id": "c2", "title": "T\\u0000wo", "tags": "a"}\n'
        '{"id": "c3", "title": "Three", "tags": ["x", "y\\u0000"]}\n'
        '{"id": "c4", "title": {"nested": "z\\u0000"}, "tags": "a"}\n',
        "utf-8",
    )
    results = courses(SourceConfig("src", SourceKind.JSONL, path=path))
    assert [r.key for r in results if isinstance(r, Record)] == ["c1"]
    assert invalid(results) == [
        ("courses.jsonl:2", "name", "contains a NUL byte in column 'title'"),
        ("courses.jsonl:3", "subjects", "contains a NUL byte in column 'tags'"),
        ("courses.jsonl:4", "name", "contains a NUL byte in column 'title'"),
    ]


def test_sql_values_with_nul_are_invalid_rows(tmp_path: Path) -> None:
    db = tmp_path / "lms.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE c (id TEXT, title TEXT, tags TEXT)")
        conn.executemany("INSERT INTO c VALUES (?, ?, ?)", [("c1", "One", "a"), ("c2", "T\x00wo", "a")])
    conn.close()
    source = SourceConfig(
        "src",
        SourceKind.SQL,
        url=Secret(f"sqlite:///{db}"),
        query="SELECT id, title, tags FROM c ORDER BY id",
    )
    results = courses(source)
    assert invalid(results) == [("src row 2", "name", "contains a NUL byte in column 'title'")]


def test_a_template_with_a_nul_names_the_template() -> None:
    launch = FieldSpec("launchUrl", template="https://acme.example/{slug}")
    spec = ObjectConfig(source="src", fields=(*FIELDS[:2], launch, *FIELDS[3:]), where="config.yaml:20:5")
    mapper = build_mapper(ACME, RecordKind.COURSE, spec)
    result = mapper.map(Row("src.csv:2", {"id": "c1", "title": "One", "tags": "", "slug": "a\x00b"}))
    assert isinstance(result, InvalidRow)
    assert (result.field, result.reason) == (
        "launchUrl",
        "contains a NUL byte in template 'https://acme.example/{slug}'",
    )


@pytest.mark.parametrize("where", ["value", "default"])
def test_a_constant_with_a_nul_is_a_config_error(where: str) -> None:
    field = (
        FieldSpec("defaultLang", value="e\x00n", has_value=True, where="config.yaml:9:7")
        if where == "value"
        else FieldSpec(
            "defaultLang", column="lang", default="e\x00n", has_default=True, where="config.yaml:9:7"
        )
    )
    spec = ObjectConfig(source="src", fields=(*FIELDS[:3], field, *FIELDS[4:]), where="config.yaml:20:5")
    with pytest.raises(ConfigError) as info:
        build_mapper(ACME, RecordKind.COURSE, spec)
    assert str(info.value) == "config.yaml:9:7: defaultLang: contains a NUL byte"
