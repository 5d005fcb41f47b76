"""The config loader: interpolation, schema rules, semantic checks, positions, and the built Config."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from syncer.config import (
    REGIONS,
    FieldType,
    FilterOp,
    Secret,
    SourceKind,
    Tolerance,
    config_schema,
    load_config,
)
from syncer.errors import ConfigError

OID = "507f1f77bcf86cd799439011"
SECRET = "s3cret-value-42"
DELETE = object()

BASE: dict[str, Any] = {
    "version": 1,
    "api": {"base_url": "http://127.0.0.1:8360", "client_id": "demo", "client_secret": SECRET},
    "sources": {"catalog": {"csv": "courses.csv"}, "progress": {"csv": "stats.csv", "delimiter": ";"}},
    "integrations": {
        "acme": {
            "id": OID,
            "courses": {
                "source": "catalog",
                "fields": {
                    "externalId": "course_id",
                    "name": "title",
                    "launchUrl": {"template": "https://acme.example/{course_id}"},
                    "defaultLang": {"column": "lang", "default": "en"},
                    "sources": {"value": [{"name": "Acme"}]},
                    "subjects": {"column": "tags", "split": "|"},
                },
            },
            "stats": {
                "source": "progress",
                "fields": {
                    "course": {"externalId": "course_id"},
                    "user": {"mail": "email"},
                    "progress": {"column": "pct", "scale": 100},
                    "timeSpent": {"column": "seconds", "unit": "s"},
                    "firstActivityAt": {
                        "column": "started",
                        "format": "%d/%m/%Y %H:%M",
                        "timezone": "Europe/Paris",
                    },
                    "lastActivityAt": "finished",
                },
            },
        }
    },
}
ACME = ("integrations", "acme")
CF = (*ACME, "courses", "fields")
SF = (*ACME, "stats", "fields")


def changed(*edits: tuple[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """BASE with each (path, value) set, or deleted with DELETE."""
    data = copy.deepcopy(BASE)
    for path, value in edits:
        node = data
        for step in path[:-1]:
            node = node[step]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return data


def write(tmp_path: Path, content: dict[str, Any] | str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text, "utf-8")
    return path


def problems(tmp_path: Path, content: dict[str, Any] | str, env: dict[str, str] | None = None) -> list[str]:
    """The problems of a config, without the file prefix (``LINE:COL: message``)."""
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    prefix = f"{path}:"
    lines = [str(p) for p in info.value.problems]
    assert all(line.startswith(prefix) for line in lines), lines
    return [line[len(prefix) :] for line in lines]


def messages(tmp_path: Path, content: dict[str, Any] | str) -> list[str]:
    """Only the messages: ``label: text``."""
    return [line.split(": ", 1)[1] for line in problems(tmp_path, content)]


def test_base_config_is_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), {})
    assert set(config.integrations) == {"acme"}


# --- interpolation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param("${X}", {"X": "from-env"}, "from-env", id="set"),
        pytest.param("${X:-fallback}", {}, "fallback", id="default-when-unset"),
        pytest.param("${X:-fallback}", {"X": ""}, "fallback", id="default-when-empty"),
        pytest.param("${X:-fallback}", {"X": "given"}, "given", id="set-beats-default"),
        pytest.param("${X:-}x", {}, "x", id="empty-default"),
        pytest.param("a-${X}-${Y:-b}-c", {"X": "1"}, "a-1-b-c", id="several"),
        pytest.param("$${X}", {"X": "no"}, "${X}", id="escaped"),
        pytest.param("'cost: $5 $${X:-y}'", {}, "cost: $5 ${X:-y}", id="escaped-default-and-lone-dollar"),
        pytest.param("'${X}'", {"X": "quoted"}, "quoted", id="single-quoted"),
        pytest.param('"${X}\\t"', {"X": "dq"}, "dq\t", id="double-quoted"),
    ],
)
def test_interpolation(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    data = yaml.safe_dump(changed((("api", "client_id"), "PLACEHOLDER")), sort_keys=False)
    path = write(tmp_path, data.replace("PLACEHOLDER", text))
    assert load_config(path, env).api.client_id == expected


def test_interpolation_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_CLIENT", "from-os")
    path = write(tmp_path, changed((("api", "client_id"), "${SYNCER_TEST_CLIENT}")))
    assert load_config(path).api.client_id == "from-os"


def test_interpolation_keeps_strings_and_leaves_keys_alone(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("client_id: demo", "client_id: ${N}")
    assert load_config(write(tmp_path, text), {"N": "12345"}).api.client_id == "12345"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "  client_id: ${MISSING}",
            "4:14: api.client_id: environment variable MISSING is not set",
            id="plain",
        ),
        pytest.param(
            '  client_id: "id-${MISSING}"',
            "4:18: api.client_id: environment variable MISSING is not set",
            id="quoted",
        ),
        pytest.param("  client_id: ${1BAD}", "4:14: api.client_id: malformed ${...}", id="malformed"),
        pytest.param("  client_id: ${OPEN", "4:14: api.client_id: malformed ${...}", id="unclosed"),
    ],
)
def test_interpolation_problems_point_at_the_variable(tmp_path: Path, line: str, expected: str) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("  client_id: demo", line)
    assert text.splitlines()[3] == line  # the positions above assume line 4
    [problem] = problems(tmp_path, text)
    assert problem.startswith(expected)


def test_missing_variable_is_never_an_empty_string(tmp_path: Path) -> None:
    # Only the missing variable is reported: no second "must not be empty" for the same value.
    text = yaml.safe_dump(BASE, sort_keys=False).replace(f"client_secret: {SECRET}", "client_secret: ${NOPE}")
    [problem] = problems(tmp_path, text)
    assert "NOPE is not set" in problem


# --- schema rules ----------------------------------------------------------------------------

SCHEMA_CASES = [
    ((("colour",), "blue"), "colour: unknown key 'colour'"),
    ((("version",), 2), "version: must be 1 (got 2)"),
    ((("api", "client_id"), DELETE), "api: missing required key 'client_id'"),
    ((("api", "region"), "asia"), "api.region: must be one of: eu, us (got 'asia')"),
    ((("api", "base_url"), "ftp://x"), "api.base_url: must be an http:// or https:// URL (got 'ftp://x')"),
    ((("api", "company_id"), "5f0c"), "api.company_id: must be a 24-character hex ObjectId (got '5f0c')"),
    (
        (("api", "limits"), {"concurrent_operations": 4}),
        "api.limits.concurrent_operations: must be at most 3",
    ),
    (
        (("api", "limits"), {"concurrent_operations": 0}),
        "api.limits.concurrent_operations: must be at least 1",
    ),
    (
        (("api", "limits"), {"requests_per_second": 0}),
        "api.limits.requests_per_second: must be greater than 0",
    ),
    ((("api", "limits"), {"requests_per_second": 11}), "api.limits.requests_per_second: must be at most 10"),
    ((("api", "limits"), {"reads_per_second": 51}), "api.limits.reads_per_second: must be at most 50"),
    ((("api", "limits"), {"burst": 1}), "api.limits.burst: unknown key 'burst'"),
    ((("api", "batch_size"), {"courses": 10001}), "api.batch_size.courses: must be at most 10000"),
    ((("api", "batch_size"), {"stats": 0}), "api.batch_size.stats: must be at least 1"),
    ((("api", "batch_size"), {"archives": 1001}), "api.batch_size.archives: must be at most 1000"),
    ((("api", "timeout_seconds"), 0), "api.timeout_seconds: must be greater than 0"),
    ((("api", "retry_seconds"), "long"), "api.retry_seconds: must be a number (got 'long')"),
    ((("sources",), {}), "sources: must not be empty"),
    (
        (("sources", "catalog"), {"csv": "a.csv", "jsonl": "b.jsonl"}),
        "sources.catalog: a source needs exactly one",
    ),
    (
        (("sources", "catalog"), {"path": "a.csv"}),
        "sources.catalog: a source needs exactly one of csv, jsonl or sql",
    ),
    ((("sources", "catalog", "delimiter"), ";;"), "sources.catalog.delimiter: must have at most 1 character"),
    (
        (("sources", "catalog"), {"jsonl": "a.jsonl", "delimiter": ","}),
        "sources.catalog.delimiter: unknown key",
    ),
    (
        (("sources", "catalog"), {"sql": {"url": "sqlite://"}}),
        "sources.catalog.sql: missing required key 'query'",
    ),
    ((("sources", "my source"), {"csv": "a.csv"}), "sources.my source: invalid name 'my source'"),
    ((("integrations", "Acme"), BASE["integrations"]["acme"]), "integrations.Acme: invalid name 'Acme'"),
    (((*ACME, "id"), "xyz"), "integrations.acme.id: must be a 24-character hex ObjectId (got 'xyz')"),
    (((*ACME, "owner"), "me"), "integrations.acme.owner: unknown key 'owner'"),
    (((*ACME, "courses", "source"), DELETE), "integrations.acme.courses: missing required key 'source'"),
    (((*ACME, "courses", "archive_missing"), "yes"), "courses.archive_missing: must be true or false"),
    (((*ACME, "courses", "force_new"), True), "courses.force_new: unknown key 'force_new'"),
    (((*CF, "name"), DELETE), "courses.fields: missing required key 'name'"),
    (((*CF, "nmae"), "title"), "courses.fields.nmae: unknown key 'nmae'; did you mean 'name'?"),
    (((*SF, "timeSpent"), DELETE), "stats.fields: missing required key 'timeSpent'"),
    (((*SF, "course"), {"mail": "c"}), "stats.fields.course.mail: unknown key 'mail'"),
    (
        ((*SF, "user"), {"mail": "m", "internalId": "i"}),
        "stats.fields.user: needs exactly one of: mail, internalId",
    ),
    (((*SF, "user"), {}), "stats.fields.user: needs exactly one of: mail, internalId"),
    (((*CF, "name"), 123), "courses.fields.name: a field is a column name, or a mapping with exactly one"),
    (((*CF, "name"), ""), "courses.fields.name: must not be empty"),
    (((*CF, "name"), {"column": "t", "value": 1}), "courses.fields.name: a field is a column name"),
    (((*CF, "name"), {"colum": "t"}), "courses.fields.name: a field is a column name"),
    (
        ((*CF, "name"), {"column": "t", "sclae": 2}),
        "fields.name.sclae: unknown key 'sclae'; did you mean 'scale'?",
    ),
    (((*CF, "name"), {"value": "x", "trim": True}), "courses.fields.name.trim: unknown key 'trim'"),
    (((*CF, "name"), {"column": 5}), "courses.fields.name.column: must be a string (got 5)"),
    (
        ((*SF, "timeSpent", "unit"), "days"),
        "fields.timeSpent.unit: must be one of: ms, s, min, h (got 'days')",
    ),
    (((*CF, "name"), {"column": "t", "type": "date"}), "fields.name.type: must be one of: string, integer"),
    (((*SF, "progress", "scale"), 0), "fields.progress.scale: must be greater than 0"),
    (((*CF, "subjects", "split"), ""), "fields.subjects.split: must not be empty"),
    (((*CF, "name"), {"column": "t", "map": {}}), "fields.name.map: must not be empty"),
    (((*CF, "name"), {"column": "t", "lower": "yes"}), "fields.name.lower: must be true or false"),
    (
        ((*ACME, "stats", "tolerate_invalid"), "abc"),
        "must be a count such as 20 or a share such as 1% (got 'abc')",
    ),
    (((*ACME, "stats", "tolerate_invalid"), -1), "stats.tolerate_invalid: must be at least 0"),
    (((*ACME, "stats", "tolerate_invalid"), 1.5), "must be a count such as 20 or a share such as 1%"),
    (
        ((*ACME, "stats", "filter"), [{"column": "a"}]),
        "stats.filter[0]: a filter needs a column and exactly one",
    ),
    (
        ((*ACME, "stats", "filter"), [{"column": "a", "equals": 1, "in": [1]}]),
        "stats.filter[0]: a filter needs",
    ),
    (((*ACME, "stats", "filter"), [{"column": "a", "empty": False}]), "stats.filter[0].empty: must be true"),
    (((*ACME, "stats", "filter"), [{"column": "a", "in": []}]), "stats.filter[0].in: must not be empty"),
    (
        ((*ACME, "stats", "filter"), [{"column": "a", "like": "x"}]),
        "stats.filter[0].like: unknown key 'like'",
    ),
    (((*ACME, "settings"), {"defaultProgress": 101}), "settings.defaultProgress: must be at most 100"),
]


@pytest.mark.parametrize(
    ("edit", "expected"),
    SCHEMA_CASES,
    ids=[f"{'.'.join(map(str, e[0][-2:]))}-{i}" for i, (e, _) in enumerate(SCHEMA_CASES)],
)
def test_schema_rule(tmp_path: Path, edit: tuple[tuple[str, ...], Any], expected: str) -> None:
    data = changed(edit)
    if edit[0][-1] == "settings":  # settings belong to a declared integration
        data = changed(edit, ((*ACME, "id"), DELETE), ((*ACME, "platform"), "P"), ((*ACME, "group"), OID))
        data["integrations"]["acme"]["author"] = OID
    found = messages(tmp_path, data)
    assert len(found) == 1, found
    assert expected in found[0]


def test_schema_error_points_at_the_value_and_unknown_key_at_the_key(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    text = text.replace("  client_id: demo\n", "  client_id: demo\n  colour: blue\n")
    text = text.replace("delimiter: ;", "delimiter: ;;")
    lines = text.splitlines()
    colour = next(i for i, line in enumerate(lines) if "colour" in line) + 1
    delimiter = next(i for i, line in enumerate(lines) if "delimiter" in line) + 1
    assert problems(tmp_path, text) == [
        f"{colour}:3: api.colour: unknown key 'colour'; expected one of: region, base_url, client_id, "
        "client_secret, company_id, limits, batch_size, timeout_seconds, retry_seconds",
        f"{delimiter}:16: sources.progress.delimiter: must have at most 1 character (got ';;')",
    ]


def test_secret_values_never_appear_in_problems(tmp_path: Path) -> None:
    data = changed(
        (("api", "client_secret"), 123456789),
        (("ledger",), "::not a url with password hunter2::"),
        (("sources", "wh"), {"sql": {"url": "::u:hunter2@", "query": "select 1"}}),
    )
    found = problems(tmp_path, data)
    assert len(found) == 3, found
    assert not any("123456789" in p or "hunter2" in p for p in found), found


# --- semantic checks ------------------------------------------------------------------------

SEMANTIC_CASES = {
    "unknown-source": (
        [((*ACME, "stats", "source"), "progres")],
        "stats.source: unknown source 'progres'; did you mean 'progress'?",
    ),
    "id-and-declared": ([((*ACME, "platform"), "Acme")], "integrations.acme: give either id"),
    "declared-incomplete": (
        [((*ACME, "id"), DELETE), ((*ACME, "platform"), "Acme"), ((*ACME, "group"), OID)],
        "integrations.acme: needs an id, or platform, group and author (missing: author)",
    ),
    "settings-with-id": (
        [((*ACME, "settings"), {"defaultProgress": 0})],
        "integrations.acme.settings: settings apply only to a declared integration",
    ),
    "no-objects": (
        [((*ACME, "courses"), DELETE), ((*ACME, "stats"), DELETE)],
        "integrations.acme: needs courses, stats or both",
    ),
    "timezone": (
        [((*SF, "firstActivityAt", "timezone"), "Europe/Pariss")],
        "unknown time zone 'Europe/Pariss'",
    ),
    "format-without-directive": (
        [((*SF, "firstActivityAt", "format"), "dd/mm/yyyy")],
        "has no strptime directive",
    ),
    "format-bad-directive": (
        [((*SF, "firstActivityAt", "format"), "%Y-%m-%d %Q")],
        "unusable datetime format '%Y-%m-%d %Q'",
    ),
    "unit-on-string": (
        [((*CF, "name"), {"column": "t", "unit": "s"})],
        "name.unit: unit applies to numbers only",
    ),
    "scale-on-boolean": (
        [((*CF, "name"), {"column": "t", "type": "boolean", "scale": 2})],
        "name.scale: scale applies to numbers only, not to a boolean",
    ),
    "format-on-number-target": (
        [((*SF, "progress"), {"column": "p", "format": "%Y"})],
        "progress.format: format applies to date-times only, not to a number",
    ),
    "timezone-on-integer": (
        [((*CF, "duration"), {"column": "m", "type": "integer", "timezone": "UTC"})],
        "duration.timezone: timezone applies to date-times only, not to an integer",
    ),
    "split-on-integer": (
        [((*CF, "subjects"), {"column": "t", "split": "|", "type": "integer"})],
        "subjects.split: split makes a list of strings, not an integer",
    ),
    "number-target-as-string": (
        [((*SF, "progress"), {"column": "p", "type": "string"})],
        "progress.type: progress is a number; type string cannot produce it",
    ),
    "datetime-target-as-integer": (
        [((*SF, "lastActivityAt"), {"column": "f", "type": "integer"})],
        "lastActivityAt.type: lastActivityAt is a date-time; type integer cannot produce it",
    ),
    "unit-on-datetime-target": (
        [((*SF, "lastActivityAt"), {"column": "f", "unit": "s"})],
        "lastActivityAt.unit: unit applies to numbers only, not to a date-time",
    ),
    "split-on-single-value": (
        [((*CF, "name"), {"column": "t", "split": ","})],
        "name.split: split makes a list, but name takes a single value",
    ),
    "template-unbalanced": (
        [((*CF, "launchUrl"), {"template": "https://x/{id"})],
        "launchUrl.template: invalid template",
    ),
    "template-empty-placeholder": (
        [((*CF, "launchUrl"), {"template": "https://x/{}"})],
        "must name a column",
    ),
    "share-over-100": ([((*ACME, "stats", "tolerate_invalid"), "150%")], "a share cannot exceed 100%"),
    "encoding": ([(("sources", "catalog", "encoding"), "utf-99")], "unknown encoding 'utf-99'"),
    "ledger-url": ([(("ledger",), "not a url")], "ledger: not a SQLAlchemy database URL"),
}


@pytest.mark.parametrize(("edits", "expected"), list(SEMANTIC_CASES.values()), ids=list(SEMANTIC_CASES))
def test_semantic_check(tmp_path: Path, edits: list[tuple[tuple[str, ...], Any]], expected: str) -> None:
    found = messages(tmp_path, changed(*edits))
    assert len(found) == 1, found
    assert expected in found[0]


def test_duplicate_keys_are_problems(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "  client_id: demo\n", "  client_id: demo\n  client_id: x\n"
    )
    assert problems(tmp_path, text) == ["5:3: api.client_id: duplicate key"]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    data = changed(
        (("api", "region"), "mars"),
        ((*ACME, "id"), "bad"),
        ((*SF, "firstActivityAt", "timezone"), "Nowhere/City"),
        ((*ACME, "courses", "source"), "nope"),
    )
    found = problems(tmp_path, data)
    assert len(found) == 4, found
    lines = [int(p.split(":")[0]) for p in found]
    assert lines == sorted(lines)


# --- YAML and file problems -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("version: 1\napi: [\n", "3:1: invalid YAML:", id="unclosed-flow"),
        pytest.param("version: 1\n\tapi: {}\n", "2:1: invalid YAML:", id="tab"),
        pytest.param("a: 1\n---\nb: 2\n", "invalid YAML: expected a single document", id="two-documents"),
        pytest.param("key: !!python/object:os.system x\n", "1:6: invalid YAML:", id="unsafe-tag"),
        pytest.param("", "1:1: the config is empty", id="empty"),
        pytest.param("- 1\n- 2\n", "1:1: config: must be a mapping", id="not-a-mapping"),
    ],
)
def test_malformed_yaml(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = problems(tmp_path, text)
    assert expected in problem


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert [str(p) for p in info.value.problems] == [f"{path}: config file not found"]


def test_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"version: 1\napi: \xff\xfe\n")  # not UTF-8
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    [problem] = info.value.problems
    assert problem.line is None and "cannot read the config file" in problem.message


def test_a_directory_without_its_main_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, {})
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path}: a config directory needs its main file syncer.yaml (version, api, ledger...); "
        "there is none"
    ]


# --- the built Config -----------------------------------------------------------------------


def test_build_api_and_ledger_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, changed((("api", "base_url"), DELETE))), {})
    assert config.api.base_url == REGIONS["eu"]
    assert config.api.client_secret == Secret(SECRET)
    assert (config.api.limits.concurrent_operations, config.api.limits.requests_per_second) == (3, 10.0)
    assert config.api.batch_size.archives == 1000
    assert config.api.timeout_seconds == 60.0
    assert config.ledger_url.reveal() == f"sqlite:///{tmp_path.resolve() / 'syncer.db'}"
    assert config.sources["catalog"].path == tmp_path.resolve() / "courses.csv"
    assert config.sources["progress"].delimiter == ";"
    assert SECRET not in repr(config)


def test_build_api_options(tmp_path: Path) -> None:
    api = {
        "region": "us",
        "client_id": "c",
        "client_secret": "s",
        "company_id": OID,
        "limits": {"concurrent_operations": 1, "requests_per_second": 2.5, "reads_per_second": 7},
        "batch_size": {"courses": 10, "stats": 20, "archives": 5},
        "timeout_seconds": 5,
        "retry_seconds": 30,
    }
    config = load_config(write(tmp_path, changed((("api",), api))), {})
    assert config.api.base_url == REGIONS["us"]
    assert config.api.company_id == OID
    assert config.api.limits.reads_per_second == 7.0 and config.api.limits.concurrent_operations == 1
    assert (config.api.batch_size.courses, config.api.batch_size.stats, config.api.batch_size.archives) == (
        10,
        20,
        5,
    )
    assert (config.api.timeout_seconds, config.api.retry_seconds) == (5.0, 30.0)
    over = load_config(write(tmp_path, changed((("api", "base_url"), "http://proxy:81/")), "o.yaml"), {})
    assert over.api.base_url == "http://proxy:81"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///state/l.db", "sqlite:///{folder}/state/l.db", id="relative-sqlite"),
        pytest.param("sqlite:////abs/l.db", "sqlite:////abs/l.db", id="absolute-sqlite"),
        pytest.param("sqlite://", "sqlite://", id="memory"),
        pytest.param("postgresql+psycopg://u:pw@db/x", "postgresql+psycopg://u:pw@db/x", id="postgres"),
    ],
)
def test_ledger_url(tmp_path: Path, url: str, expected: str) -> None:
    config = load_config(write(tmp_path, changed((("ledger",), url))), {})
    assert config.ledger_url.reveal() == expected.format(folder=tmp_path.resolve())


def test_build_sources(tmp_path: Path) -> None:
    sources = {
        "a": {"csv": "/data/a.csv", "encoding": "latin-1"},
        "b": {"jsonl": "sub/b.jsonl"},
        "c": {"sql": {"url": "postgresql://u:pw@h/db", "query": "select 1"}},
    }
    data = changed(
        (("sources",), sources), ((*ACME, "courses", "source"), "a"), ((*ACME, "stats", "source"), "b")
    )
    config = load_config(write(tmp_path, data), {})
    a, b, c = (config.sources[n] for n in "abc")
    assert (a.kind, a.path, a.encoding) == (SourceKind.CSV, Path("/data/a.csv"), "latin-1")
    assert (b.kind, b.path) == (SourceKind.JSONL, tmp_path.resolve() / "sub" / "b.jsonl")
    assert (c.kind, c.query, c.path) == (SourceKind.SQL, "select 1", None)
    assert c.url == Secret("postgresql://u:pw@h/db") and "pw" not in repr(config)


def test_build_integrations_fields_and_filters(tmp_path: Path) -> None:
    data = changed(
        ((*ACME, "stats", "tolerate_invalid"), "0.5%"),
        ((*ACME, "stats", "force_new"), True),
        ((*ACME, "courses", "tolerate_invalid"), 20),
        ((*ACME, "courses", "archive_missing"), True),
        ((*SF, "result"), {"column": "o", "map": {"PLACEHOLDER": "success", 1: "failed"}}),
        ((*SF, "course"), {"internalId": {"column": "cid", "trim": True}}),
        (
            (*ACME, "stats", "filter"),
            [
                {"column": "s", "not_in": ["deleted"]},
                {"column": "m", "not_empty": True},
                {"column": "x", "equals": 3},
            ],
        ),
    )
    # YAML reads an unquoted `yes` as true; the map keeps the text the user wrote.
    text = yaml.safe_dump(data, sort_keys=False).replace("PLACEHOLDER", "yes")
    config = load_config(write(tmp_path, text), {})
    acme = config.integrations["acme"]
    assert acme.id == OID and acme.platform is None and acme.where.startswith(f"{tmp_path / 'c.yaml'}:")
    assert acme.courses is not None and acme.stats is not None
    assert acme.courses.tolerate_invalid == Tolerance(count=20) and acme.courses.archive_missing
    assert acme.stats.tolerate_invalid == Tolerance(share=0.005) and acme.stats.force_new
    courses = {f.target: f for f in acme.courses.fields}
    stats = {f.target: f for f in acme.stats.fields}
    assert list(courses) == list(BASE["integrations"]["acme"]["courses"]["fields"])
    assert (courses["externalId"].column, courses["externalId"].type) == ("course_id", None)
    assert courses["launchUrl"].template == "https://acme.example/{course_id}"
    assert (courses["defaultLang"].default, courses["defaultLang"].has_default) == ("en", True)
    assert (courses["sources"].value, courses["sources"].has_value) == ([{"name": "Acme"}], True)
    assert courses["subjects"].split == "|"
    assert (stats["course"].identifier, stats["course"].column, stats["course"].trim) == (
        "internalId",
        "cid",
        True,
    )
    assert (stats["user"].identifier, stats["user"].column, stats["user"].lower) == ("mail", "email", True)
    assert (stats["progress"].scale, stats["timeSpent"].unit) == (100.0, "s")
    first = stats["firstActivityAt"]
    assert (first.format, first.timezone) == ("%d/%m/%Y %H:%M", "Europe/Paris")
    assert stats["result"].map == {"yes": "success", "1": "failed"}
    filters = acme.stats.filters
    assert [(f.column, f.op, f.value) for f in filters] == [
        ("s", FilterOp.NOT_IN, ("deleted",)),
        ("m", FilterOp.NOT_EMPTY, None),
        ("x", FilterOp.EQUALS, 3),
    ]


def test_declared_integration_and_types(tmp_path: Path) -> None:
    data = changed(
        ((*ACME, "id"), DELETE),
        ((*ACME, "platform"), "Acme Academy"),
        ((*ACME, "group"), OID),
        ((*ACME, "author"), OID.upper()),
        ((*ACME, "settings"), {"defaultProgress": 10, "defaultCompletion": True}),
        ((*CF, "duration"), {"column": "m", "type": "integer", "default": 30}),
    )
    acme = load_config(write(tmp_path, data), {}).integrations["acme"]
    assert (acme.id, acme.platform, acme.group, acme.author) == (None, "Acme Academy", OID, OID.upper())
    assert acme.settings == {"defaultProgress": 10, "defaultCompletion": True}
    assert acme.courses is not None
    duration = next(f for f in acme.courses.fields if f.target == "duration")
    assert (duration.type, duration.default) == (FieldType.INTEGER, 30)


def test_where_points_at_the_declaration(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    path = write(tmp_path, text)
    config = load_config(path, {})
    lines = text.splitlines()

    def at(needle: str, *, last: bool = False) -> str:
        found = [i for i, line in enumerate(lines) if line.strip().startswith(needle)]
        number = (found[-1] if last else found[0]) + 1
        col = lines[number - 1].index(needle) + 1
        return f"{path}:{number}:{col}"

    acme = config.integrations["acme"]
    assert acme.where == at("acme:")
    assert config.sources["progress"].where == at("progress:")
    assert acme.stats is not None and acme.stats.where == at("stats:")
    assert {f.target: f.where for f in acme.stats.fields}["timeSpent"] == at("timeSpent:")
    assert {f.target: f.where for f in acme.stats.fields}["course"] == at("externalId: course_id", last=True)


def test_digest_is_stable_and_excludes_secrets(tmp_path: Path) -> None:
    def digest(data: dict[str, Any], name: str, env: dict[str, str] | None = None) -> str:
        return load_config(write(tmp_path, data, name), env or {}).digest

    base = digest(BASE, "a.yaml")
    assert base == digest(BASE, "b.yaml")
    assert base == digest(changed((("api", "client_secret"), "other")), "c.yaml")
    assert base != digest(changed((("api", "client_id"), "other")), "d.yaml")
    via_env = changed((("api", "client_id"), "${ID}"))
    assert digest(via_env, "e.yaml", {"ID": "demo"}) == base  # the digest covers interpolated values


# --- the schema itself ----------------------------------------------------------------------


def test_schema_is_valid_2020_12_and_every_property_is_described() -> None:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    undocumented: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    undocumented.append(f"{where}/{name}")
            for key, sub in node.items():
                walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}/{i}")

    walk(schema, "#")
    assert undocumented == []
    assert json.dumps(schema)  # plain JSON data


def test_anchors_under_x_keys_are_reused(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    text = text.replace("integrations:\n", "x-defaults: &defaults\n  source: catalog\nintegrations:\n", 1)
    text = text.replace("    courses:\n      source: catalog\n", "    courses:\n      <<: *defaults\n", 1)
    assert "<<: *defaults" in text
    config = load_config(write(tmp_path, text), {})
    assert config.integrations["acme"].courses is not None
    assert config.integrations["acme"].courses.source == "catalog"
