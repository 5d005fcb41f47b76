"""Cell values -> field values: the parsers and transforms that a config field rule chains.

``field_steps`` turns one FieldSpec, with the API property it fills, into its steps in
FieldSpec's order: map, split, lower, type (date-time, integer, number, boolean, string),
unit, scale. Each step is a plain function of one value: it returns the converted value or
raises BadValue with the reason. The date-time parser reads numeric strptime formats with a
regex and remembers recent answers, as statistics repeat their timestamps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from functools import cache
from typing import Any
from weakref import WeakSet
from zoneinfo import ZoneInfo

from syncer.config import FieldSpec, FieldType
from syncer.mapping.checker import is_datetime, short_list

__all__ = ["DATETIME_PARSERS", "NUL_REASON", "BadValue", "apply_steps", "cell_text", "field_steps", "has_nul"]

_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_TRUE = frozenset({"true", "yes", "y", "t", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "f", "0", "off"})


class BadValue(Exception):
    """A value that cannot become its field: an InvalidRow (in a constant or default, a config error)."""


NUL_REASON = "contains a NUL byte"
"""Why a value holding ``\\x00`` is refused: C strings, databases and the platform cut or refuse it."""


def has_nul(v: Any) -> bool:
    """Whether ``v`` (a cell, or a JSON value with lists and objects) holds a NUL character."""
    if type(v) is str:
        return "\x00" in v
    if isinstance(v, list | tuple):
        return any(has_nul(item) for item in v)
    if isinstance(v, dict):
        return any(has_nul(key) or has_nul(item) for key, item in v.items())
    return False


def _number(v: Any) -> int | float:
    """A JSON number; integral values become int so that 50, 50.0 and "50" hash alike."""
    if type(v) is str:
        text = v.strip()
        if text.isdigit():  # the common case, and exact beyond 2**53
            return int(text)
        try:
            number = float(text)
        except ValueError:
            raise BadValue(f"{v!r} is not a number") from None
        if "_" in text or not math.isfinite(number):  # float() takes "1_000" and "nan": a cell should not
            raise BadValue(f"{v!r} is not a number")
        return int(number) if number.is_integer() else number
    if type(v) is int:
        return v
    elif isinstance(v, float | Decimal) or (isinstance(v, int) and not isinstance(v, bool)):
        v = float(v)
    if type(v) is not float or not math.isfinite(v):
        raise BadValue(f"{v!r} is not a number")
    return int(v) if v.is_integer() else v


def _scaled(v: float) -> int | float:
    # Round away binary noise (0.7 * 100 = 70.00000000000001) before the integral check.
    v = round(v, 9)
    return v if type(v) is int or not v.is_integer() else int(v)


def _integer(v: Any) -> int:
    n = _number(v)
    if type(n) is not int:
        raise BadValue(f"{v!r} is not an integer")
    return n


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadValue(f"{v!r} is not a boolean (true/false, yes/no, 1/0)")


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
DATETIME_PARSERS: WeakSet[Callable[[Any], str]] = WeakSet()


def _datetime_parser(fmt: str | None, zone: tzinfo) -> Callable[[Any], str]:
    fast = _fast_format(fmt) if fmt else None
    seen: dict[str, str] = {}  # statistics repeat their timestamps: remember recent answers

    def strict(v: str) -> datetime:
        if fmt is None:
            try:
                return datetime.fromisoformat(v)
            except ValueError:
                raise BadValue(f"{v!r} is not an ISO 8601 date-time") from None
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
            raise BadValue(f"{v!r} does not match format {fmt!r}") from None

    def parse(v: Any) -> str:
        if type(v) is str:
            # Already in the API's own form (``2024-04-27T21:41:00.000Z``): nothing to convert.
            # The RFC 3339 check is the schema's own, so the schema check can trust the result.
            if fmt is None and len(v) == 24 and v[23] == "Z" and v[10] == "T" and is_datetime(v):
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
        raise BadValue(f"{v!r} is not a date-time")

    def convert(v: Any, dt: datetime) -> str:
        try:
            return _utc_text(dt if dt.tzinfo is not None else dt.replace(tzinfo=zone))
        except (OverflowError, ValueError):
            raise BadValue(f"{v!r} is out of the supported date range") from None

    DATETIME_PARSERS.add(parse)
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


def cell_text(v: Any) -> str:
    """A value as the string a CSV would hold (filters and maps compare strings)."""
    if type(v) is str:
        return v
    if isinstance(v, bool) or v is None:
        return "" if v is None else ("true" if v else "false")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _translator(table: Mapping[Any, Any], label: str) -> Callable[[Any], Any]:
    lookup = {cell_text(k): v for k, v in table.items()}
    known = short_list(list(lookup))

    def translate(v: Any) -> Any:
        try:
            return lookup[v if type(v) is str else cell_text(v)]
        except KeyError:
            raise BadValue(f"{v!r} is not in the map of {label} (known: {known})") from None

    return translate


def _implicit_type(prop: Mapping[str, Any]) -> FieldType | None:
    kind = str(prop.get("type"))
    if kind == "string":
        return FieldType.DATETIME if prop.get("format") == "date-time" else FieldType.STRING
    return {"number": FieldType.NUMBER, "integer": FieldType.INTEGER, "boolean": FieldType.BOOLEAN}.get(kind)


def field_steps(spec: FieldSpec, prop: Mapping[str, Any], label: str) -> list[Callable[[Any], Any]]:
    """Transforms after trim and default, in FieldSpec's order: map, split, lower, type, unit, scale."""
    steps: list[Callable[[Any], Any]] = []
    if spec.map is not None:
        steps.append(_translator(spec.map, label))
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


def apply_steps(steps: list[Callable[[Any], Any]], value: Any) -> Any:
    """Run ``value`` through ``steps`` (the row function inlines them; constants use this)."""
    for step in steps:
        value = step(value)
    return value
