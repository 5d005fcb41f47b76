"""The API's object schemas, compiled: a JSON Schema keyword subset -> straight Python code.

``build_checker`` turns a schema (``schemas/api/*.schema.json``) into one generated function
that returns the first (field path, reason) an object violates, or None: nothing is
interpreted per object, and the reasons read as jsonschema's. ``load_api_validator`` reads and
compiles the API's schema of one kind of object, once per process. The RFC 3339 date-time
test is the checker's own; the mapping's date-time parser uses it too, so that the checker
may trust what that parser returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from syncer import resources
from syncer.models import RecordKind

__all__ = [
    "ApiValidator",
    "Check",
    "build_checker",
    "is_datetime",
    "load_api_validator",
    "short_list",
]

Check = Callable[[Any], "tuple[str, str] | None"]
"""A compiled schema: the first (field path, reason) an object violates, or None when valid."""

_SCHEMA_FILES = {
    RecordKind.COURSE: "api/course.schema.json",
    RecordKind.STAT: "api/statistic.schema.json",
    RecordKind.ARCHIVE: "api/archive.schema.json",
}


class _Missing:
    """The marker of a property absent from a checked object (a None value is checked as such)."""


_MISSING: Any = _Missing()

_DATETIME = re.compile(
    r"^(\d{4})-(0[1-9]|1[0-2])-(\d{2})T(?:[01]\d|2[0123]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:Z|[+-](?:[01]\d|2[0123]):[0-5]\d)$",
    re.ASCII,
)
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_datetime(value: str) -> bool:
    """RFC 3339, exactly as jsonschema's "date-time" format checker reads it (upper-cased first)."""
    m = _DATETIME.match(value.upper())
    if m is None:
        return False
    if "01" <= m[3] <= "28" and m[1] != "0000":  # every month has these days
        return True
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if year == 0 or day < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= (_DAYS[month - 1] if month != 2 or leap else 28)


_NUM = (int, float)
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description"})
_KEYWORDS = frozenset(
    {"$ref", "type", "enum", "minimum", "maximum", "minLength", "pattern", "format", "required"}
    | {"properties", "additionalProperties", "items"}
)
# Python tests that a JSON value is of a JSON Schema type. Values are JSON-shaped (exact built-in
# types, as the mapper and json/orjson build them), so exact type checks are enough and fast; bool
# is not a number, and an integral float is an integer, as in jsonschema.
_IS_TYPE = {
    "string": "type({v}) is str",
    "number": "type({v}) in _NUM",
    "integer": "(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
    "boolean": "type({v}) is bool",
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "null": "{v} is None",
}
_PathPart = tuple[str, str]  # ("s", property name) or ("k", key variable) or ("i", index variable)


def short_list(values: list[str]) -> str:
    """The values for a message: the first six, then how many more."""
    shown = ", ".join(repr(v) for v in values[:6])
    return f"[{shown}]" if len(values) <= 6 else f"[{shown}, ... {len(values) - 6} more]"


def _render(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if type(part) is int:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _CheckerSource:
    """Generates the Python source of one schema's checker (straight-line code, no interpretation)."""

    def __init__(
        self,
        root: Mapping[str, Any],
        trusted: frozenset[str] = frozenset(),
        present: frozenset[str] | None = None,
    ) -> None:
        self.root = root
        self.trusted = trusted
        self.present = present
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "_M": _MISSING,
            "_NUM": _NUM,
            "_dt": is_datetime,
            "_r": repr,
            "_p": _render,
        }
        self.count = 0

    def fresh(self, prefix: str, value: Any = None) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        if value is not None:
            self.env[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    @staticmethod
    def path(parts: list[_PathPart]) -> str:
        if all(kind == "s" for kind, _ in parts):
            return repr(_render(tuple(name for _, name in parts)))
        items = [repr(name) if kind == "s" else name for kind, name in parts]
        return f"_p(({', '.join(items)},))"

    def fail(self, depth: int, cond: str, parts: list[_PathPart], message: str) -> None:
        self.emit(depth, f"if {cond}:")
        self.emit(depth + 1, f"return ({self.path(parts)}, {message})")

    def node(
        self, schema: Mapping[str, Any], v: str, parts: list[_PathPart], depth: int, hops: int = 0
    ) -> None:
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/$defs/") or len(schema) != 1 or hops > 20:
                raise ValueError(f"unsupported $ref {ref!r}: only a lone, non-recursive '#/$defs/NAME'")
            self.node(self.root["$defs"][ref.removeprefix("#/$defs/")], v, parts, depth, hops + 1)
            return
        unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
        if unknown:
            raise ValueError(f"unsupported JSON Schema keyword(s): {', '.join(sorted(unknown))}")
        known = schema.get("type") if isinstance(schema.get("type"), str) else None
        if "type" in schema:
            names = [schema["type"]] if known else list(schema["type"])
            test = " or ".join(_IS_TYPE[n].format(v=v) for n in names)
            label = " or ".join(repr(n) for n in names)
            self.fail(depth, f"not ({test})", parts, f"_r({v}) + {f' is not of type {label}'!r}")

        def guard(kind: str) -> str:
            # Keywords only apply to their own type: skip the test when "type" already proved it.
            if known == kind or (kind == "number" and known == "integer"):
                return ""
            return _IS_TYPE[kind].format(v=v) + " and "

        if "enum" in schema:
            values = list(schema["enum"])
            if not all(isinstance(e, str) for e in values):
                raise ValueError("only string enums are supported")
            name = self.fresh("enum", frozenset(values))
            shown = f" is not one of {short_list(list(dict.fromkeys(values)))}"
            cond = (
                f"{v} not in {name}" if known == "string" else f"(type({v}) is not str or {v} not in {name})"
            )
            self.fail(depth, cond, parts, f"_r({v}) + {shown!r}")
        for word, op, text in (
            ("minimum", "<", "less than the minimum"),
            ("maximum", ">", "greater than the maximum"),
        ):
            if word in schema:
                bound = schema[word]
                self.fail(
                    depth,
                    f"{guard('number')}{v} {op} {bound!r}",
                    parts,
                    f"_r({v}) + {f' is {text} of {bound}'!r}",
                )
        if "minLength" in schema:
            n = schema["minLength"]
            why = " should be non-empty" if n == 1 else f" is shorter than {n} characters"
            self.fail(depth, f"{guard('string')}len({v}) < {n!r}", parts, f"_r({v}) + {why!r}")
        if "pattern" in schema:
            rx = self.fresh("rx", re.compile(schema["pattern"]))
            why = f" does not match {schema['pattern']!r}"
            self.fail(depth, f"{guard('string')}{rx}.search({v}) is None", parts, f"_r({v}) + {why!r}")
        if schema.get("format") == "date-time" and not (  # other formats are annotations only
            len(parts) == 1 and parts[0][0] == "s" and parts[0][1] in self.trusted
        ):
            self.fail(depth, f"{guard('string')}not _dt({v})", parts, f"_r({v}) + \" is not a 'date-time'\"")
        if {"required", "properties", "additionalProperties"} & set(schema):
            inner = depth
            if known != "object":
                self.emit(depth, f"if {_IS_TYPE['object'].format(v=v)}:")
                inner = depth + 1
                self.emit(inner, "pass")
            self.object(schema, v, parts, inner)
        if "items" in schema:
            inner = depth
            if known != "array":
                self.emit(depth, f"if {_IS_TYPE['array'].format(v=v)}:")
                inner = depth + 1
            i, x = self.fresh("i"), self.fresh("x")
            self.emit(inner, f"for {i}, {x} in enumerate({v}):")
            mark = len(self.lines)
            self.node(schema["items"], x, [*parts, ("i", i)], inner + 1)
            if len(self.lines) == mark:
                del self.lines[mark - 1 :]  # items: {} checks nothing
                if inner != depth:
                    self.emit(inner, "pass")

    def object(self, schema: Mapping[str, Any], v: str, parts: list[_PathPart], depth: int) -> None:
        for name in schema.get("required", ()):
            self.fail(
                depth, f"{name!r} not in {v}", [*parts, ("s", name)], repr(f"{name!r} is a required property")
            )
        required = frozenset(schema.get("required", ()))
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name, sub in properties.items():
            if not parts and self.present is not None and name not in self.present:
                continue  # the caller's objects never hold it
            x = self.fresh("x")
            if name in required:  # checked above: present
                self.emit(depth, f"{x} = {v}[{name!r}]")
                self.node(sub, x, [*parts, ("s", name)], depth)
                continue
            self.emit(depth, f"{x} = {v}.get({name!r}, _M)")
            self.emit(depth, f"if {x} is not _M:")
            mark = len(self.lines)
            self.node(sub, x, [*parts, ("s", name)], depth + 1)
            if len(self.lines) == mark:
                del self.lines[mark - 2 :]
        extra = schema.get("additionalProperties", True)
        if extra is True:
            return
        known = self.fresh("known", frozenset(properties))
        k = self.fresh("k")
        self.emit(depth, f"for {k}, {k}v in {v}.items():")
        self.emit(depth + 1, f"if {k} not in {known}:")
        if extra is False:
            self.emit(
                depth + 2, f"return ({self.path([*parts, ('k', k)])}, 'is not allowed (unknown field)')"
            )
        else:
            mark = len(self.lines)
            self.node(extra, f"{k}v", [*parts, ("k", k)], depth + 2)
            if len(self.lines) == mark:
                self.emit(depth + 2, "pass")


def build_checker(
    schema: Mapping[str, Any], trusted: Iterable[str] = (), present: Iterable[str] | None = None
) -> Check:
    """Compile a JSON Schema of the keyword subset the API schemas use into straight Python code.

    Supported: type, enum (strings), required, properties, additionalProperties, minimum,
    maximum, minLength, pattern, items, format date-time, and local ``$ref`` to ``$defs``.
    Anything else raises ValueError, so a schema never silently checks less than it says.
    ``trusted`` names top-level properties whose ``format`` the caller has already checked
    (the mapper's date-time parser only produces valid date-times): their type is still checked.
    ``present``, when given, names every top-level property the checked objects can hold: the
    others are not looked up (the mapper's payloads hold only the fields the config declares).
    """
    gen = _CheckerSource(schema, frozenset(trusted), None if present is None else frozenset(present))
    gen.emit(0, "def check(v0):")
    gen.node(schema, "v0", [], 1)
    gen.emit(1, "return None")
    source = "\n".join(gen.lines)
    code = compile(source, f"<checker {schema.get('$id', 'schema')}>", "exec")
    exec(code, gen.env)
    check: Check = gen.env["check"]
    return check


@dataclass(frozen=True, slots=True)
class ApiValidator:
    """The API's field rules for one kind of object, compiled: ``check(obj)`` -> (field, reason) or None."""

    kind: RecordKind
    schema: Mapping[str, Any]
    check: Check


@cache
def load_api_validator(kind: RecordKind) -> ApiValidator:
    """Read and compile ``schemas/api/<kind>.schema.json`` (once per process)."""
    schema = json.loads(resources.schema_path(_SCHEMA_FILES[kind]).read_text("utf-8"))
    return ApiValidator(kind, schema, build_checker(schema))
