"""Pure: turn source rows into API objects (Record) or InvalidRow, per the config's field rules.

Field specs and the API object schemas (``schemas/api/*.schema.json``) are compiled once into
closures, so the per-row path does no schema interpretation and no config parsing: it runs
for every row of sources with millions of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from functools import cache
from itertools import islice
from string import Formatter
from typing import Any
from weakref import WeakSet
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from syncer import resources
from syncer.config import (
    Config,
    FieldSpec,
    FieldType,
    FilterOp,
    FilterSpec,
    IntegrationConfig,
    ObjectConfig,
    SourceConfig,
)
from syncer.errors import ConfigError, Problem, SourceError
from syncer.models import (
    InvalidRow,
    Record,
    RecordKind,
    Row,
    StagedRow,
    content_hash,
    stat_group,
    stat_key,
)
from syncer.sources import load_columns, load_rows

__all__ = [
    "ApiValidator",
    "Check",
    "Mapper",
    "build_checker",
    "build_mapper",
    "check_columns",
    "load_api_validator",
    "map_source",
]

Check = Callable[[Any], "tuple[str, str] | None"]
"""A compiled schema: the first (field path, reason) an object violates, or None when valid."""

_SCHEMA_FILES = {
    RecordKind.COURSE: "api/course.schema.json",
    RecordKind.STAT: "api/statistic.schema.json",
    RecordKind.ARCHIVE: "api/archive.schema.json",
}
# The statistic's `course`/`user` config fields become the API's identifier objects.
_IDENTIFIERS = {"course": "courseIdentifier", "user": "userIdentifier"}
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_TRUE = frozenset({"true", "yes", "y", "t", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "f", "0", "off"})


class _Bad(Exception):
    """A value that cannot become its field (internal: becomes an InvalidRow)."""


class _Missing:
    """The marker of a missing value (an absent key, None, or an empty string)."""


_MISSING: Any = _Missing()
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_blake2b = hashlib.blake2b

# --- the compiled schema checker ---------------------------------------------------------------

_DATETIME = re.compile(
    r"^(\d{4})-(0[1-9]|1[0-2])-(\d{2})T(?:[01]\d|2[0123]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:Z|[+-](?:[01]\d|2[0123]):[0-5]\d)$",
    re.ASCII,
)
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_datetime(value: str) -> bool:
    # RFC 3339 exactly as jsonschema's "date-time" format checker reads it (upper-cased first).
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


def _short(values: list[str]) -> str:
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
            "_dt": _is_datetime,
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
            shown = f" is not one of {_short(list(dict.fromkeys(values)))}"
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


# --- value transforms --------------------------------------------------------------------------


def _number(v: Any) -> int | float:
    """A JSON number; integral values become int so that 50, 50.0 and "50" hash alike."""
    if type(v) is str:
        text = v.strip()
        if text.isdigit():  # the common case, and exact beyond 2**53
            return int(text)
        try:
            number = float(text)
        except ValueError:
            raise _Bad(f"{v!r} is not a number") from None
        if "_" in text or not math.isfinite(number):  # float() takes "1_000" and "nan": a cell should not
            raise _Bad(f"{v!r} is not a number")
        return int(number) if number.is_integer() else number
    if type(v) is int:
        return v
    elif isinstance(v, float | Decimal) or (isinstance(v, int) and not isinstance(v, bool)):
        v = float(v)
    if type(v) is not float or not math.isfinite(v):
        raise _Bad(f"{v!r} is not a number")
    return int(v) if v.is_integer() else v


def _scaled(v: float) -> int | float:
    # Round away binary noise (0.7 * 100 = 70.00000000000001) before the integral check.
    v = round(v, 9)
    return v if type(v) is int or not v.is_integer() else int(v)


def _integer(v: Any) -> int:
    n = _number(v)
    if type(n) is not int:
        raise _Bad(f"{v!r} is not an integer")
    return n


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(f"{v!r} is not a boolean (true/false, yes/no, 1/0)")


def _string(v: Any) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float | Decimal):
        return str(_number(v))
    return v  # lists and objects: the schema check names the wrong type


def _utc_text(dt: datetime) -> str:
    # isoformat is C code; an aware UTC datetime ends in "+00:00", which the API spells "Z".
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@cache
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


# strptime directives the fast path reads with a regex: all-digit fields, then datetime(...).
_FAST = {"d": "day", "m": "month", "Y": "year", "H": "hour", "M": "minute", "S": "second", "f": "micro"}
_FAST_WIDTH = {"Y": "4", "f": "1,6"}


def _fast_format(fmt: str) -> re.Pattern[str] | None:
    """A regex equivalent to strptime(fmt) for numeric formats such as ``%d/%m/%Y %H:%M``."""
    out, i = ["(?i)"], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            code = fmt[i + 1 : i + 2]
            if code == "%":
                out.append("%")
            elif code in _FAST:
                out.append(rf"(?P<{_FAST[code]}>\d{{{_FAST_WIDTH.get(code, '1,2')}}})")
            else:
                return None
            i += 2
            continue
        out.append(r"\s+" if ch.isspace() else re.escape(ch))
        i += 1
    text = "".join(out)
    if "year" not in text or "day" not in text or "month" not in text:
        return None
    try:
        return re.compile(text, re.ASCII)
    except re.error:  # a directive given twice: leave it to strptime's own message
        return None


# The date-time parsers the mapper built: a field whose last step is one of them needs no
# schema "date-time" check (the parser only returns RFC 3339 text).
_DATETIME_PARSERS: WeakSet[Callable[[Any], str]] = WeakSet()


def _datetime_parser(fmt: str | None, zone: tzinfo) -> Callable[[Any], str]:
    fast = _fast_format(fmt) if fmt else None
    seen: dict[str, str] = {}  # statistics repeat their timestamps: remember recent answers

    def strict(v: str) -> datetime:
        if fmt is None:
            try:
                return datetime.fromisoformat(v)
            except ValueError:
                raise _Bad(f"{v!r} is not an ISO 8601 date-time") from None
        try:
            if fast is not None:
                m = fast.fullmatch(v)
                if m is None:
                    raise ValueError(v)
                g = m.groupdict()
                micro = (g.get("micro") or "0").ljust(6, "0")
                return datetime(
                    int(g["year"]), int(g["month"]), int(g["day"]), int(g.get("hour") or 0),
                    int(g.get("minute") or 0), int(g.get("second") or 0), int(micro),
                )  # fmt: skip
            return datetime.strptime(v, fmt)
        except ValueError:
            raise _Bad(f"{v!r} does not match format {fmt!r}") from None

    def parse(v: Any) -> str:
        if type(v) is str:
            # Already in the API's own form (``2024-04-27T21:41:00.000Z``): nothing to convert.
            # The RFC 3339 check is the schema's own, so the schema check can trust the result.
            if fmt is None and len(v) == 24 and v[23] == "Z" and v[10] == "T" and _is_datetime(v):
                return v
            known = seen.get(v)
            if known is not None:
                return known
            dt = strict(v)
            if len(seen) >= 4096:
                seen.clear()
            seen[v] = text = convert(v, dt)
            return text
        if isinstance(v, datetime):
            return convert(v, v)
        if isinstance(v, date):
            return convert(v, datetime(v.year, v.month, v.day))
        raise _Bad(f"{v!r} is not a date-time")

    def convert(v: Any, dt: datetime) -> str:
        try:
            return _utc_text(dt if dt.tzinfo is not None else dt.replace(tzinfo=zone))
        except (OverflowError, ValueError):
            raise _Bad(f"{v!r} is out of the supported date range") from None

    _DATETIME_PARSERS.add(parse)
    return parse


def _split(sep: str) -> Callable[[Any], Any]:
    def split(v: Any) -> Any:
        parts = v.split(sep) if isinstance(v, str) else v if isinstance(v, list) else [v]
        return [s for s in (str(p).strip() for p in parts) if s]

    return split


def _lower(v: Any) -> Any:
    if isinstance(v, str):
        return v.lower()
    if isinstance(v, list):
        return [s.lower() if isinstance(s, str) else s for s in v]
    return v


def _text(v: Any) -> str:
    """A value as the string a CSV would hold (filters and maps compare strings)."""
    if type(v) is str:
        return v
    if isinstance(v, bool) or v is None:
        return "" if v is None else ("true" if v else "false")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _mapper(table: Mapping[Any, Any], label: str) -> Callable[[Any], Any]:
    lookup = {_text(k): v for k, v in table.items()}
    known = _short(list(lookup))

    def translate(v: Any) -> Any:
        try:
            return lookup[v if type(v) is str else _text(v)]
        except KeyError:
            raise _Bad(f"{v!r} is not in the map of {label} (known: {known})") from None

    return translate


def _implicit_type(prop: Mapping[str, Any]) -> FieldType | None:
    kind = str(prop.get("type"))
    if kind == "string":
        return FieldType.DATETIME if prop.get("format") == "date-time" else FieldType.STRING
    return {"number": FieldType.NUMBER, "integer": FieldType.INTEGER, "boolean": FieldType.BOOLEAN}.get(kind)


def _steps(spec: FieldSpec, prop: Mapping[str, Any], label: str) -> list[Callable[[Any], Any]]:
    """Transforms after trim and default, in FieldSpec's order: map, split, lower, type, unit, scale."""
    steps: list[Callable[[Any], Any]] = []
    if spec.map is not None:
        steps.append(_mapper(spec.map, label))
    if spec.split is not None:
        steps.append(_split(spec.split))
    if spec.lower or spec.identifier == "mail":
        steps.append(_lower)
    kind = spec.type
    if kind is None:
        kind = FieldType.DATETIME if spec.format or spec.timezone else _implicit_type(prop)
        if kind is FieldType.INTEGER and (spec.unit or spec.scale is not None):
            kind = FieldType.NUMBER  # scale first; the API check then wants an integer result
        if spec.split is not None and kind is FieldType.STRING:
            kind = None  # a split field is a list of strings already
    if kind is FieldType.DATETIME:
        steps.append(_datetime_parser(spec.format, _zone(spec.timezone) if spec.timezone else UTC))
    elif kind is FieldType.INTEGER:
        steps.append(_integer)
    elif kind is FieldType.NUMBER or (
        (spec.unit or spec.scale is not None) and kind is not FieldType.BOOLEAN
    ):
        steps.append(_number)
    elif kind is FieldType.BOOLEAN:
        steps.append(_boolean)
    elif kind is FieldType.STRING:
        steps.append(_string)
    if spec.unit:
        factor = _UNIT_MS[spec.unit]
        steps.append(lambda v: round(v * factor))
    if spec.scale is not None:
        scale = spec.scale
        steps.append(lambda v: _scaled(v * scale))
    return steps


def _apply(steps: list[Callable[[Any], Any]], value: Any) -> Any:
    for step in steps:
        value = step(value)
    return value


# --- the row function: fields and filters compiled into straight Python code -------------------


def _template(text: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    parts = [(literal, name) for literal, name, _spec, _conv in Formatter().parse(text)]
    return parts, [name for _lit, name in parts if name]


def _template_reader(text: str) -> Callable[[Mapping[str, Any]], str | None]:
    parts, _names = _template(text)

    def read(values: Mapping[str, Any]) -> str | None:
        out = []
        for literal, name in parts:
            out.append(literal)
            if name:
                v = values.get(name)
                if v is None or v == "":
                    return None
                out.append(v if type(v) is str else _text(v))
        return "".join(out)

    return read


def _filter(spec: FilterSpec) -> Callable[[Mapping[str, Any]], bool]:
    column, op = spec.column, spec.op
    if op in (FilterOp.EMPTY, FilterOp.NOT_EMPTY):
        want = op is FilterOp.EMPTY
        return lambda values: (values.get(column) in (None, "")) is want
    if op in (FilterOp.EQUALS, FilterOp.NOT_EQUALS):
        target, want = _text(spec.value), op is FilterOp.EQUALS
        return lambda values: (_text(values.get(column)) == target) is want
    raw = spec.value if isinstance(spec.value, list | tuple | set | frozenset) else [spec.value]
    allowed, want = frozenset(_text(v) for v in raw), op is FilterOp.IN
    return lambda values: (_text(values.get(column)) in allowed) is want


class _RowSource:
    """Generates the row function: filters, then each field inline, then the schema check."""

    def __init__(self) -> None:
        self.lines: list[str] = []  # the fields' code, inside the row function's try block
        self.env: dict[str, Any] = {"_Bad": _Bad}
        self.count = 0
        self.trusted: set[str] = set()  # fields whose date-time format the parser guarantees

    def const(self, value: Any) -> str:
        self.count += 1
        self.env[f"c{self.count}"] = value
        return f"c{self.count}"

    def field(
        self, target: str, spec: FieldSpec, prop: Mapping[str, Any], required: bool, ident: str | None
    ) -> None:
        label = f"column {spec.column!r}" if spec.column is not None else f"field {spec.target!r}"
        steps = _steps(spec, prop, label)
        if steps and not ident and steps[-1] in _DATETIME_PARSERS:
            self.trusted.add(target)
        wrap = (lambda v: {"type": ident, "value": v}) if ident else (lambda v: v)
        emit = self.lines.append
        emit(f"        field = {target!r}")
        if spec.has_value:  # constants are converted once, here; _Bad is the caller's config error
            emit(f"        payload[{target!r}] = {self.const(wrap(_apply(steps, spec.value)))}")
            return
        if spec.template is not None:
            emit(f"        v = {self.const(_template_reader(spec.template))}(values)")
            names, suffix = _template(spec.template)[1], f" (template {spec.template!r})"
        else:
            emit(f"        v = values.get({spec.column!r})")
            names, suffix = [spec.column or ""], ""
        if spec.trim or spec.identifier == "mail":
            emit("        if type(v) is str: v = v.strip()")
        emit('        if v is None or v == "":')
        if spec.has_default and spec.default not in (None, ""):
            emit(f"            payload[{target!r}] = {self.const(wrap(_apply(steps, spec.default)))}")
        elif spec.split is not None:  # an empty cell is an empty list (no subjects), not a gap
            emit(f"            payload[{target!r}] = {self.const(wrap(_apply(steps, '')))}")
        elif required and len(names) == 1:
            emit(f"            raise _Bad({f'missing value in column {names[0]!r}{suffix}'!r})")
        elif required:
            emit(f"            raise _Bad({self.const(_first_missing(names, suffix))}(values))")
        else:
            emit("            pass")
        call = "v"
        for step in steps:
            call = f"{self.const(step)}({call})"
        if ident:
            call = f"{{'type': {ident!r}, 'value': {call}}}"
        emit("        else:")
        emit(f"            payload[{target!r}] = {call}")

    def build(
        self, filters: tuple[FilterSpec, ...], extra: Mapping[str, Any], check: Check
    ) -> Callable[[Mapping[str, Any]], Any]:
        """The row function: None (filtered out), (field, reason), or the checked payload."""
        body = ["def run(values):"]
        body += [f"    if not {self.const(_filter(spec))}(values): return None" for spec in filters]
        body += ["    payload = {}", "    field = ''", "    try:", *self.lines, "        pass"]
        body.append("    except _Bad as exc: return (field, str(exc))")
        body += [f"    payload[{name!r}] = {self.const(value)}" for name, value in extra.items()]
        body.append(f"    return {self.const(check)}(payload) or payload")
        exec(compile("\n".join(body), "<row function>", "exec"), self.env)
        run: Callable[[Mapping[str, Any]], Any] = self.env["run"]
        return run


def _first_missing(names: list[str], suffix: str) -> Callable[[Mapping[str, Any]], str]:
    def first(values: Mapping[str, Any]) -> str:
        gone = next((n for n in names if values.get(n) in (None, "")), names[0])
        return f"missing value in column {gone!r}{suffix}"

    return first


# --- the mapper --------------------------------------------------------------------------------


def _problem(where: str, message: str) -> Problem:
    """A Problem at a ``FILE:LINE:COL`` location (as config.py records it)."""
    file, line, col = where, None, None
    parts = where.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        file, line, col = parts[0], int(parts[1]), int(parts[2])
    elif len(parts) >= 2 and parts[-1].isdigit():
        file, line = where.rsplit(":", 1)[0], int(parts[-1])
    return Problem(file or "<config>", line, col, message)


def _resolve(root: Mapping[str, Any], prop: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = prop.get("$ref")
    return root["$defs"][ref.removeprefix("#/$defs/")] if isinstance(ref, str) else prop


class Mapper:
    """Maps rows of one integration's courses or statistics to Record or InvalidRow."""

    __slots__ = ("_integration", "_key_of", "_kind", "_run")

    def __init__(self, integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig) -> None:
        if kind not in (RecordKind.COURSE, RecordKind.STAT):
            raise ValueError(f"rows map to courses or statistics, not {kind}")
        validator = load_api_validator(kind)
        props: Mapping[str, Any] = validator.schema["properties"]
        needed = frozenset(validator.schema.get("required", ()))
        required = set(needed)  # what no field declares yet
        problems: list[Problem] = []
        gen = _RowSource()
        for field in spec.fields:
            target = _IDENTIFIERS.get(field.target, field.target) if kind is RecordKind.STAT else field.target
            required.discard(target)  # declared: any problem with it is reported below, once
            if target not in props:
                problems.append(_problem(field.where, f"{field.target!r} is not a field of the API's {kind}"))
                continue
            prop, ident = _resolve(validator.schema, props[target]), None
            if target in _IDENTIFIERS.values():
                ident, choices = field.identifier, prop["properties"]["type"]["enum"]
                if ident is None or ident not in choices:
                    problems.append(_problem(field.where, f"{field.target!r} needs one of {choices}"))
                    continue
                prop = prop["properties"]["value"]
            try:  # try the constants and defaults now: a bad one is a config error, not a bad row
                gen.field(target, field, prop, target in needed, ident)
            except _Bad as exc:
                problems.append(_problem(field.where, f"{field.target}: {exc}"))
            except (ZoneInfoNotFoundError, ValueError):  # ValueError: a malformed zone key
                problems.append(_problem(field.where, f"unknown timezone {field.timezone!r}"))
            except KeyError:
                problems.append(_problem(field.where, f"unknown unit {field.unit!r} (ms, s, min, h)"))
        for name in sorted(required):
            problems.append(_problem(spec.where, f"the API's {kind} needs the field {name!r}"))
        if problems:
            raise ConfigError(problems)
        extra = {"forceNew": True} if kind is RecordKind.STAT and spec.force_new else {}
        self._integration = integration.name
        self._kind = kind
        # The payload holds only the declared fields (and the extras): check those, no others.
        present = {_IDENTIFIERS.get(f.target, f.target) if kind is RecordKind.STAT else f.target
                   for f in spec.fields} | set(extra)  # fmt: skip
        check = build_checker(validator.schema, gen.trusted, present)
        self._run = gen.build(spec.filters, extra, check)
        # An invalid course row still names its course when its externalId maps: the planner
        # must not take the course for gone from the source and archive it.
        self._key_of = None
        if kind is RecordKind.COURSE:
            key_gen = _RowSource()
            for field in spec.fields:
                if field.target == "externalId":
                    key_gen.field("externalId", field, props["externalId"], True, None)
            self._key_of = key_gen.build((), {}, lambda obj: None)

    def map(self, row: Row) -> Record | InvalidRow | None:
        """The row's Record, an InvalidRow saying which field is wrong and why, or None if filtered out."""
        out = self._run(row.values)
        if type(out) is dict:
            if self._kind is RecordKind.STAT:
                course, user, first = out["courseIdentifier"], out["userIdentifier"], out["firstActivityAt"]
                return Record(
                    self._integration, RecordKind.STAT, stat_key(course, user, first), out, content_hash(out),
                    row.origin, stat_group(course, user), first, out["lastActivityAt"],
                )  # fmt: skip
            return Record(
                self._integration, RecordKind.COURSE, out["externalId"], out, content_hash(out), row.origin
            )
        if out is None:
            return None
        return self._invalid(row.origin, row.values, out)

    def stage(
        self, origin: str, values: Mapping[str, Any], digest: int | None = None
    ) -> StagedRow | InvalidRow | None:
        """``map`` as the planner stages it: a StagedRow instead of a Record (None if filtered out).

        The payload is serialised once: its canonical JSON is both what is staged and what is
        hashed, and the statistic's key is its group plus ``firstActivityAt``.
        """
        out = self._run(values)
        if type(out) is dict:
            text = _dumps(out, option=_SORT_KEYS)
            hashed = _blake2b(text, digest_size=16).hexdigest()
            if self._kind is RecordKind.STAT:
                course, user, first = out["courseIdentifier"], out["userIdentifier"], out["firstActivityAt"]
                key = _dumps([course["type"], course["value"], user["type"], user["value"], first]).decode()
                # == stat_group(course, user): the key without its last item. ``first`` passed the
                # date-time check, so JSON writes it as itself in quotes (no escapes).
                group = key[: len(key) - len(first) - 4] + "]"
                return key, hashed, text.decode(), origin, group, first, out["lastActivityAt"], digest
            return out["externalId"], hashed, text.decode(), origin, "", "", "", digest
        if out is None:
            return None
        return self._invalid(origin, values, out)

    def _invalid(self, origin: str, values: Mapping[str, Any], out: tuple[str, str]) -> InvalidRow:
        key = None
        if self._key_of is not None:
            named = self._key_of(values)
            if type(named) is dict and isinstance(named.get("externalId"), str) and named["externalId"]:
                key = named["externalId"]
        return InvalidRow(self._integration, self._kind, origin, out[0] or None, out[1], key)


def build_mapper(integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig) -> Mapper:
    """Compile ``spec``'s fields and filters once; raises ConfigError for fields the API lacks."""
    return Mapper(integration, kind, spec)


def map_source(
    integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig, source: SourceConfig
) -> Iterator[Record | InvalidRow]:
    """Stream ``source`` through the mapper: records and invalid rows; filtered rows are dropped."""
    mapper = build_mapper(integration, kind, spec)
    for row in load_rows(source):
        result = mapper.map(row)
        if result is not None:
            yield result


# --- validate: do the sources have the mapped columns? ----------------------------------------


def _used_columns(spec: ObjectConfig) -> Iterator[tuple[str, str]]:
    """(column, where) of every column the fields, templates and filters read."""
    for field in spec.fields:
        if field.column is not None:
            yield field.column, field.where
        if field.template is not None:
            for name in _template(field.template)[1]:
                yield name, field.where
    for filt in spec.filters:
        yield filt.column, filt.where or spec.where


def check_columns(config: Config, sample_rows: int = 20) -> list[Problem]:
    """For ``syncer validate``: every mapped column the source lacks, and every unreadable source."""
    problems: list[Problem] = []
    seen: dict[str, set[str] | SourceError] = {}
    for integration in config.integrations.values():
        for spec in (integration.courses, integration.stats):
            if spec is None:
                continue
            source = config.sources.get(spec.source)
            if source is None:
                problems.append(_problem(spec.where, f"unknown source {spec.source!r}"))
                continue
            if source.name not in seen:
                seen[source.name] = _sample_columns(source, sample_rows)
                if isinstance(seen[source.name], SourceError):
                    problems.append(_problem(source.where or spec.where, str(seen[source.name])))
            columns = seen[source.name]
            if isinstance(columns, SourceError):
                continue
            listed = ", ".join(sorted(columns)) or "none"
            for column, where in _used_columns(spec):
                if column not in columns:
                    problems.append(
                        _problem(
                            where or spec.where,
                            f"column {column!r} is not in source {source.name!r} (it has: {listed})",
                        )
                    )
    return problems


def _sample_columns(source: SourceConfig, sample_rows: int) -> set[str] | SourceError:
    try:
        columns = set(load_columns(source))
        with closing(load_rows(source)) as rows:
            for row in islice(rows, sample_rows):
                columns.update(row.values)  # JSON Lines objects need not all have the same keys
        return columns
    except SourceError as exc:
        return exc
