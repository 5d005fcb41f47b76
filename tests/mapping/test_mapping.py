"""Mapping: every field form, transform and filter, the API checks, keys, hashes, and check_columns."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.config import (
    ApiConfig,
    Config,
    FieldSpec,
    FieldType,
    FilterOp,
    FilterSpec,
    IntegrationConfig,
    ObjectConfig,
    Secret,
    SourceConfig,
    SourceKind,
)
from syncer.errors import ConfigError, Problem
from syncer.mapping import build_mapper, check_columns, map_source
from syncer.models import InvalidRow, Record, RecordKind, Row, content_hash

ACME = IntegrationConfig(name="acme", id="507f1f77bcf86cd799439011")

COURSE_BASE = {
    "externalId": FieldSpec("externalId", column="id"),
    "name": FieldSpec("name", column="title"),
    "launchUrl": FieldSpec("launchUrl", template="https://acme.example/launch/{id}"),
    "defaultLang": FieldSpec("defaultLang", value="en", has_value=True),
    "sources": FieldSpec("sources", value=[{"name": "Acme"}], has_value=True),
    "subjects": FieldSpec("subjects", column="tags", split="|"),
}
STAT_BASE = {
    "course": FieldSpec("course", column="course_id", identifier="externalId"),
    "user": FieldSpec("user", column="email", identifier="mail"),
    "progress": FieldSpec("progress", column="pct"),
    "timeSpent": FieldSpec("timeSpent", column="ms"),
    "firstActivityAt": FieldSpec("firstActivityAt", column="started"),
    "lastActivityAt": FieldSpec("lastActivityAt", column="finished"),
}
COURSE_ROW = {"id": "c1", "title": "Intro", "tags": "a|b"}
STAT_ROW = {
    "course_id": "c1",
    "email": "ann@x.io",
    "pct": "50",
    "ms": "1000",
    "started": "2024-03-01T10:00:00.000Z",
    "finished": "2024-03-01T11:00:00.000Z",
}


def spec_of(kind: RecordKind, *fields: FieldSpec, **kw: Any) -> ObjectConfig:
    base = dict(COURSE_BASE if kind is RecordKind.COURSE else STAT_BASE)
    for field in fields:
        base[field.target] = field
    return ObjectConfig(source="src", fields=tuple(base.values()), where="config.yaml:20:5", **kw)


def map_row(
    kind: RecordKind, row: dict[str, Any], *fields: FieldSpec, **kw: Any
) -> Record | InvalidRow | None:
    base_row = COURSE_ROW if kind is RecordKind.COURSE else STAT_ROW
    mapper = build_mapper(ACME, kind, spec_of(kind, *fields, **kw))
    return mapper.map(Row("src.csv:2", {**base_row, **row}))


def course_value(field: FieldSpec, row: dict[str, Any]) -> Any:
    result = map_row(RecordKind.COURSE, row, field)
    assert isinstance(result, Record), result
    return result.payload.get(field.target, "<omitted>")


def stat_value(field: FieldSpec, row: dict[str, Any]) -> Any:
    result = map_row(RecordKind.STAT, row, field)
    assert isinstance(result, Record), result
    target = {"course": "courseIdentifier", "user": "userIdentifier"}.get(field.target, field.target)
    return result.payload.get(target, "<omitted>")


F = FieldSpec
TRANSFORMS = [
    pytest.param(F("name", column="t"), {"t": "Hello"}, "Hello", id="column"),
    pytest.param(F("name", value="Fixed", has_value=True), {}, "Fixed", id="value"),
    pytest.param(F("name", template="{a} - {b}"), {"a": "X", "b": 2}, "X - 2", id="template"),
    pytest.param(
        F("description", column="d", default="n/a", has_default=True), {"d": ""}, "n/a", id="default-empty"
    ),
    pytest.param(
        F("description", column="d", default="n/a", has_default=True), {}, "n/a", id="default-absent"
    ),
    pytest.param(
        F("description", column="d", default="n/a", has_default=True), {"d": "x"}, "x", id="default-unused"
    ),
    pytest.param(F("description", column="d"), {"d": ""}, "<omitted>", id="optional-missing-omitted"),
    pytest.param(F("description", column="d", trim=True), {"d": "  x "}, "x", id="trim"),
    pytest.param(
        F("description", column="d", trim=True, default="n/a", has_default=True),
        {"d": "   "},
        "n/a",
        id="trim-then-default",
    ),
    pytest.param(F("description", column="d", lower=True), {"d": "AbC"}, "abc", id="lower"),
    pytest.param(F("subjects", column="t", split="|"), {"t": " a | b||c "}, ["a", "b", "c"], id="split"),
    pytest.param(F("subjects", column="t", split="|"), {"t": ""}, [], id="split-empty-is-empty-list"),
    pytest.param(
        F("subjects", column="t", split=",", lower=True), {"t": "A,B"}, ["a", "b"], id="split-lower"
    ),
    pytest.param(F("duration", column="m"), {"m": "45"}, 45, id="integer-implicit"),
    pytest.param(
        F("duration", column="m", type=FieldType.INTEGER), {"m": "45.0"}, 45, id="integer-from-float"
    ),
    pytest.param(F("duration", column="m", unit="ms"), {"m": "90"}, 90, id="unit-ms"),
    pytest.param(F("duration", column="m", scale=60), {"m": "1.5"}, 90, id="scale"),
    pytest.param(F("name", column="n", type=FieldType.STRING), {"n": 12}, "12", id="string-from-number"),
    pytest.param(F("name", column="n", map={"a": "Alpha"}), {"n": "a"}, "Alpha", id="map"),
    pytest.param(
        F("difficultyLevel", column="l", map={1: "beginner", 2: "advanced"}),
        {"l": "2"},
        "advanced",
        id="map-number-keys-compare-as-strings",
    ),
]


@pytest.mark.parametrize(("field", "row", "expected"), TRANSFORMS)
def test_course_transforms(field: FieldSpec, row: dict[str, Any], expected: Any) -> None:
    assert course_value(field, row) == expected


STAT_TRANSFORMS = [
    pytest.param(
        F("firstActivityAt", column="s"),
        {"s": datetime(2024, 1, 5, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))},
        "2024-01-05T11:00:00.000Z",
        id="sql-datetime-aware",
    ),
    pytest.param(
        F("firstActivityAt", column="s", timezone="Asia/Kolkata"),
        {"s": datetime(2024, 1, 5, 12, 0)},
        "2024-01-05T06:30:00.000Z",
        id="sql-datetime-naive-timezone",
    ),
    pytest.param(
        F("firstActivityAt", column="s"), {"s": date(2024, 1, 5)}, "2024-01-05T00:00:00.000Z", id="sql-date"
    ),
    pytest.param(F("progress", column="p"), {"p": Decimal("12.50")}, 12.5, id="sql-decimal"),
    pytest.param(F("progress", column="p"), {"p": 12.0}, 12, id="json-float"),
    pytest.param(
        F("result", column="r", map={"true": "success"}), {"r": True}, "success", id="map-json-boolean"
    ),
    pytest.param(F("lang", column="l", type=FieldType.STRING), {"l": "de"}, "de", id="string-kept"),
    pytest.param(F("progress", column="p"), {"p": "42.5"}, 42.5, id="number-implicit"),
    pytest.param(F("progress", column="p", scale=100), {"p": "0.7"}, 70, id="scale-rounds-binary-noise"),
    pytest.param(F("progress", column="p", scale=100), {"p": "0.125"}, 12.5, id="scale-keeps-fraction"),
    pytest.param(F("progress", column="p"), {"p": "50.0"}, 50, id="integral-number-is-int"),
    pytest.param(F("timeSpent", column="t", unit="ms"), {"t": "1500"}, 1500, id="unit-ms"),
    pytest.param(F("timeSpent", column="t", unit="s"), {"t": "1.5"}, 1500, id="unit-s"),
    pytest.param(F("timeSpent", column="t", unit="min"), {"t": "2"}, 120_000, id="unit-min"),
    pytest.param(F("timeSpent", column="t", unit="h"), {"t": "0.5"}, 1_800_000, id="unit-h"),
    pytest.param(F("forceNew", column="f"), {"f": "yes"}, True, id="boolean-yes"),
    pytest.param(F("forceNew", column="f", type=FieldType.BOOLEAN), {"f": "0"}, False, id="boolean-0"),
    pytest.param(
        F("result", column="r", map={"passed": "success", "failed": "failed"}),
        {"r": "passed"},
        "success",
        id="map",
    ),
    pytest.param(F("lang", column="l", trim=True), {"l": " fr "}, "fr", id="lang"),
    pytest.param(
        F("user", column="e", identifier="mail"),
        {"e": "  Ann.Lee@Example.COM "},
        {"type": "mail", "value": "ann.lee@example.com"},
        id="mail-trimmed-lowered",
    ),
    pytest.param(
        F("user", column="u", identifier="internalId"),
        {"u": "5f0cAB"},
        {"type": "internalId", "value": "5f0cAB"},
        id="user-internal-id-kept",
    ),
    pytest.param(
        F("course", column="c", identifier="internalId"),
        {"c": 42},
        {"type": "internalId", "value": "42"},
        id="course-identifier-from-number",
    ),
    pytest.param(
        F("firstActivityAt", column="s"),
        {"s": "2024-03-01T10:00:00Z"},
        "2024-03-01T10:00:00.000Z",
        id="iso-z",
    ),
    pytest.param(
        F("firstActivityAt", column="s"),
        {"s": "2024-03-01T10:00:00.123456+02:00"},
        "2024-03-01T08:00:00.123Z",
        id="iso-offset",
    ),
    pytest.param(
        F("firstActivityAt", column="s"),
        {"s": "2024-03-01 10:00"},
        "2024-03-01T10:00:00.000Z",
        id="iso-naive-utc",
    ),
    pytest.param(
        F("firstActivityAt", column="s"), {"s": "2024-03-01"}, "2024-03-01T00:00:00.000Z", id="iso-date"
    ),
    pytest.param(
        F("firstActivityAt", column="s", timezone="Europe/Paris"),
        {"s": "2024-07-01T10:00:00"},
        "2024-07-01T08:00:00.000Z",
        id="iso-naive-timezone-summer",
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%d/%m/%Y %H:%M", timezone="Europe/Paris"),
        {"s": "05/01/2024 10:30"},
        "2024-01-05T09:30:00.000Z",
        id="format-timezone-winter",
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%d/%m/%Y %H:%M"),
        {"s": "5/1/2024 10:30"},
        "2024-01-05T10:30:00.000Z",
        id="format-no-timezone-is-utc",
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%d %b %Y %I:%M %p"),
        {"s": "05 Jan 2024 02:30 PM"},
        "2024-01-05T14:30:00.000Z",
        id="format-strptime-only-directives",
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%Y%m%d%H%M%S.%f"),
        {"s": "20240105143000.5"},
        "2024-01-05T14:30:00.500Z",
        id="format-compact-fraction",
    ),
]


@pytest.mark.parametrize(("field", "row", "expected"), STAT_TRANSFORMS)
def test_stat_transforms(field: FieldSpec, row: dict[str, Any], expected: Any) -> None:
    assert stat_value(field, row) == expected


INVALID = [
    pytest.param(
        F("progress", column="p"),
        {"p": "150"},
        "progress",
        "150 is greater than the maximum of 100",
        id="progress-max",
    ),
    pytest.param(
        F("progress", column="p"),
        {"p": "-1"},
        "progress",
        "-1 is less than the minimum of 0",
        id="progress-min",
    ),
    pytest.param(
        F("progress", column="p"), {"p": "half"}, "progress", "'half' is not a number", id="progress-nan-text"
    ),
    pytest.param(
        F("progress", column="p"), {"p": "nan"}, "progress", "'nan' is not a number", id="progress-nan"
    ),
    pytest.param(
        F("progress", column="p"), {"p": "1_0"}, "progress", "'1_0' is not a number", id="number-underscore"
    ),
    pytest.param(
        F("timeSpent", column="t"),
        {"t": "0"},
        "timeSpent",
        "0 is less than the minimum of 1",
        id="timespent-zero",
    ),
    pytest.param(
        F("score", column="s"),
        {"s": "101"},
        "score",
        "101 is greater than the maximum of 100",
        id="score-max",
    ),
    pytest.param(
        F("lang", column="l"),
        {"l": "xx"},
        "lang",
        "'xx' is not one of ['bg', 'cs', 'da', 'de', 'el', 'en', ... 73 more]",
        id="lang-enum",
    ),
    pytest.param(
        F("result", column="r"),
        {"r": "passed"},
        "result",
        "'passed' is not one of ['success', 'failed']",
        id="result-enum",
    ),
    pytest.param(
        F("result", column="r", map={"p": "success"}),
        {"r": "x"},
        "result",
        "'x' is not in the map of column 'r' (known: ['p'])",
        id="unmapped-value",
    ),
    pytest.param(
        F("forceNew", column="f"),
        {"f": "maybe"},
        "forceNew",
        "'maybe' is not a boolean (true/false, yes/no, 1/0)",
        id="boolean",
    ),
    pytest.param(
        F("user", column="e", identifier="mail"),
        {"e": "  "},
        "userIdentifier",
        "missing value in column 'e'",
        id="missing-mail",
    ),
    pytest.param(
        F("progress", column="p"), {"p": None}, "progress", "missing value in column 'p'", id="missing-none"
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%d/%m/%Y %H:%M"),
        {"s": "13/45/2024 10:00"},
        "firstActivityAt",
        "'13/45/2024 10:00' does not match format '%d/%m/%Y %H:%M'",
        id="format-mismatch",
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%d/%m/%Y"),
        {"s": "2024-01-01"},
        "firstActivityAt",
        "'2024-01-01' does not match format '%d/%m/%Y'",
        id="format-shape",
    ),
    pytest.param(
        F("firstActivityAt", column="s", format="%d %b %Y"),
        {"s": "05 Foo 2024"},
        "firstActivityAt",
        "'05 Foo 2024' does not match format '%d %b %Y'",
        id="format-strptime-mismatch",
    ),
    pytest.param(
        F("firstActivityAt", column="s"),
        {"s": "yesterday"},
        "firstActivityAt",
        "'yesterday' is not an ISO 8601 date-time",
        id="iso-bad",
    ),
    pytest.param(
        F("firstActivityAt", column="s"),
        {"s": 12},
        "firstActivityAt",
        "12 is not a date-time",
        id="datetime-number",
    ),
]


@pytest.mark.parametrize(("field", "row", "where", "reason"), INVALID)
def test_invalid_rows_name_field_and_reason(
    field: FieldSpec, row: dict[str, Any], where: str, reason: str
) -> None:
    result = map_row(RecordKind.STAT, row, field)
    assert result == InvalidRow("acme", RecordKind.STAT, "src.csv:2", where, reason)


COURSE_INVALID = [
    pytest.param(
        F("externalId", column="id"),
        {"id": ""},
        "externalId",
        "missing value in column 'id'",
        id="missing-key",
    ),
    pytest.param(
        F("launchUrl", template="https://x/{id}/{v}"),
        {"v": ""},
        "launchUrl",
        "missing value in column 'v' (template 'https://x/{id}/{v}')",
        id="template-missing-column",
    ),
    pytest.param(
        F("duration", column="m"), {"m": "2.5"}, "duration", "'2.5' is not an integer", id="integer"
    ),
    pytest.param(
        F("duration", column="m"),
        {"m": "100001"},
        "duration",
        "100001 is greater than the maximum of 100000",
        id="duration-max",
    ),
    pytest.param(
        F("authorId", column="a"),
        {"a": "nope"},
        "authorId",
        "'nope' does not match '^[a-fA-F0-9]{24}$'",
        id="author-pattern",
    ),
    pytest.param(
        F("subjects", value=["a", ""], has_value=True),
        {},
        "subjects[1]",
        "'' should be non-empty",
        id="nested-path",
    ),
    pytest.param(
        F("sources", value=[{"logoUrl": "x"}], has_value=True),
        {},
        "sources[0].name",
        "'name' is a required property",
        id="nested-required",
    ),
]


@pytest.mark.parametrize(("field", "row", "where", "reason"), COURSE_INVALID)
def test_invalid_course_rows(field: FieldSpec, row: dict[str, Any], where: str, reason: str) -> None:
    result = map_row(RecordKind.COURSE, row, field)
    # An invalid course still names its course (so the planner never archives it) unless the
    # externalId itself is what is wrong.
    key = None if field.target == "externalId" else "c1"
    assert result == InvalidRow("acme", RecordKind.COURSE, "src.csv:2", where, reason, key)


FILTERS = [
    pytest.param(FilterSpec("s", FilterOp.EQUALS, "ok"), "ok", True, id="equals-keep"),
    pytest.param(FilterSpec("s", FilterOp.EQUALS, "ok"), "ko", False, id="equals-drop"),
    pytest.param(FilterSpec("s", FilterOp.EQUALS, 1), "1", True, id="equals-compares-strings"),
    pytest.param(FilterSpec("s", FilterOp.EQUALS, True), "true", True, id="equals-boolean-as-csv-text"),
    pytest.param(FilterSpec("s", FilterOp.NOT_EQUALS, "x"), "y", True, id="not-equals-keep"),
    pytest.param(FilterSpec("s", FilterOp.NOT_EQUALS, "x"), "x", False, id="not-equals-drop"),
    pytest.param(FilterSpec("s", FilterOp.IN, ["a", "b"]), "b", True, id="in-keep"),
    pytest.param(FilterSpec("s", FilterOp.IN, ["a", "b"]), "c", False, id="in-drop"),
    pytest.param(FilterSpec("s", FilterOp.NOT_IN, ["deleted"]), "live", True, id="not-in-keep"),
    pytest.param(FilterSpec("s", FilterOp.NOT_IN, ["deleted"]), "deleted", False, id="not-in-drop"),
    pytest.param(FilterSpec("s", FilterOp.EMPTY), "", True, id="empty-keep"),
    pytest.param(FilterSpec("s", FilterOp.EMPTY), None, True, id="empty-absent-keep"),
    pytest.param(FilterSpec("s", FilterOp.EMPTY), "x", False, id="empty-drop"),
    pytest.param(FilterSpec("s", FilterOp.NOT_EMPTY), "x", True, id="not-empty-keep"),
    pytest.param(FilterSpec("s", FilterOp.NOT_EMPTY), "", False, id="not-empty-drop"),
]


@pytest.mark.parametrize(("filt", "value", "kept"), FILTERS)
def test_filters(filt: FilterSpec, value: Any, kept: bool) -> None:
    row = {} if value is None else {"s": value}
    result = map_row(RecordKind.STAT, row, filters=(filt,))
    assert isinstance(result, Record) if kept else result is None


def test_filtered_rows_are_dropped_before_checks() -> None:
    drop = FilterSpec("status", FilterOp.EQUALS, "ok")
    assert map_row(RecordKind.STAT, {"pct": "900", "status": "deleted"}, filters=(drop,)) is None


def test_stat_record_shape_key_group_order_activity() -> None:
    result = map_row(
        RecordKind.STAT, {"email": " Ann@X.io"}, F("score", value=80, has_value=True), force_new=True
    )
    assert isinstance(result, Record)
    assert result.payload == {
        "courseIdentifier": {"type": "externalId", "value": "c1"},
        "userIdentifier": {"type": "mail", "value": "ann@x.io"},
        "progress": 50,
        "timeSpent": 1000,
        "firstActivityAt": "2024-03-01T10:00:00.000Z",
        "lastActivityAt": "2024-03-01T11:00:00.000Z",
        "score": 80,
        "forceNew": True,
    }
    assert result.key == '["externalId","c1","mail","ann@x.io","2024-03-01T10:00:00.000Z"]'
    assert result.group == '["externalId","c1","mail","ann@x.io"]'
    assert (result.order, result.activity) == ("2024-03-01T10:00:00.000Z", "2024-03-01T11:00:00.000Z")
    assert (result.integration, result.kind, result.origin) == ("acme", RecordKind.STAT, "src.csv:2")
    assert result.hash == content_hash(result.payload)


def test_force_new_absent_by_default() -> None:
    result = map_row(RecordKind.STAT, {})
    assert isinstance(result, Record)
    assert "forceNew" not in result.payload


def test_course_record_shape() -> None:
    result = map_row(RecordKind.COURSE, {})
    assert isinstance(result, Record)
    assert result.payload == {
        "externalId": "c1",
        "name": "Intro",
        "launchUrl": "https://acme.example/launch/c1",
        "defaultLang": "en",
        "sources": [{"name": "Acme"}],
        "subjects": ["a", "b"],
    }
    assert (result.key, result.group, result.order, result.activity) == ("c1", "", "", "")


def test_hash_ignores_key_order_and_number_spelling() -> None:
    reordered = build_mapper(ACME, RecordKind.STAT, spec_of(RecordKind.STAT))
    fields = tuple(reversed(spec_of(RecordKind.STAT).fields))
    backwards = build_mapper(ACME, RecordKind.STAT, ObjectConfig(source="src", fields=fields))
    a = reordered.map(Row("a:1", STAT_ROW))
    b = backwards.map(Row("b:9", {**STAT_ROW, "pct": "50.0", "ms": " 1000 "}))
    assert isinstance(a, Record) and isinstance(b, Record)
    assert list(a.payload) != list(b.payload)
    assert a.hash == b.hash


def test_hash_is_stable_across_processes() -> None:
    result = map_row(RecordKind.STAT, {})
    assert isinstance(result, Record)
    code = (
        "from syncer.models import content_hash; import json, sys;"
        "print(content_hash(json.loads(sys.argv[1])))"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(dict(reversed(list(result.payload.items()))))],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip() == result.hash


BUILD_ERRORS = [
    pytest.param(
        RecordKind.STAT,
        F("nope", column="x", where="c.yaml:3:7"),
        "c.yaml:3:7: 'nope' is not a field of the API's stat",
        id="unknown-field",
    ),
    pytest.param(
        RecordKind.STAT,
        F("user", column="e", where="c.yaml:4:7"),
        "c.yaml:4:7: 'user' needs one of ['mail', 'internalId']",
        id="identifier-kind",
    ),
    pytest.param(
        RecordKind.STAT,
        F("firstActivityAt", column="s", timezone="Mars/Olympus", where="c.yaml:5:7"),
        "c.yaml:5:7: unknown timezone 'Mars/Olympus'",
        id="bad-timezone",
    ),
    pytest.param(
        RecordKind.STAT,
        F("progress", value="lots", has_value=True, where="c.yaml:6:7"),
        "c.yaml:6:7: progress: 'lots' is not a number",
        id="bad-constant",
    ),
    pytest.param(
        RecordKind.COURSE,
        F("duration", column="m", default="long", has_default=True, where="c.yaml:7:7"),
        "c.yaml:7:7: duration: 'long' is not a number",
        id="bad-default",
    ),
]


@pytest.mark.parametrize(("kind", "field", "message"), BUILD_ERRORS)
def test_build_mapper_config_errors(kind: RecordKind, field: FieldSpec, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_mapper(ACME, kind, spec_of(kind, field))
    assert [str(p) for p in caught.value.problems] == [message]


def test_build_mapper_requires_the_api_required_fields() -> None:
    fields = tuple(f for f in spec_of(RecordKind.STAT).fields if f.target != "timeSpent")
    with pytest.raises(ConfigError) as caught:
        build_mapper(ACME, RecordKind.STAT, ObjectConfig(source="s", fields=fields, where="c.yaml:9:5"))
    assert str(caught.value) == "c.yaml:9:5: the API's stat needs the field 'timeSpent'"


@settings(max_examples=150, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1)),
    fmt=st.sampled_from(["%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%m.%d.%Y %H:%M:%S.%f", "%d%m%Y"]),
    zone=st.sampled_from([None, "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
)
def test_fast_format_agrees_with_strptime(moment: datetime, fmt: str, zone: str | None) -> None:
    text = moment.strftime(fmt)
    field = F("firstActivityAt", column="s", format=fmt, timezone=zone)
    parsed = datetime.strptime(text, fmt).replace(tzinfo=ZoneInfo(zone) if zone else ZoneInfo("UTC"))
    utc = parsed.astimezone(ZoneInfo("UTC"))
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    assert stat_value(field, {"s": text}) == expected


def test_parsed_datetimes_are_cached_but_right() -> None:
    mapper = build_mapper(
        ACME, RecordKind.STAT, spec_of(RecordKind.STAT, F("firstActivityAt", column="s", format="%d/%m/%Y"))
    )
    start = datetime(2024, 1, 1)
    for day in range(6000):  # past the cache's size: it must keep answering right
        text = (start + timedelta(days=day % 5000)).strftime("%d/%m/%Y")
        result = mapper.map(Row("x:1", {**STAT_ROW, "s": text}))
        assert isinstance(result, Record)
        assert result.payload["firstActivityAt"] == (start + timedelta(days=day % 5000)).strftime(
            "%Y-%m-%dT00:00:00.000Z"
        )


# --- map_source and check_columns --------------------------------------------------------------


def make_config(tmp_path: Path, csv_text: str, spec: ObjectConfig) -> Config:
    path = tmp_path / "progress.csv"
    path.write_text(csv_text, encoding="utf-8")
    source = SourceConfig("progress", SourceKind.CSV, path=path, where="config.yaml:8:3")
    spec = replace(spec, source="progress")
    return Config(
        path=tmp_path / "config.yaml",
        api=ApiConfig(base_url="http://127.0.0.1:1", client_id="id", client_secret=Secret("s")),
        ledger_url=Secret("sqlite://"),
        sources={"progress": source},
        integrations={"acme": IntegrationConfig(name="acme", id=ACME.id, stats=spec)},
    )


HEADER = "course_id,email,pct,ms,started,finished\n"


def test_map_source_streams_records_and_invalid_rows_with_origins(tmp_path: Path) -> None:
    rows = "c1,a@x.io,50,10,2024-01-01,2024-01-02\nc1,b@x.io,500,10,2024-01-01,2024-01-02\n"
    config = make_config(tmp_path, HEADER + rows, spec_of(RecordKind.STAT))
    out = list(
        map_source(ACME, RecordKind.STAT, config.integrations["acme"].stats, config.sources["progress"])
    )  # type: ignore[arg-type]
    assert [o.origin for o in out] == ["progress.csv:2", "progress.csv:3"]
    assert isinstance(out[0], Record)
    assert out[1] == InvalidRow(
        "acme", RecordKind.STAT, "progress.csv:3", "progress", "500 is greater than the maximum of 100"
    )


def test_check_columns_reports_missing_columns_where_they_are_mapped(tmp_path: Path) -> None:
    spec = spec_of(
        RecordKind.STAT,
        F("score", column="grade", where="config.yaml:30:16"),
        F("lang", template="{lng}-x", where="config.yaml:31:15"),
        filters=(FilterSpec("status", FilterOp.NOT_IN, ["deleted"], where="config.yaml:25:18"),),
    )
    config = make_config(tmp_path, HEADER, spec)
    has = "course_id, email, finished, ms, pct, started"
    assert check_columns(config) == [
        Problem("config.yaml", 30, 16, f"column 'grade' is not in source 'progress' (it has: {has})"),
        Problem("config.yaml", 31, 15, f"column 'lng' is not in source 'progress' (it has: {has})"),
        Problem("config.yaml", 25, 18, f"column 'status' is not in source 'progress' (it has: {has})"),
    ]


def test_check_columns_passes_a_complete_mapping(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, HEADER + "c1,a@x.io,50,10,2024-01-01,2024-01-02\n", spec_of(RecordKind.STAT)
    )
    assert check_columns(config) == []


def test_check_columns_turns_source_errors_into_problems(tmp_path: Path) -> None:
    config = make_config(tmp_path, HEADER + "c1,a@x.io\n", spec_of(RecordKind.STAT))
    problems = check_columns(config)
    assert len(problems) == 1
    assert (problems[0].file, problems[0].line, problems[0].column) == ("config.yaml", 8, 3)
    assert "progress.csv:2: 2 values, but the header has 6 columns" in problems[0].message
