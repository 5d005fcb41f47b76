"""Source rows -> API objects: the Mapper of one integration's courses or statistics.

``Mapper`` checks the config's field rules against the API's schema once (a field the API
lacks, a bad constant, timezone or unit: one ConfigError listing every problem), then compiles
them and the schema check into one row function (syncer.mapping.fields), so the per-row path
does no schema interpretation and no config parsing: it runs for every row of sources with
millions of them. Mapping is pure: ``map`` gives a Record or an InvalidRow; ``stage`` is the
planner's fast path, a StagedRow whose canonical JSON is serialised once, then hashed.
``map_source`` streams a source's rows through a Mapper.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import orjson

from syncer.config import IntegrationConfig, ObjectConfig, SourceConfig
from syncer.errors import ConfigError, Problem
from syncer.mapping.checker import build_checker, load_api_validator
from syncer.mapping.fields import RowSource
from syncer.mapping.values import BadValue
from syncer.models import InvalidRow, Record, RecordKind, Row, StagedRow, content_hash, stat_group, stat_key
from syncer.sources import load_rows

__all__ = ["Mapper", "build_mapper", "config_problem", "map_source"]

# The statistic's `course`/`user` config fields become the API's identifier objects.
_IDENTIFIERS = {"course": "courseIdentifier", "user": "userIdentifier"}
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_blake2b = hashlib.blake2b


_NOTED = re.compile(r"^(.*?:\d+:\d+) \((.+)\)$")


def config_problem(where: str, message: str) -> Problem:
    """A Problem at a ``FILE:LINE:COL`` location (as syncer.config records a rule's ``where``).

    A rule taken from a mapping is ``FILE:LINE:COL (used by ...)``: the note ends the message.
    """
    noted = _NOTED.match(where)
    if noted is not None:
        where, message = noted.group(1), f"{message} ({noted.group(2)})"
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
        gen = RowSource()
        for field in spec.fields:
            target = _IDENTIFIERS.get(field.target, field.target) if kind is RecordKind.STAT else field.target
            required.discard(target)  # declared: any problem with it is reported below, once
            if target not in props:
                problems.append(
                    config_problem(field.where, f"{field.target!r} is not a field of the API's {kind}")
                )
                continue
            prop, ident = _resolve(validator.schema, props[target]), None
            if target in _IDENTIFIERS.values():
                ident, choices = field.identifier, prop["properties"]["type"]["enum"]
                if ident is None or ident not in choices:
                    problems.append(config_problem(field.where, f"{field.target!r} needs one of {choices}"))
                    continue
                prop = prop["properties"]["value"]
            try:  # try the constants and defaults now: a bad one is a config error, not a bad row
                gen.field(target, field, prop, target in needed, ident)
            except BadValue as exc:
                problems.append(config_problem(field.where, f"{field.target}: {exc}"))
            except (ZoneInfoNotFoundError, ValueError):  # ValueError: a malformed zone key
                problems.append(config_problem(field.where, f"unknown timezone {field.timezone!r}"))
            except KeyError:
                problems.append(config_problem(field.where, f"unknown unit {field.unit!r} (ms, s, min, h)"))
        for name in sorted(required):
            problems.append(config_problem(spec.where, f"the API's {kind} needs the field {name!r}"))
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
            key_gen = RowSource()
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
