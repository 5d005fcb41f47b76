"""Cursor values of incremental SQL sources: how they are stored, and where a read starts again.

A cursor value is what the source's cursor column holds (a date-time, a date, a number, or text
that is an ISO date-time, as SQLite gives it); the ledger stores it as JSON with its type, so
that the next run binds the same type back. A read starts ``overlap`` before the last recorded
value: rows written late (a transaction that set ``updated_at`` before it committed) are read
again, and the plan finds them unchanged or sends them (docs/incremental.md).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson

from syncer.config import SourceConfig
from syncer.errors import SourceError
from syncer.sources.readers import declared as _declared

__all__ = ["DEFAULT_OVERLAP", "check_value", "decode", "encode", "shown", "start"]

DEFAULT_OVERLAP = timedelta(minutes=5)
"""How far before the last recorded date-time a read starts when the source gives no ``overlap``."""


def encode(value: Any) -> str:
    """A cursor value as the ledger stores it: ``{"type": ..., "value": ...}``."""
    if isinstance(value, datetime):
        kind, text = "datetime", value.isoformat()
    elif isinstance(value, date):
        kind, text = "date", value.isoformat()
    elif isinstance(value, bool):
        raise TypeError("a boolean cannot be a cursor")
    elif isinstance(value, int):
        kind, text = "int", str(value)
    elif isinstance(value, float):
        kind, text = "float", repr(value)
    elif isinstance(value, Decimal):
        kind, text = "decimal", str(value)
    elif isinstance(value, str):
        kind, text = "str", value
    else:
        raise TypeError(f"a {type(value).__name__} cannot be a cursor")
    return orjson.dumps({"type": kind, "value": text}).decode()


def decode(stored: str) -> Any:
    """The value ``encode`` stored."""
    data = orjson.loads(stored)
    kind, text = data["type"], data["value"]
    if kind == "datetime":
        return datetime.fromisoformat(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "decimal":
        return Decimal(text)
    return str(text)


def check_value(source: SourceConfig, value: Any) -> None:
    """A SourceError unless ``value`` can be a cursor (what ``encode`` takes)."""
    try:
        encode(value)
    except TypeError as exc:
        raise SourceError(
            f"source {source.name!r}: cursor column {source.cursor!r} holds {type(value).__name__} "
            f"values ({exc}); a cursor is a timestamp, a date or a number that grows when a row is "
            f"written{_declared(source)}"
        ) from exc


def start(source: SourceConfig, stored: Any) -> Any:
    """Where the next read starts: ``stored`` less the source's overlap (or the default one)."""
    overlap = source.overlap
    if isinstance(stored, str):
        try:
            moment = datetime.fromisoformat(stored)
        except ValueError:
            if overlap:
                raise SourceError(
                    f"source {source.name!r}: cursor column {source.cursor!r} holds text that is not an "
                    f"ISO date-time ({stored!r}), so no overlap can be taken from it: remove overlap, "
                    f"or make the cursor a timestamp{_declared(source)}"
                ) from None
            return stored
        sep = stored[10] if len(stored) > 10 and stored[10] in "T " else "T"
        back = _back_in_time(source, moment, overlap)
        return back.isoformat(sep=sep) if len(stored) > 10 else back.date().isoformat()
    if isinstance(stored, datetime | date):
        return _back_in_time(source, stored, overlap)
    if isinstance(overlap, timedelta) and overlap:
        raise SourceError(
            f"source {source.name!r}: cursor column {source.cursor!r} holds numbers, but overlap is a "
            f"duration; give overlap as a number (e.g. overlap: 1000){_declared(source)}"
        )
    if not overlap or isinstance(overlap, timedelta):
        return stored
    if isinstance(stored, Decimal):
        return stored - Decimal(str(overlap))
    back = stored - overlap
    return int(back) if isinstance(stored, int) and float(overlap).is_integer() else back


def _back_in_time(source: SourceConfig, moment: date, overlap: timedelta | float | None) -> Any:
    if overlap is None:
        overlap = DEFAULT_OVERLAP
    elif not isinstance(overlap, timedelta):
        if overlap:
            raise SourceError(
                f"source {source.name!r}: cursor column {source.cursor!r} holds date-times, but overlap "
                f"is a number; give overlap as a duration (e.g. overlap: 5m){_declared(source)}"
            )
        overlap = timedelta(0)
    if not isinstance(moment, datetime):
        # A date less a duration: the day that moment falls on (``date - timedelta`` would drop
        # anything under a day, so the default 5m would re-read nothing before the recorded day).
        return (datetime.combine(moment, time()) - overlap).date()
    return moment - overlap


def shown(value: Any) -> str:
    """A cursor value as a person reads it in a plan or a log."""
    if value is None:
        return "(none)"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
