"""The official OpenAPI spec as referee for schemas/api/*.schema.json and for the compiled checker.

Hypothesis builds valid API objects, then mutates them (drops required fields, swaps in values
of the wrong type, numbers out of range, unknown enum values, empty strings, extra and nested
values) and asserts that:

1. our schema files accept and reject exactly what the official component schemas do;
2. the checker compiled from our files (``build_checker``) agrees with jsonschema on them.

The extract keeps property names such as ``description`` (only prose keys are dropped), so
every property of the official schemas takes part in the comparison.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from syncer import resources
from syncer.mapping import build_checker, load_api_validator
from syncer.models import RecordKind
from tests.openapi import referee

OURS = {
    "course": ("api/course.schema.json", "ExternalCourseDTO", RecordKind.COURSE),
    "statistic": ("api/statistic.schema.json", "ImportExternalStatisticsDTO", RecordKind.STAT),
    "archive": ("api/archive.schema.json", "ArchiveExternalCourseDTO", RecordKind.ARCHIVE),
}
UNTESTED_KEYS: set[str] = set()  # every key of the official schemas is compared


def our_schema(name: str) -> dict[str, Any]:
    return json.loads(resources.schema_path(OURS[name][0]).read_text("utf-8"))  # type: ignore[no-any-return]


def our_validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(our_schema(name), format_checker=FormatChecker())


LANGS = sorted(
    set(
        referee.facts()["bulk"]["components"]["schemas"]["ImportExternalStatisticsDTO"]["properties"]["lang"][
            "enum"
        ]
    )
)

# --- valid objects -----------------------------------------------------------------------------

text = st.text(min_size=1, max_size=6)
hex24 = st.from_regex(r"\A[a-fA-F0-9]{24}\Z")
iso = st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z")
percent = st.integers(0, 100) | st.floats(0, 100)
translation = st.fixed_dictionaries(
    {
        "lang": st.sampled_from(LANGS),
        "translatedFields": st.fixed_dictionaries(
            {},
            optional={
                "name": text,
                "launchUrl": text,
                "mobileLaunchUrl": text,
                "subjects": st.lists(text, max_size=2),
            },
        ),
    }
)
VALID = {
    "course": st.fixed_dictionaries(
        {
            "defaultLang": st.sampled_from(LANGS),
            "externalId": text,
            "launchUrl": text,
            "name": text,
            "sources": st.lists(
                st.fixed_dictionaries({"name": text}, optional={"logoUrl": text}), max_size=2
            ),
            "subjects": st.lists(text, max_size=3),
        },
        optional={
            "contentType": st.sampled_from(["article", "course", "video", "linkedContent", "topvoice"]),
            "difficultyLevel": st.sampled_from(["advanced", "beginner", "intermediate"]),
            "duration": st.integers(1, 100_000),
            "imageUrl": text,
            "mobileLaunchUrl": text,
            "authorId": hex24,
            "translations": st.lists(translation, max_size=2),
        },
    ),
    "statistic": st.fixed_dictionaries(
        {
            "courseIdentifier": st.fixed_dictionaries(
                {"type": st.sampled_from(["externalId", "internalId"]), "value": text}
            ),
            "userIdentifier": st.fixed_dictionaries(
                {"type": st.sampled_from(["mail", "internalId"]), "value": text}
            ),
            "progress": percent,
            "timeSpent": st.integers(1, 10**9) | st.floats(1, 1e9),
            "firstActivityAt": iso,
            "lastActivityAt": iso,
        },
        optional={
            "forceNew": st.booleans(),
            "score": percent,
            "result": st.sampled_from(["success", "failed"]),
            "lang": st.sampled_from(LANGS),
        },
    ),
    "archive": st.fixed_dictionaries({"externalId": text}),
}

# --- mutations ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
TRICKY = [
    "",
    " ",
    "x",
    "en",
    "EN",
    "el",
    "zh_tw",
    "zh_TW",
    "success",
    "Success",
    "mail",
    "externalId",
    "507f1f77bcf86cd799439011",
    "507f1f77bcf86cd79943901",
    "507f1f77bcf86cd799439011\n",
    "2024-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01 00:00:00Z",
    "2024-01-01",
    "2024-01-01t10:00:00z",
    "0000-01-01T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-02-29T00:00:00+01:00",
    0,
    1,
    -1,
    0.5,
    1.0,
    99.99,
    100,
    100.0,
    100.0001,
    100_000,
    100_001,
    1e308,
    -0.0,
    True,
    False,
    None,
    [],
    {},
    [""],
    [{}],
    [{"name": ""}],
    [{"lang": "en"}],
    [{"lang": "xx", "translatedFields": {}}],
    {"type": "mail"},
    {"type": "mail", "value": ""},
    {"type": "other", "value": "x"},
]
tricky = st.sampled_from(TRICKY)
# Values at and around each field's limits, so that a wrong bound is found in a few hundred draws.
AROUND = {
    "progress": [-1, -0.001, 0, 0.0, 99.999, 100, 100.0, 100.001, 101],
    "score": [-1, -0.001, 0, 100, 100.001, 101],
    "timeSpent": [-1, 0, 0.0, 0.5, 0.999, 1, 1.0, 1.5],
    "duration": [0, 1, 1.0, 1.5, 2.0, 99_999.5, 100_000, 100_000.0, 100_001],
    "authorId": [
        "507f1f77bcf86cd799439011",
        "507F1F77BCF86CD79943901A",
        "507f1f77bcf86cd79943901g",
        "507f1f77bcf86cd79943901",
    ],
    "forceNew": [True, False, 0, 1, "true"],
    "type": ["mail", "internalId", "externalId", "Mail", ""],
}


def replacement(key: Any) -> st.SearchStrategy[Any]:
    """What to put at ``key``: a boundary value of that field, a tricky value, or any JSON value."""
    around = st.sampled_from(AROUND[key]) if key in AROUND else tricky
    return (around | tricky | json_values).map(copy.deepcopy)  # never mutate the shared constants


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, (*prefix, i))
    return found


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    obj = copy.deepcopy(draw(VALID[name]))
    for _ in range(draw(st.integers(0, 3))):
        everywhere = paths(obj)
        top = [p for p in everywhere if len(p) == 1]
        where = draw(st.sampled_from(top if top and draw(st.booleans()) else everywhere))
        if not where:
            if draw(st.booleans()):
                return draw(replacement(None))  # not an object at all
            continue
        parent, last = at(obj, where[:-1]), where[-1]
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete":
            if isinstance(parent, dict):
                del parent[last]
            else:
                parent.pop(last)
        elif action == "replace":
            parent[last] = draw(replacement(last))
        elif isinstance(parent, dict):
            key = draw(
                st.sampled_from(
                    [*sorted(parent), "extra", "forceNew", "score", "lang", "authorId", "duration"]
                )
            )
            parent[key] = draw(replacement(key))
        else:
            parent.append(draw(replacement(None)))
    return obj


def has_untested_key(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(UNTESTED_KEYS & set(value)) or any(has_untested_key(v) for v in value.values())
    if isinstance(value, list):
        return any(has_untested_key(v) for v in value)
    return False


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", list(OURS))
@SETTINGS
@given(data=st.data())
def test_our_schema_agrees_with_the_official_one(name: str, data: st.DataObject) -> None:
    obj = data.draw(mutated(name))
    if has_untested_key(obj):
        return
    official = referee.component("bulk", OURS[name][1])
    assert our_validator(name).is_valid(obj) == official.is_valid(obj), obj


@pytest.mark.parametrize("name", list(OURS))
@SETTINGS
@given(data=st.data())
def test_compiled_checker_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    obj = data.draw(mutated(name) | json_values)
    problem = load_api_validator(OURS[name][2]).check(obj)
    assert (problem is None) == our_validator(name).is_valid(obj), (obj, problem)


RICH = {
    "course": {
        "defaultLang": "fr",
        "externalId": "c1",
        "launchUrl": "https://x/c1",
        "name": "Intro",
        "sources": [{"name": "Acme", "logoUrl": "https://x/logo.png"}],
        "subjects": ["a", "b"],
        "contentType": "video",
        "difficultyLevel": "beginner",
        "duration": 30,
        "imageUrl": "https://x/i.png",
        "mobileLaunchUrl": "https://m/c1",
        "authorId": "507f1f77bcf86cd799439011",
        "translations": [
            {
                "lang": "en",
                "translatedFields": {
                    "name": "N",
                    "launchUrl": "u",
                    "mobileLaunchUrl": "m",
                    "subjects": ["s"],
                },
            }
        ],
    },
    "statistic": {
        "courseIdentifier": {"type": "externalId", "value": "c1"},
        "userIdentifier": {"type": "mail", "value": "a@x.io"},
        "progress": 50,
        "timeSpent": 1000,
        "firstActivityAt": "2024-01-01T10:00:00.000Z",
        "lastActivityAt": "2024-01-01T11:00:00.000Z",
        "forceNew": False,
        "score": 80,
        "result": "success",
        "lang": "de",
    },
    "archive": {"externalId": "c1"},
}
CANDIDATES = [v for values in AROUND.values() for v in values] + TRICKY


@pytest.mark.parametrize("name", list(OURS))
def test_every_single_change_gets_the_official_verdict(name: str) -> None:
    """Deterministic complement: each location of a full object, dropped or set to each candidate."""
    official, ours = referee.component("bulk", OURS[name][1]), our_validator(name)
    check = load_api_validator(OURS[name][2]).check
    assert official.is_valid(RICH[name]) and ours.is_valid(RICH[name])
    compared = 0
    for where in paths(RICH[name])[1:]:
        for value in ["<drop>", *CANDIDATES]:
            obj = copy.deepcopy(RICH[name])
            parent = at(obj, where[:-1])
            if value == "<drop>":
                parent.pop(where[-1])
            else:
                parent[where[-1]] = copy.deepcopy(value)
            verdict = official.is_valid(obj)
            assert ours.is_valid(obj) == verdict, (where, value)
            assert (check(obj) is None) == verdict, (where, value)
            compared += 1
    assert compared >= len(CANDIDATES)


@pytest.mark.parametrize("name", list(OURS))
def test_valid_objects_really_occur(name: str) -> None:
    # Guard against a vacuous comparison: the generator yields both verdicts.
    verdicts = set()

    @settings(max_examples=200, deadline=None)
    @given(obj=mutated(name))
    def collect(obj: Any) -> None:
        verdicts.add(our_validator(name).is_valid(obj))

    collect()
    assert verdicts == {True, False}


@pytest.mark.parametrize("name", list(OURS))
def test_schema_files_are_valid_2020_12(name: str) -> None:
    schema = our_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "additionalProperties" in schema["$comment"]


def test_language_list_is_the_official_one() -> None:
    assert sorted(our_schema("course")["$defs"]["lang"]["enum"]) == LANGS
    assert sorted(our_schema("statistic")["$defs"]["lang"]["enum"]) == LANGS
    assert len(LANGS) == 79


def test_referee_knows_the_description_property() -> None:
    official = referee.component("bulk", "ExternalCourseDTO")
    course = {
        "defaultLang": "en",
        "externalId": "x",
        "launchUrl": "u",
        "name": "n",
        "sources": [],
        "subjects": [],
    }
    assert not official.is_valid({**course, "description": ""})


def test_our_schema_checks_description() -> None:
    course = {
        "defaultLang": "en",
        "externalId": "x",
        "launchUrl": "u",
        "name": "n",
        "sources": [],
        "subjects": [],
    }
    check = load_api_validator(RecordKind.COURSE).check
    assert check({**course, "description": "About"}) is None
    assert check({**course, "description": ""}) == ("description", "'' should be non-empty")


CHECKER_ERRORS = [
    pytest.param({"type": "string", "maxLength": 3}, "maxLength", id="unknown-keyword"),
    pytest.param({"$ref": "https://example.com/x.json"}, r"unsupported \$ref", id="remote-ref"),
    pytest.param({"enum": [1, 2]}, "only string enums", id="number-enum"),
]


@pytest.mark.parametrize(("schema", "message"), CHECKER_ERRORS)
def test_build_checker_refuses_what_it_cannot_check(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_checker(schema)


def test_additional_properties_false_and_schema() -> None:
    closed = build_checker({"type": "object", "properties": {"a": {}}, "additionalProperties": False})
    assert closed({"a": 1}) is None
    assert closed({"a": 1, "b": 2}) == ("b", "is not allowed (unknown field)")
    typed = build_checker({"type": "object", "additionalProperties": {"type": "integer"}})
    assert typed({"x": 1, "y": "no"}) == ("y", "'no' is not of type 'integer'")
