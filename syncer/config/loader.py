"""Read the YAML config, interpolate ``${VAR}``, validate it, and build a typed, frozen Config.

``load_config`` parses the YAML once, keeping node positions, so that every problem (syntax,
missing variable, schema rule, semantic check) is reported as ``FILE:LINE:COL: message``, all
of them at once, in one ConfigError.
"""

from __future__ import annotations

import codecs
import difflib
import json
import os
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syncer.errors import ConfigError, Problem
from syncer.models import content_hash
from syncer.resources import schema_path


class Secret:
    """A value that never shows itself in output, logs, plan files or the ledger."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """A database or HTTP URL with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


class SourceKind(StrEnum):
    """How a source is read."""

    CSV = "csv"
    JSONL = "jsonl"
    SQL = "sql"


class UnsafeChange(StrEnum):
    """What to do with a statistic whose predicted effect on the platform's attempts is unsafe."""

    HOLD = "hold"  # not sent; listed with its reason; apply exits 3 (the default)
    SEND = "send"  # sent anyway: "I accept the platform's behaviour" (docs/attempts.md)


class FieldType(StrEnum):
    """The ``type`` transform of a field."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


class FilterOp(StrEnum):
    """A row filter's test."""

    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    EMPTY = "empty"
    NOT_EMPTY = "not_empty"


@dataclass(frozen=True)
class SourceConfig:
    """A named table of rows."""

    name: str
    kind: SourceKind
    path: Path | None = None  # csv / jsonl, resolved against the config's folder
    delimiter: str = ","
    encoding: str = "utf-8"
    url: Secret | None = None  # sql: SQLAlchemy URL (may hold a password)
    query: str | None = None  # sql
    where: str = ""  # "config.yaml:LINE:COL" of the declaration, for messages


@dataclass(frozen=True)
class FieldSpec:
    """How one API field is produced from a row.

    Exactly one of ``column``, ``template`` or ``has_value`` gives the raw value; the other
    attributes are transforms, applied in this order: trim, default, map, split, lower, type,
    unit, scale, format/timezone. ``identifier`` is set for the statistic's ``course``
    (``externalId``/``internalId``) and ``user`` (``mail``/``internalId``) fields.
    """

    target: str
    column: str | None = None
    template: str | None = None
    value: Any = None
    has_value: bool = False
    default: Any = None
    has_default: bool = False
    type: FieldType | None = None
    unit: str | None = None  # ms, s, min, h -> milliseconds
    scale: float | None = None
    format: str | None = None
    timezone: str | None = None
    map: Mapping[str, Any] | None = None
    split: str | None = None
    lower: bool = False
    trim: bool = False
    identifier: str | None = None
    where: str = ""


@dataclass(frozen=True)
class FilterSpec:
    """A row filter: keep the row only when ``column`` passes ``op``."""

    column: str
    op: FilterOp
    value: Any = None
    where: str = ""


@dataclass(frozen=True)
class Tolerance:
    """How many invalid rows a run tolerates: a count, or a share of the rows read."""

    count: int | None = None
    share: float | None = None  # 0.01 for "1%"

    def allows(self, invalid: int, total: int) -> bool:
        """True when ``invalid`` rows out of ``total`` stay within the tolerance."""
        if invalid == 0:
            return True
        if self.count is not None:
            return invalid <= self.count
        if self.share is not None:
            return total > 0 and invalid <= self.share * total
        return False


@dataclass(frozen=True)
class ObjectConfig:
    """The courses or the statistics of one integration."""

    source: str
    fields: tuple[FieldSpec, ...]
    filters: tuple[FilterSpec, ...] = ()
    tolerate_invalid: Tolerance = field(default_factory=Tolerance)
    archive_missing: bool = False  # courses only
    force_new: bool = False  # stats only; a field rule for forceNew is in ``fields`` instead
    on_unsafe_change: UnsafeChange = UnsafeChange.HOLD  # stats only
    where: str = ""


@dataclass(frozen=True)
class IntegrationConfig:
    """One 360Learning integration: given by ``id``, or declared by platform, group and author."""

    name: str
    id: str | None = None
    platform: str | None = None
    group: str | None = None
    author: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    courses: ObjectConfig | None = None
    stats: ObjectConfig | None = None
    where: str = ""


@dataclass(frozen=True)
class Limits:
    """Client-side limits (defaults: the documented platform limits)."""

    concurrent_operations: int = 3
    requests_per_second: float = 10.0  # writes: POST/PUT/PATCH/DELETE
    reads_per_second: float = 50.0


@dataclass(frozen=True)
class BatchSizes:
    """Items per bulk call (documented maxima; configurable downwards)."""

    courses: int = 10_000
    stats: int = 10_000
    archives: int = 1_000


@dataclass(frozen=True)
class ApiConfig:
    """How to reach the API."""

    base_url: str
    client_id: str
    client_secret: Secret
    company_id: str | None = None
    limits: Limits = field(default_factory=Limits)
    batch_size: BatchSizes = field(default_factory=BatchSizes)
    timeout_seconds: float = 60.0  # one HTTP request
    retry_seconds: float = 600.0  # total time spent retrying one call before giving up


REGIONS: Mapping[str, str] = {
    "eu": "https://app.360learning.com",
    "us": "https://app.us.360learning.com",
}


@dataclass(frozen=True)
class Config:
    """A whole, validated config."""

    path: Path
    api: ApiConfig
    ledger_url: Secret
    sources: Mapping[str, SourceConfig]
    integrations: Mapping[str, IntegrationConfig]
    version: int = 1
    digest: str = ""  # content hash of the config after interpolation (secrets excluded)


# --------------------------------------------------------------------------------------------
# The loader

COURSE_FIELDS: tuple[str, ...] = (
    "defaultLang", "externalId", "launchUrl", "name", "sources", "subjects", "contentType",
    "description", "difficultyLevel", "duration", "imageUrl", "mobileLaunchUrl", "authorId",
    "translations",
)  # fmt: skip
COURSE_REQUIRED: tuple[str, ...] = ("defaultLang", "externalId", "launchUrl", "name", "sources", "subjects")
STAT_FIELDS: tuple[str, ...] = (
    "course", "user", "progress", "score", "result", "lang", "timeSpent", "firstActivityAt",
    "lastActivityAt",
)  # fmt: skip
STAT_REQUIRED: tuple[str, ...] = (
    "course",
    "user",
    "progress",
    "timeSpent",
    "firstActivityAt",
    "lastActivityAt",
)

# Targets whose API type is fixed: a `type` transform that contradicts it is a config error.
_NUMBER_TARGETS = frozenset({"duration", "progress", "score", "timeSpent"})
_DATETIME_TARGETS = frozenset({"firstActivityAt", "lastActivityAt"})
_LIST_TARGETS = frozenset({"sources", "subjects", "translations"})
_NUMERIC = (None, FieldType.INTEGER, FieldType.NUMBER)
_SAMPLE = datetime(2024, 3, 9, 14, 5, 7)
_STR_TAG = "tag:yaml.org,2002:str"
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_SHARE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")

_KINDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
    "datetime": "a date-time",
}  # fmt: skip

_Path = tuple[str | int, ...]


@cache
def config_schema() -> dict[str, Any]:
    """The config's JSON Schema (schemas/config.schema.json), as data."""
    schema: dict[str, Any] = json.loads(schema_path("config.schema.json").read_text("utf-8"))
    return schema


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate, validate and build the config at ``path``; raise ConfigError with every problem."""
    file = str(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError.single(file, None, None, "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError.single(file, None, None, f"cannot read the config file: {reason}") from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError.single(
                file, 1, 1, "the config is empty: expected `version: 1`, api, sources..."
            )
        doc = _Document(file, text, root)
        doc.check_duplicate_keys(root, ())
        doc.interpolate(root, (), os.environ if env is None else env)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError.single(file, line, col, f"invalid YAML: {reason}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError.single(file, None, None, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    for error in Draft202012Validator(config_schema()).iter_errors(data):
        for leaf, fallback in _leaves(error):
            doc.schema_problem(leaf, fallback)
    if isinstance(data, dict):
        _check(doc, data)
    if doc.problems:
        raise ConfigError(sorted(doc.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return _build(doc, path, data)


class _Document:
    """The parsed YAML with its node tree: locates paths and collects problems."""

    def __init__(self, file: str, text: str, root: yaml.Node) -> None:
        self.file = file
        self.text = text
        self.root = root
        self.problems: list[Problem] = []
        self._reported: set[_Path] = set()  # paths already wrong: no second message beneath them

    # -- positions
    def _walk(self, path: _Path) -> tuple[yaml.Node, yaml.Node | None]:
        node, key_node = self.root, None
        for step in path:
            found = _child(node, step)
            if found is None:
                break
            key_node, node = found
        return node, key_node

    def position(self, path: _Path, *, key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value (or, with ``key``, the key) at ``path``."""
        node, key_node = self._walk(path)
        mark = (key_node if key and key_node is not None else node).start_mark
        return mark.line + 1, mark.column + 1

    def where(self, path: _Path, *, key: bool = True) -> str:
        """``FILE:LINE:COL`` of the declaration at ``path``, for later stages' messages."""
        line, col = self.position(path, key=key)
        return f"{self.file}:{line}:{col}"

    def raw_map(self, path: _Path) -> dict[str, Any] | None:
        """A ``map`` transform keyed by the text the user wrote (YAML would turn `yes` into True)."""
        node, _ = self._walk(path)
        if not isinstance(node, yaml.MappingNode):
            return None
        loader = yaml.SafeLoader("")
        try:
            return {str(k.value): loader.construct_object(v, deep=True) for k, v in node.value}
        finally:
            loader.dispose()

    # -- problems
    def reported(self, path: _Path) -> bool:
        """True when a problem was already reported at or above ``path``."""
        return any(path[: len(p)] == p for p in self._reported)

    def add(self, path: _Path, message: str, *, key: bool = False, mute: bool = True) -> None:
        """Record a problem at ``path`` unless a problem was already reported at or above it."""
        if self.reported(path):
            return
        line, col = self.position(path, key=key)
        self.problems.append(Problem(self.file, line, col, f"{_label(path)}: {message}"))
        if mute:
            self._reported.add(path)

    def schema_problem(self, err: ValidationError, fallback: str | None = None) -> None:
        """Turn one jsonschema error into a located, readable problem."""
        path: _Path = tuple(err.absolute_path)
        value: Any = err.instance
        if err.validator == "additionalProperties":
            allowed = list(_schema_of(err).get("properties", {}))
            patterns = list(_schema_of(err).get("patternProperties", {}))
            extras = [
                k for k in value if k not in allowed and not any(re.search(p, str(k)) for p in patterns)
            ]
            for extra in extras:
                self.add((*path, extra), f"unknown key{_suggest(str(extra), allowed)}", key=True)
            return
        if "propertyNames" in err.schema_path:
            own = _schema_of(err).get("errorMessage") or err.message
            self.add((*path, value), f"invalid name {value!r}: {own}", key=True)
            return
        if err.validator == "required":
            required: list[str] = list(err.validator_value)  # type: ignore[arg-type]
            missing = next((k for k in required if f"{k!r} is" in err.message), None)
            self.add(path, f"missing required key {missing!r}", mute=False)
            return
        message = _message(err, fallback, secret=_is_secret(path))
        self.add(path, message, mute=err.validator != "maxProperties")

    # -- structure
    def check_duplicate_keys(self, node: yaml.Node, path: _Path) -> None:
        """YAML keeps the last of two equal keys silently; a config must not say a thing twice."""
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                name = str(k.value)
                if name in seen and name != "<<":
                    line, col = k.start_mark.line + 1, k.start_mark.column + 1
                    self.problems.append(
                        Problem(self.file, line, col, f"{_label((*path, name))}: duplicate key")
                    )
                seen.add(name)
                self.check_duplicate_keys(v, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.check_duplicate_keys(item, (*path, i))

    def interpolate(
        self, node: yaml.Node, path: _Path, env: Mapping[str, str], seen: set[int] | None = None
    ) -> None:
        """Replace ``${VAR}``/``${VAR:-default}`` in string scalars (``$${`` is a literal ``${``)."""
        seen = set() if seen is None else seen
        if id(node) in seen:  # an alias: the anchored node was done already
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                self.interpolate(v, (*path, str(k.value)), env, seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.interpolate(item, (*path, i), env, seen)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "$" in node.value:
            node.value = self._substitute(node, path, env)

    def _substitute(self, node: yaml.ScalarNode, path: _Path, env: Mapping[str, str]) -> str:
        raw_start, raw = node.start_mark.index, self.text[node.start_mark.index : node.end_mark.index]
        cursor = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal cursor
            token, name, default = match.group(0), match.group(1), match.group(2)
            found = raw.find(token, cursor)
            cursor = found + len(token) if found >= 0 else cursor
            if token == "$${":
                return "${"
            if name is not None:
                value = env.get(name)
                if value is not None and (value != "" or default is None):
                    return value
                if default is not None:
                    return default
                message = f"environment variable {name} is not set (or write ${{{name}:-default}})"
            else:
                message = (
                    "malformed ${...}: expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)"
                )
            index = raw_start + found if found >= 0 else raw_start
            line = self.text.count("\n", 0, index) + 1
            col = index - self.text.rfind("\n", 0, index)
            self.problems.append(Problem(self.file, line, col, f"{_label(path)}: {message}"))
            self._reported.add(path)
            return token

        return _VARIABLE.sub(replace, node.value)


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(step):
                return k, v
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return None, node.value[step]
    return None


def _label(path: _Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "config"


def _suggest(word: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(word, allowed, n=1)
    if close:
        return f" {word!r}; did you mean {close[0]!r}?"
    return f" {word!r}; expected one of: {', '.join(allowed)}" if allowed else f" {word!r}"


def _is_secret(path: _Path) -> bool:
    return (
        path[:2] == ("api", "client_secret")
        or path[:1] == ("ledger",)
        or (path[:1] == ("sources",) and path[2:4] == ("sql", "url"))
    )


def _schema_of(err: ValidationError) -> Mapping[str, Any]:
    return err.schema if isinstance(err.schema, Mapping) else {}


def _type_ok(expected: Any, value: Any) -> bool:
    kinds = expected if isinstance(expected, list) else [expected]
    checks = {
        "string": isinstance(value, str),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "null": value is None,
    }
    return expected is None or any(checks.get(k, False) for k in kinds)


def _leaves(
    err: ValidationError, fallback: str | None = None
) -> Iterator[tuple[ValidationError, str | None]]:
    """The errors worth showing: inside a oneOf, those of the one branch the value was meant for.

    Each comes with the message of the enclosing oneOf, used when the leaf has no better one.
    """
    if err.validator not in ("oneOf", "anyOf") or not err.context:
        yield err, fallback
        return
    value: Any = err.instance
    branches: list[Mapping[str, Any]] = list(err.validator_value)  # type: ignore[arg-type]
    meant = [
        i
        for i, branch in enumerate(branches)
        if _type_ok(branch.get("type"), value)
        and (not isinstance(value, dict) or all(k in value for k in branch.get("required", ())))
    ]
    chosen = [e for e in err.context if len(meant) == 1 and e.relative_schema_path[0] == meant[0]]
    if not chosen:
        yield err, fallback
        return
    for sub in chosen:
        yield from _leaves(sub, _schema_of(err).get("errorMessage"))


_TYPE_NAMES = {
    "string": "a string", "object": "a mapping", "array": "a list", "boolean": "true or false",
    "integer": "an integer", "number": "a number", "null": "null",
}  # fmt: skip


def _message(err: ValidationError, fallback: str | None, *, secret: bool) -> str:
    """A readable message for one schema error; secret values are never quoted."""
    rule, value = err.validator, err.instance
    limit: Any = err.validator_value
    own = _schema_of(err).get("errorMessage") or (fallback if rule == "pattern" else None)
    got = "" if secret else f" (got {_short(value)})"
    if rule in ("oneOf", "anyOf"):
        return str(own or "does not match any allowed form")
    if rule == "type":
        kinds: list[str] = limit if isinstance(limit, list) else [limit]
        return (str(own) if own else "must be " + " or ".join(_TYPE_NAMES.get(k, k) for k in kinds)) + got
    if rule == "pattern":
        return (str(own) if own else f"must match {limit}") + got
    if rule in ("minProperties", "maxProperties") and own:
        return str(own)
    simple = {
        "enum": lambda: "must be one of: " + ", ".join(str(v) for v in limit) + got,
        "const": lambda: f"must be {json.dumps(limit)}" + got,
        "minimum": lambda: f"must be at least {limit}" + got,
        "maximum": lambda: f"must be at most {limit}" + got,
        "exclusiveMinimum": lambda: f"must be greater than {limit}" + got,
        "exclusiveMaximum": lambda: f"must be less than {limit}" + got,
        "minLength": lambda: "must not be empty" if limit == 1 else f"must have at least {limit} characters",
        "maxLength": lambda: f"must have at most {limit} character{'s' if limit != 1 else ''}" + got,
        "minItems": lambda: "must not be empty" if limit == 1 else f"must have at least {limit} items",
        "minProperties": lambda: "must not be empty" if limit == 1 else f"must have at least {limit} keys",
        "maxProperties": lambda: f"must have at most {limit} keys",
    }
    if rule in simple:
        return simple[rule]()
    return "is invalid" if secret else err.message


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------------
# Semantic checks: what the schema cannot say. Defensive: the data may have failed the schema.


def _check(doc: _Document, data: dict[str, Any]) -> None:
    sources = data.get("sources") if isinstance(data.get("sources"), dict) else {}
    assert isinstance(sources, dict)
    if isinstance(data.get("ledger"), str):
        _check_url(doc, ("ledger",), data["ledger"])
    for name, src in sources.items():
        if not isinstance(src, dict):
            continue
        if isinstance(src.get("encoding"), str):
            try:
                codecs.lookup(src["encoding"])
            except LookupError:
                doc.add(("sources", name, "encoding"), f"unknown encoding {src['encoding']!r}")
        sql = src.get("sql")
        if isinstance(sql, dict) and isinstance(sql.get("url"), str):
            _check_url(doc, ("sources", name, "sql", "url"), sql["url"])
    integrations = data.get("integrations")
    for name, spec in integrations.items() if isinstance(integrations, dict) else ():
        if not isinstance(spec, dict):
            continue
        path: _Path = ("integrations", name)
        declared = [k for k in ("platform", "group", "author") if k in spec]
        if "id" in spec and declared:
            doc.add(path, "give either id, or platform, group and author; not both", key=True, mute=False)
        elif "id" not in spec and len(declared) < 3:
            missing = ", ".join(k for k in ("platform", "group", "author") if k not in spec)
            doc.add(
                path, f"needs an id, or platform, group and author (missing: {missing})", key=True, mute=False
            )
        if "id" in spec and "settings" in spec:
            doc.add(
                (*path, "settings"),
                "settings apply only to a declared integration (platform, group, author)",
                key=True,
            )
        if "courses" not in spec and "stats" not in spec:
            doc.add(path, "needs courses, stats or both", key=True, mute=False)
        for kind in ("courses", "stats"):
            if isinstance(spec.get(kind), dict):
                _check_object(doc, (*path, kind), spec[kind], sources)


def _check_url(doc: _Document, path: _Path, url: str) -> None:
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        # The URL may hold a password: say what is wrong, never what it is.
        doc.add(
            path, "not a SQLAlchemy database URL (e.g. sqlite:///syncer.db, postgresql+psycopg://host/db)"
        )


def _check_object(doc: _Document, path: _Path, spec: dict[str, Any], sources: Mapping[str, Any]) -> None:
    source = spec.get("source")
    if isinstance(source, str) and source not in sources and not doc.reported(("sources",)):
        doc.add((*path, "source"), f"unknown source{_suggest(source, list(sources))}")
    share = (
        _SHARE.match(spec.get("tolerate_invalid") or "")
        if isinstance(spec.get("tolerate_invalid"), str)
        else None
    )
    if share and float(share.group(1)) > 100:
        doc.add((*path, "tolerate_invalid"), "a share cannot exceed 100%")
    fields = spec.get("fields")
    for target, field_spec in fields.items() if isinstance(fields, dict) else ():
        if target in ("course", "user") and isinstance(field_spec, dict):
            for identifier, inner in field_spec.items():
                _check_field(doc, (*path, "fields", target, identifier), target, inner)
        else:
            _check_field(doc, (*path, "fields", target), target, field_spec)


def _check_field(doc: _Document, path: _Path, target: str, spec: Any) -> None:
    if not isinstance(spec, dict) or "value" in spec:
        return
    declared = spec.get("type")
    implied = (
        "number" if target in _NUMBER_TARGETS
        else "datetime" if target in _DATETIME_TARGETS
        else None if target in _LIST_TARGETS
        else "string"
    )  # fmt: skip
    kind = declared or implied
    if target in _NUMBER_TARGETS and declared not in (None, "integer", "number"):
        doc.add((*path, "type"), f"{target} is a number; type {declared} cannot produce it")
    if target in _DATETIME_TARGETS and declared not in (None, "datetime"):
        doc.add((*path, "type"), f"{target} is a date-time; type {declared} cannot produce it")
    for key in ("unit", "scale"):
        if key in spec and kind not in (None, "integer", "number"):
            doc.add((*path, key), f"{key} applies to numbers only, not to {_KINDS[kind]}", key=True)
    for key in ("format", "timezone"):
        if key in spec and kind not in (None, "datetime"):
            doc.add((*path, key), f"{key} applies to date-times only, not to {_KINDS[kind]}", key=True)
    if "split" in spec and declared not in (None, "string"):
        doc.add((*path, "split"), f"split makes a list of strings, not {_KINDS[declared]}", key=True)
    elif "split" in spec and target not in _LIST_TARGETS:
        doc.add((*path, "split"), f"split makes a list, but {target} takes a single value", key=True)
    zone = spec.get("timezone")
    if isinstance(zone, str):
        try:
            ZoneInfo(zone)
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            doc.add((*path, "timezone"), f"unknown time zone {zone!r}; use an IANA name such as Europe/Paris")
    fmt = spec.get("format")
    if isinstance(fmt, str):
        if not re.search(r"%[A-Za-z]", fmt):
            doc.add((*path, "format"), f"{fmt!r} has no strptime directive such as %Y, %m, %d, %H, %M")
        else:
            try:
                datetime.strptime(_SAMPLE.strftime(fmt), fmt)
            except ValueError as exc:
                doc.add((*path, "format"), f"unusable datetime format {fmt!r}: {exc}")
    template = spec.get("template")
    if isinstance(template, str):
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        except ValueError as exc:
            doc.add((*path, "template"), f"invalid template: {exc} (write {{{{ and }}}} for literal braces)")
        else:
            if any(not name.strip() for name in names):
                doc.add((*path, "template"), "every {} in a template must name a column: {column}")


# --------------------------------------------------------------------------------------------
# Building the typed Config from valid data


def _build(doc: _Document, path: Path, data: dict[str, Any]) -> Config:
    folder = path.resolve().parent
    api = data["api"]
    limits, batch = api.get("limits", {}), api.get("batch_size", {})
    api_config = ApiConfig(
        base_url=str(api.get("base_url") or REGIONS[api.get("region", "eu")]).rstrip("/"),
        client_id=str(api["client_id"]),
        client_secret=Secret(str(api["client_secret"])),
        company_id=api.get("company_id"),
        limits=Limits(
            concurrent_operations=int(limits.get("concurrent_operations", Limits.concurrent_operations)),
            requests_per_second=float(limits.get("requests_per_second", Limits.requests_per_second)),
            reads_per_second=float(limits.get("reads_per_second", Limits.reads_per_second)),
        ),
        batch_size=BatchSizes(**{k: int(v) for k, v in batch.items()}),
        timeout_seconds=float(api.get("timeout_seconds", ApiConfig.timeout_seconds)),
        retry_seconds=float(api.get("retry_seconds", ApiConfig.retry_seconds)),
    )
    sources = {name: _build_source(doc, name, spec, folder) for name, spec in data["sources"].items()}
    integrations = {name: _build_integration(doc, name, spec) for name, spec in data["integrations"].items()}
    return Config(
        path=path,
        api=api_config,
        ledger_url=Secret(_ledger_url(data.get("ledger"), folder)),
        sources=sources,
        integrations=integrations,
        version=int(data["version"]),
        digest=content_hash(_public(data)),
    )


def _ledger_url(url: str | None, folder: Path) -> str:
    if url is None:
        return f"sqlite:///{folder / 'syncer.db'}"
    # Like source paths, a relative SQLite file is relative to the config, not to the cwd.
    match = re.match(r"^(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?$", url)
    if match and match.group(2) and match.group(2) != ":memory:" and not match.group(2).startswith("/"):
        return f"{match.group(1)}:///{folder / match.group(2)}{match.group(3) or ''}"
    return url


def _public(data: Any, path: _Path = ()) -> Any:
    """The document without its secrets, with string keys: what the digest covers."""
    if isinstance(data, dict):
        return {
            str(k): _public(v, (*path, str(k))) for k, v in data.items() if not _is_secret((*path, str(k)))
        }
    if isinstance(data, list):
        return [_public(v, (*path, i)) for i, v in enumerate(data)]
    return data


def _build_source(doc: _Document, name: str, spec: dict[str, Any], folder: Path) -> SourceConfig:
    where = doc.where(("sources", name))
    if "sql" in spec:
        sql = spec["sql"]
        return SourceConfig(name, SourceKind.SQL, url=Secret(sql["url"]), query=sql["query"], where=where)
    kind = SourceKind.CSV if "csv" in spec else SourceKind.JSONL
    file = Path(spec[kind.value]).expanduser()
    return SourceConfig(
        name,
        kind,
        path=file if file.is_absolute() else folder / file,
        delimiter=spec.get("delimiter", ","),
        encoding=spec.get("encoding", "utf-8"),
        where=where,
    )


def _build_integration(doc: _Document, name: str, spec: dict[str, Any]) -> IntegrationConfig:
    path: _Path = ("integrations", name)
    return IntegrationConfig(
        name=name,
        id=spec.get("id"),
        platform=spec.get("platform"),
        group=spec.get("group"),
        author=spec.get("author"),
        settings=dict(spec.get("settings", {})),
        courses=_build_object(doc, (*path, "courses"), spec["courses"]) if "courses" in spec else None,
        stats=_build_object(doc, (*path, "stats"), spec["stats"]) if "stats" in spec else None,
        where=doc.where(path),
    )


def _build_object(doc: _Document, path: _Path, spec: dict[str, Any]) -> ObjectConfig:
    fields: list[FieldSpec] = []
    for target, field_spec in spec["fields"].items():
        if target in ("course", "user"):
            ((identifier, inner),) = field_spec.items()
            fields.append(_build_field(doc, (*path, "fields", target, identifier), target, inner, identifier))
        else:
            fields.append(_build_field(doc, (*path, "fields", target), target, field_spec))
    filters = []
    for i, item in enumerate(spec.get("filter", [])):
        op = FilterOp(next(k for k in item if k != "column"))
        value = item[op.value] if op not in (FilterOp.EMPTY, FilterOp.NOT_EMPTY) else None
        value = tuple(value) if isinstance(value, list) else value
        filters.append(FilterSpec(item["column"], op, value, where=doc.where((*path, "filter", i))))
    force_new = spec.get("force_new", False)
    if not isinstance(force_new, bool):  # a field rule: each row says whether it opens a new attempt
        fields.append(_build_field(doc, (*path, "force_new"), "forceNew", force_new))
        force_new = False
    return ObjectConfig(
        source=spec["source"],
        fields=tuple(fields),
        filters=tuple(filters),
        tolerate_invalid=_tolerance(spec.get("tolerate_invalid")),
        archive_missing=bool(spec.get("archive_missing", False)),
        force_new=force_new,
        on_unsafe_change=UnsafeChange(spec.get("on_unsafe_change", UnsafeChange.HOLD.value)),
        where=doc.where(path),
    )


def _tolerance(value: int | str | None) -> Tolerance:
    if value is None:
        return Tolerance()
    if isinstance(value, int):
        return Tolerance(count=value)
    return Tolerance(share=float(value.rstrip("%")) / 100)


def _build_field(
    doc: _Document, path: _Path, target: str, spec: Any, identifier: str | None = None
) -> FieldSpec:
    where = doc.where(path)
    # Mails are compared case-insensitively by the API's users; say so in the spec itself.
    is_mail = identifier == "mail"
    if isinstance(spec, str):
        return FieldSpec(target, column=spec, lower=is_mail, trim=is_mail, identifier=identifier, where=where)
    if "value" in spec:
        return FieldSpec(target, value=spec["value"], has_value=True, identifier=identifier, where=where)
    return FieldSpec(
        target,
        column=spec.get("column"),
        template=spec.get("template"),
        default=spec.get("default"),
        has_default="default" in spec,
        type=FieldType(spec["type"]) if "type" in spec else None,
        unit=spec.get("unit"),
        scale=float(spec["scale"]) if "scale" in spec else None,
        format=spec.get("format"),
        timezone=spec.get("timezone"),
        map=doc.raw_map((*path, "map")) if "map" in spec else None,
        split=spec.get("split"),
        lower=bool(spec.get("lower", is_mail)),
        trim=bool(spec.get("trim", is_mail)),
        identifier=identifier,
        where=where,
    )
