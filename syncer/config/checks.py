"""Every problem in a config's data: JSON Schema rules, then what the schema cannot say.

The data comes from ``document.parse`` (interpolated, not yet typed): a value that is one
``${VAR}`` where the schema wants a number or a boolean is typed first, by YAML's rules. Each
problem is recorded on the ``Document`` at the place it concerns, one message per wrong place,
so that the loader can report them all at once; nothing is raised here. The data is that of
every file of the config, merged (``files``), and each integration is completed by its mapping
and the defaults (``expand``) before the schema sees it: the Document locates each problem where
its value is written.
"""

from __future__ import annotations

import codecs
import difflib
import json
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from syncer.config.document import Document, NodePath, is_secret
from syncer.config.expand import expand
from syncer.resources import schema_path

# Targets whose API type is fixed: a `type` transform that contradicts it is a config error.
_NUMBER_TARGETS = frozenset({"duration", "progress", "score", "timeSpent"})
_DATETIME_TARGETS = frozenset({"firstActivityAt", "lastActivityAt"})
_LIST_TARGETS = frozenset({"sources", "subjects", "translations"})
_SAMPLE = datetime(2024, 3, 9, 14, 5, 7)
_SHARE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")

_KINDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
    "datetime": "a date-time",
}  # fmt: skip


@cache
def config_schema() -> dict[str, Any]:
    """The config's JSON Schema (schemas/config.schema.json), as data."""
    schema: dict[str, Any] = json.loads(schema_path("config.schema.json").read_text("utf-8"))
    return schema


def check(doc: Document, data: Any) -> None:
    """Record on ``doc`` every schema violation and semantic problem of ``data``."""
    _notify_on_keys(doc, data)
    _type_variables(doc, data)
    expand(doc, data)  # after the typing: a default's ${VAR} is typed before integrations take it
    _check_mapping_kinds(doc, data)
    leaves = [
        pair for error in Draft202012Validator(config_schema()).iter_errors(data) for pair in _leaves(error)
    ]
    # In the order of the declarations (jsonschema yields those of a mapping of names in set order):
    # a mapping's rule wrong in itself is reported once, naming its first use, in every run.
    for leaf, fallback in sorted(leaves, key=lambda pair: _declared_order(data, pair[0].absolute_path)):
        _schema_problem(doc, leaf, fallback)
    if isinstance(data, dict):
        _check_declared(doc, data)
        _check_semantics(doc, data)
        _check_mappings(doc, data)
        _check_incremental(doc, data)


def _declared_order(data: Any, path: Iterable[Any]) -> tuple[int, ...]:
    """The schema's order of the section ``path`` starts with (integrations before the mappings
    they use), then the data's order of the declaration in that section."""
    steps = list(path)[:2]
    sections = list(config_schema()["properties"])
    if not steps or steps[0] not in sections:
        return ()
    section = data.get(steps[0]) if isinstance(data, dict) else None
    if len(steps) < 2 or not isinstance(section, dict) or steps[1] not in section:
        return (sections.index(steps[0]),)
    return sections.index(steps[0]), list(section).index(steps[1])


def _notify_on_keys(doc: Document, data: Any) -> None:
    """A webhook's ``on:`` key, which YAML 1.1 reads as the boolean true, back to the text written."""
    hooks = data.get("notify") if isinstance(data, dict) else None
    for i, hook in enumerate(hooks if isinstance(hooks, list) else ()):
        if isinstance(hook, dict) and True in hook and "on" not in hook:
            key = doc.node_at(("notify", i, "on"))  # found by the text of its key: on, not true
            if key is not None:
                hook["on"] = hook.pop(True)


# --------------------------------------------------------------------------------------------
# Values that are one ${VAR}: typed as YAML would type them, where the schema wants a number


_SCALAR_TYPES = {"integer": "an integer", "number": "a number", "boolean": "true or false"}


def _type_variables(doc: Document, data: Any) -> None:
    """Turn ``${VAR:-60}`` into 60 where the schema wants a number (``true`` where a boolean).

    The environment gives text; written in the YAML the same text would be a number. A value
    YAML does not read as one of the wanted types is a problem naming the variable, unless the
    schema also takes a string there (``tolerate_invalid: ${TOLERANCE}`` may be ``1%``).
    """
    for path, name in doc.variables.items():
        parent, key = _parent(data, path)
        if parent is None or not isinstance(parent[key], str):
            continue
        kinds = _schema_types(config_schema(), path)
        wanted = [k for k in _SCALAR_TYPES if k in kinds]
        if not wanted:
            continue
        text = parent[key]
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = None
        if isinstance(value, bool):
            fits = "boolean" in wanted
        elif isinstance(value, int):
            fits = "integer" in wanted or "number" in wanted
        else:
            fits = isinstance(value, float) and "number" in wanted
        if fits:
            parent[key] = value
        elif "string" not in kinds:
            shown = "" if is_secret(path) else f" is {text!r}"
            expected = " or ".join(_SCALAR_TYPES[k] for k in wanted)
            doc.add(path, f"${{{name}}}{shown}: expected {expected}")


def _parent(data: Any, path: NodePath) -> tuple[Any, Any]:
    """The container holding the value at ``path``, and its key there (None, None if absent)."""
    if not path:
        return None, None
    node = data
    for step in path[:-1]:
        if not _holds(node, step):
            return None, None
        node = node[step]
    return (node, path[-1]) if _holds(node, path[-1]) else (None, None)


def _holds(node: Any, step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _schema_types(root: Mapping[str, Any], path: NodePath) -> set[str]:
    """Every JSON type the schema allows at ``path`` (through $ref, oneOf, anyOf and allOf)."""
    nodes = _expand(root, [root])
    for step in path:
        found: list[Mapping[str, Any]] = []
        for node in nodes:
            if isinstance(step, int):
                if isinstance(node.get("items"), dict):
                    found.append(node["items"])
                continue
            if step in node.get("properties", {}):
                found.append(node["properties"][step])
                continue
            matched = [sub for rx, sub in node.get("patternProperties", {}).items() if re.search(rx, step)]
            found += matched
            if not matched and isinstance(node.get("additionalProperties"), dict):
                found.append(node["additionalProperties"])
        nodes = _expand(root, found)
    kinds: set[str] = set()
    for node in nodes:
        declared = node.get("type")
        kinds.update(declared if isinstance(declared, list) else [declared] if declared else [])
        for value in [node["const"]] if "const" in node else node.get("enum", []):
            kinds.add(
                "boolean" if isinstance(value, bool)
                else "integer" if isinstance(value, int)
                else "number" if isinstance(value, float)
                else "string"
            )  # fmt: skip
    return kinds


def _expand(root: Mapping[str, Any], nodes: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    todo = list(nodes)
    while todo:
        node = todo.pop()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            todo.append(root["$defs"][ref.removeprefix("#/$defs/")])
        for combined in ("oneOf", "anyOf", "allOf"):
            todo.extend(node.get(combined, []))
        out.append(node)
    return out


# --------------------------------------------------------------------------------------------
# Schema errors, made readable and located


def _schema_problem(doc: Document, err: ValidationError, fallback: str | None) -> None:
    """Turn one jsonschema error into a located, readable problem."""
    path: NodePath = tuple(err.absolute_path)
    value: Any = err.instance
    if err.validator == "additionalProperties":
        allowed = list(_schema_of(err).get("properties", {}))
        patterns = list(_schema_of(err).get("patternProperties", {}))
        extras = [k for k in value if k not in allowed and not any(re.search(p, str(k)) for p in patterns)]
        for extra in extras:
            doc.add((*path, extra), f"unknown key{_suggest(str(extra), allowed)}", key=True)
        return
    if "propertyNames" in err.schema_path:
        own = _schema_of(err).get("errorMessage") or err.message
        doc.add((*path, value), f"invalid name {value!r}: {own}", key=True)
        return
    if err.validator == "required":
        required: list[str] = list(err.validator_value)  # type: ignore[arg-type]
        missing = next((k for k in required if f"{k!r} is" in err.message), None)
        mapping = doc.mapping_uses.get(path)
        if mapping is not None:  # fields completed by a mapping: say that neither gives it
            if doc.reported(path):
                return
            doc.add(
                (*path[:-1], "mapping"),
                f"the field {missing!r} is required: neither mapping {mapping!r} nor fields: gives it",
                mute=False,
            )
            return
        doc.add(path, f"missing required key {missing!r}", mute=False)
        return
    number = _unquoted_number(doc, err, path)
    if number is not None:
        without_value = _message(err, fallback, secret=True)
        doc.add(path, f'{without_value}: YAML reads {number} as a number; quote it: "{number}"')
        return
    message = _message(err, fallback, secret=is_secret(path))
    doc.add(path, message, mute=err.validator != "maxProperties")


def _unquoted_number(doc: Document, err: ValidationError, path: NodePath) -> str | None:
    """The text of an id YAML read as a number (``group: 123456789012345678901234``), else None."""
    pattern = _schema_of(err).get("pattern")
    node = doc.node_at(path)
    if (
        err.validator not in ("type", "pattern")
        or not isinstance(pattern, str)
        or isinstance(err.instance, str)
        or not isinstance(node, yaml.ScalarNode)
        or node.style is not None  # quoted: a string already
        or not re.search(pattern, node.value)
    ):
        return None
    return str(node.value)


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


def _suggest(word: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(word, allowed, n=1)
    if close:
        return f" {word!r}; did you mean {close[0]!r}?"
    return f" {word!r}; expected one of: {', '.join(allowed)}" if allowed else f" {word!r}"


# --------------------------------------------------------------------------------------------
# Semantic checks: what the schema cannot say. Defensive: the data may have failed the schema.


def _check_base_url(doc: Document, path: NodePath, url: str) -> None:
    """An API URL the client can use: http(s), a host, a port in range (nothing is opened)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range or not a number
    except ValueError as exc:
        doc.add(path, f"not a usable URL: {exc}")
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        doc.add(path, f"not a usable URL: {url!r} (give https://host or http://host:port)")


def _check_declared(doc: Document, data: dict[str, Any]) -> None:
    """Sources and integrations, which a config of several files may declare in any of its files."""
    several = bool(doc.parts)
    for key in ("sources", "integrations"):
        if key not in data:
            where = " (no file of the config declares any)" if several else ""
            doc.add((), f"missing required key {key!r}{where}", mute=False)


def _check_mapping_kinds(doc: Document, data: Any) -> None:
    """A mapping of which the courses (or stats) using it take no field: one problem at the use,
    instead of one per field and per required field."""
    integration = config_schema()["$defs"]["integration"]["properties"]
    for path, name in doc.mapping_uses.items():
        kind = str(path[2])
        rules = data["mappings"][name]["fields"]
        if any(target in integration[kind]["properties"]["fields"]["properties"] for target in rules):
            continue
        doc.add(
            (*path[:-1], "mapping"),
            f"mapping {name!r} gives no field {kind} takes (it gives {', '.join(map(str, rules))})",
            mute=False,
        )
        doc.mute(path)


def _check_mappings(doc: Document, data: dict[str, Any]) -> None:
    """Each mapping's field rules, as ``_check_object`` checks those of courses and stats; those
    an integration uses were checked there already, and are reported there with their use."""
    mappings = data.get("mappings")
    for name, mapping in mappings.items() if isinstance(mappings, dict) else ():
        fields = mapping.get("fields") if isinstance(mapping, dict) else None
        _check_fields(doc, ("mappings", name, "fields"), fields)


def _check_semantics(doc: Document, data: dict[str, Any]) -> None:
    sources = data.get("sources") if isinstance(data.get("sources"), dict) else {}
    assert isinstance(sources, dict)
    if isinstance(data.get("ledger"), str):
        _check_url(doc, ("ledger",), data["ledger"])
    api = data.get("api")
    if isinstance(api, dict) and isinstance(api.get("base_url"), str):
        _check_base_url(doc, ("api", "base_url"), api["base_url"])
    _check_notify(doc, data.get("notify"))
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
        path: NodePath = ("integrations", name)
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


def _check_notify(doc: Document, hooks: Any) -> None:
    """Each webhook: a URL the client can post to (never quoted: it may hold a token), and a
    ``rejected_above`` only where ``on`` lists ``rejected``."""
    for i, hook in enumerate(hooks if isinstance(hooks, list) else ()):
        if not isinstance(hook, dict):
            continue
        url = hook.get("url")
        if isinstance(url, str):
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises ValueError when out of range or not a number
                usable = parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:
                usable = False
            if not usable:
                doc.add(
                    ("notify", i, "url"), "not a usable URL (give https://host/path or http://host:port/path)"
                )
        on = hook.get("on")
        if "rejected_above" in hook and (on is None or (isinstance(on, list) and "rejected" not in on)):
            doc.add(
                ("notify", i, "rejected_above"),
                "applies only when `on` lists rejected; add rejected to `on`, or remove it",
                key=True,
            )


def _check_url(doc: Document, path: NodePath, url: str) -> None:
    """A database URL: well-formed, of a dialect SQLAlchemy knows, whose driver is installed.

    Nothing is opened or created: the dialect is loaded and its driver imported, no more.
    """
    key = "`ledger:`" if path == ("ledger",) else "`url:`"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # The URL may hold a password: say what is wrong, never what it is.
        doc.add(
            path, "not a SQLAlchemy database URL (e.g. sqlite:///syncer.db, postgresql+psycopg://host/db)"
        )
        return
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        doc.add(
            path,
            f"unknown database {parsed.drivername!r} (no SQLAlchemy dialect of that name); "
            f"use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB in {key}",
        )
        return
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = " (for PostgreSQL: pip install 'syncer360[postgres]')" if dialect.name == "postgresql" else ""
        doc.add(path, f"the database driver is not installed ({exc.name or exc}){extra}")


def _check_object(doc: Document, path: NodePath, spec: dict[str, Any], sources: Mapping[str, Any]) -> None:
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
    _check_fields(doc, (*path, "fields"), spec.get("fields"))


def _check_fields(doc: Document, path: NodePath, fields: Any) -> None:
    for target, field_spec in fields.items() if isinstance(fields, dict) else ():
        if target in ("course", "user") and isinstance(field_spec, dict):
            for identifier, inner in field_spec.items():
                _check_field(doc, (*path, target, identifier), target, inner)
        else:
            _check_field(doc, (*path, target), target, field_spec)


def _check_field(doc: Document, path: NodePath, target: str, spec: Any) -> None:
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
# Incremental SQL sources (docs/incremental.md)


def _check_incremental(doc: Document, data: dict[str, Any]) -> None:
    """``overlap``/``full_every`` only with a ``cursor``; ``archive_missing`` never from an
    incremental read alone: rows it did not read are not gone, so it needs ``full_every``."""
    sources = data.get("sources")
    incremental: dict[str, bool] = {}  # source -> has full_every
    for name, src in sources.items() if isinstance(sources, dict) else ():
        sql = src.get("sql") if isinstance(src, dict) else None
        if not isinstance(sql, dict):
            continue
        if "cursor" in sql:
            incremental[name] = "full_every" in sql
            every = sql.get("full_every")
            if isinstance(every, str) and re.fullmatch(r"0+(\.0*)?[smhdw]", every):
                doc.add(
                    ("sources", name, "sql", "full_every"),
                    "a period of 0 makes every read a full one: give a longer one (7d), or remove cursor",
                )
            continue
        for key in ("overlap", "full_every"):
            if key in sql:
                doc.add(
                    ("sources", name, "sql", key),
                    "applies only to an incremental source: add cursor: COLUMN (e.g. updated_at)",
                    key=True,
                )
    integrations = data.get("integrations")
    for name, spec in integrations.items() if isinstance(integrations, dict) else ():
        courses = spec.get("courses") if isinstance(spec, dict) else None
        if not isinstance(courses, dict) or courses.get("archive_missing") is not True:
            continue
        source = courses.get("source")
        if isinstance(source, str) and incremental.get(source) is False:
            doc.add(
                ("integrations", name, "courses", "archive_missing"),
                f"source {source!r} is read incrementally (cursor:), so a course it does not read is not "
                f"gone: add full_every: 7d (or another period) to {source}'s sql, then courses are "
                "archived by its full reads (and by apply --full), or remove archive_missing",
            )
