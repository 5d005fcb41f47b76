"""A config object's field rules and filters -> one generated row function (straight Python code).

``RowSource`` writes the function that maps one row's values: the filters, then every field
inline (read its column or template, trim, default or missing, then its value steps from
syncer.mapping.values), then the compiled schema check. The function returns None (filtered
out), (field, reason), or the checked payload. ``parse_template`` reads a template such as
``"{first} {last}"`` into its literal parts and the columns it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from string import Formatter
from typing import Any

from syncer.config import FieldSpec, FilterOp, FilterSpec
from syncer.mapping.checker import Check
from syncer.mapping.values import (
    DATETIME_PARSERS,
    NUL_REASON,
    BadValue,
    apply_steps,
    cell_text,
    field_steps,
    has_nul,
)

__all__ = ["RowSource", "parse_template"]


def parse_template(text: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """A template's (literal, column or None) parts, and the columns it names."""
    parts = [(literal, name) for literal, name, _spec, _conv in Formatter().parse(text)]
    return parts, [name for _lit, name in parts if name]


def _template_reader(text: str) -> Callable[[Mapping[str, Any]], str | None]:
    parts, _names = parse_template(text)

    def read(values: Mapping[str, Any]) -> str | None:
        out = []
        for literal, name in parts:
            out.append(literal)
            if name:
                v = values.get(name)
                if v is None or v == "":
                    return None
                out.append(v if type(v) is str else cell_text(v))
        return "".join(out)

    return read


def _filter(spec: FilterSpec) -> Callable[[Mapping[str, Any]], bool]:
    column, op = spec.column, spec.op
    if op in (FilterOp.EMPTY, FilterOp.NOT_EMPTY):
        want = op is FilterOp.EMPTY
        return lambda values: (values.get(column) in (None, "")) is want
    if op in (FilterOp.EQUALS, FilterOp.NOT_EQUALS):
        target, want = cell_text(spec.value), op is FilterOp.EQUALS
        return lambda values: (cell_text(values.get(column)) == target) is want
    raw = spec.value if isinstance(spec.value, list | tuple | set | frozenset) else [spec.value]
    allowed, want = frozenset(cell_text(v) for v in raw), op is FilterOp.IN
    return lambda values: (cell_text(values.get(column)) in allowed) is want


class RowSource:
    """Generates the row function: filters, then each field inline, then the schema check."""

    def __init__(self) -> None:
        self.lines: list[str] = []  # the fields' code, inside the row function's try block
        self.env: dict[str, Any] = {"BadValue": BadValue, "has_nul": has_nul}
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
        steps = field_steps(spec, prop, label)
        if steps and not ident and steps[-1] in DATETIME_PARSERS:
            self.trusted.add(target)
        wrap = (lambda v: {"type": ident, "value": v}) if ident else (lambda v: v)
        emit = self.lines.append
        emit(f"        field = {target!r}")
        if spec.has_value:  # constants are converted once, here; BadValue is the caller's config error
            emit(f"        payload[{target!r}] = {self.const(wrap(_constant(steps, spec.value)))}")
            return
        if spec.template is not None:
            emit(f"        v = {self.const(_template_reader(spec.template))}(values)")
            names, suffix = parse_template(spec.template)[1], f" (template {spec.template!r})"
        else:
            emit(f"        v = values.get({spec.column!r})")
            names, suffix = [spec.column or ""], ""
        if spec.trim or spec.identifier == "mail":
            emit("        if type(v) is str: v = v.strip()")
        emit('        if v is None or v == "":')
        if spec.has_default and spec.default not in (None, ""):
            emit(f"            payload[{target!r}] = {self.const(wrap(_constant(steps, spec.default)))}")
        elif spec.split is not None:  # an empty cell is an empty list (no subjects), not a gap
            emit(f"            payload[{target!r}] = {self.const(wrap(apply_steps(steps, '')))}")
        elif required and len(names) == 1:
            emit(f"            raise BadValue({f'missing value in column {names[0]!r}{suffix}'!r})")
        elif required:
            emit(f"            raise BadValue({self.const(_first_missing(names, suffix))}(values))")
        else:
            emit("            pass")
        # A NUL is refused before any step: it would be cut short or refused further down (C
        # strings, the ledger, the platform), so the row is invalid rather than sent or a crash.
        where = f"column {names[0]!r}" if spec.template is None else f"template {spec.template!r}"
        emit('        elif ("\\x00" in v) if type(v) is str else has_nul(v):')
        emit(f"            raise BadValue({f'{NUL_REASON} in {where}'!r})")
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
        body.append("    except BadValue as exc: return (field, str(exc))")
        body += [f"    payload[{name!r}] = {self.const(value)}" for name, value in extra.items()]
        body.append(f"    return {self.const(check)}(payload) or payload")
        exec(compile("\n".join(body), "<row function>", "exec"), self.env)
        run: Callable[[Mapping[str, Any]], Any] = self.env["run"]
        return run


def _constant(steps: list[Callable[[Any], Any]], value: Any) -> Any:
    """A config constant or default through its steps; BadValue if it holds a NUL."""
    if has_nul(value):
        raise BadValue(NUL_REASON)
    return apply_steps(steps, value)


def _first_missing(names: list[str], suffix: str) -> Callable[[Mapping[str, Any]], str]:
    def first(values: Mapping[str, Any]) -> str:
        gone = next((n for n in names if values.get(n) in (None, "")), names[0])
        return f"missing value in column {gone!r}{suffix}"

    return first
