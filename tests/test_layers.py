"""The import rule of docs/architecture.md: a stage never imports a stage above it.

The stages, from the bottom: the root base modules (errors, models, version, progress, runinfo,
resources, secrets), then config, sources, mapping, ledger, plan, api, refresh, doctor, apply,
report, cli. A module may import its own stage and the stages below. The simulator stands apart: it imports
only the base, and only the CLI and ``syncer.apply.sandbox`` (which only the CLI imports) may
import it. ``syncer/__init__.py`` is the public facade and imports lazily from every stage.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``. The test
reads the source (ast), so it also sees imports that a run would not reach.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "syncer"
BASE = {"errors", "models", "version", "progress", "redaction", "resources", "runinfo", "secrets"}
STAGES = [
    "base",
    "config",
    "sources",
    "mapping",
    "ledger",
    "plan",
    "api",
    "refresh",
    "doctor",
    "apply",
    "report",
    "cli",
]
SIMULATOR_IMPORTERS = {"syncer.cli", "syncer.apply.sandbox"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def stage(module: str) -> str:
    """The stage of a syncer module: base, config, ..., cli, simulator, or facade."""
    parts = module.split(".")
    if module == "syncer":
        return "facade"
    top = parts[1]
    if top in BASE:
        return "base"
    if top in ("cli", "__main__"):
        return "cli"
    if top == "simulator":
        return "simulator"
    if top in STAGES:
        return top
    raise AssertionError(f"{module}: no stage (add it to tests/test_layers.py and docs/architecture.md)")


def imports(module: str, source: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, imported syncer module) for every import in a module's source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source if source is not None else path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "syncer":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "syncer":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in MODULES else base


def violations(changed: dict[str, str] | None = None) -> list[str]:
    """Every import that breaks the rule, as ``file:line: what`` (``changed``: module -> source)."""
    out = []
    for module, path in MODULES.items():
        here = stage(module)
        for line, target in imports(module, (changed or {}).get(module)):
            there = stage(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if here == "facade":
                continue  # the public facade imports lazily from every stage
            if there == "simulator":
                if here != "simulator" and module not in SIMULATOR_IMPORTERS:
                    out.append(f"{where}: {module} imports the simulator ({target})")
                continue
            if there == "facade":
                out.append(f"{where}: {module} imports the package root; import the module itself")
                continue
            if here == "simulator":
                if there != "base":
                    out.append(
                        f"{where}: the simulator imports {target} ({there}); it may import only the base"
                    )
                continue
            if STAGES.index(there) > STAGES.index(here):
                out.append(f"{where}: {module} ({here}) imports {target} ({there}), a stage above it")
    return out


def test_no_stage_imports_a_stage_above_it() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        (
            "syncer.ledger.lock",
            "from syncer.plan import Plan",
            "(ledger) imports syncer.plan (plan), a stage above",
        ),
        (
            "syncer.config.loader",
            "import syncer.apply",
            "(config) imports syncer.apply (apply), a stage above",
        ),
        ("syncer.api.client", "from syncer.simulator import Simulator", "imports the simulator"),
        ("syncer.simulator.state", "from syncer.ledger import Ledger", "the simulator imports syncer.ledger"),
        ("syncer.plan.streams", "from syncer import version", ""),  # a root base module: fine
    ],
)
def test_an_upward_import_is_reported(module: str, line: str, expected: str) -> None:
    """The checker itself: an import written into a copy of a module's source is reported."""
    source = MODULES[module].read_text("utf-8") + f"\n\ndef _added() -> None:\n    {line}\n"
    found = [v for v in violations({module: source}) if v not in violations()]
    if not expected:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found


def test_no_import_cycle_between_modules() -> None:
    """Module-level imports (not TYPE_CHECKING, not inside functions) form no cycle."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"))
        edges = set()
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("syncer"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in MODULES else node.module)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("syncer")}
        graph[module] = {e for e in edges if e in MODULES and e != module}
    seen: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in seen:
                visit(nxt, [*trail, nxt])
        seen[node] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])
    # A package's __init__ re-exports its modules, and a module of the package never imports
    # the package back (it imports its siblings by path): so no cycle runs through an __init__.
    assert cycles == []
