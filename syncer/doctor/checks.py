"""What a check says (``Check``, ``CheckStatus``, ``DoctorReport``) and the offline checks: the
config, the names of the variables holding the credentials, and the sources' first rows.

A check never raises for what it finds: a problem is a ``Check`` with status ``fail`` and the fix
a person applies, in the words of the config (its file, its keys, its ``${VAR}`` names).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from syncer.config import Config, load_config
from syncer.errors import ConfigError

__all__ = [
    "Check",
    "CheckStatus",
    "DoctorReport",
    "check_config",
    "check_sources",
    "config_warnings",
    "credential_variables",
    "skipped",
]

# How many invalid rows of a source a check shows (the rest: `syncer plan`, `syncer rejected`).
_SHOWN_ROWS = 5
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


class CheckStatus(StrEnum):
    """The outcome of one check."""

    OK = "ok"
    WARN = "warn"  # worth knowing, not a failure (e.g. cannot check: a scope is missing)
    FAIL = "fail"
    SKIP = "skip"  # could not run because an earlier check failed


@dataclass(frozen=True)
class Check:
    """One line of ``syncer doctor``: what was checked, how it went, what was found, the fix."""

    name: str
    status: CheckStatus
    detail: str
    fix: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one ``syncer doctor`` run, in order."""

    config_path: Path
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(check.status is not CheckStatus.FAIL for check in self.checks)


def skipped(names: Sequence[str], reason: str) -> list[Check]:
    """The checks that cannot run, each saying which earlier failure stopped it."""
    return [Check(name, CheckStatus.SKIP, reason) for name in names]


def config_warnings(config: Config) -> list[Check]:
    """The config's located warnings (a secret written in the file...), one line each."""
    return [Check("config", CheckStatus.WARN, str(warning)) for warning in config.warnings]


def check_config(path: Path, wanted: Sequence[str] | None) -> tuple[Check, Config | None]:
    """Load the config; on a problem the check lists every one of them (``FILE:LINE:COL``)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        problems = [str(p) for p in exc.problems] or [str(exc)]
        count = f"{len(problems)} problem{'s' * (len(problems) != 1)}"
        return Check("config", CheckStatus.FAIL, f"{path}: {count}", tuple(problems)), None
    unknown = [name for name in wanted or () if name not in config.integrations]
    if unknown:
        known = ", ".join(config.integrations) or "none"
        fix = f"use one of the config's integrations with --integration: {known}"
        return Check("config", CheckStatus.FAIL, f"no integration named {', '.join(unknown)}", (fix,)), None
    integrations, sources = len(config.integrations), len(config.sources)
    detail = (
        f"{path} is valid ({integrations} integration{'s' * (integrations != 1)}, "
        f"{sources} source{'s' * (sources != 1)})"
    )
    return Check("config", CheckStatus.OK, detail), config


def credential_variables(path: Path) -> dict[str, list[str]]:
    """The ``${VAR}`` names ``api.client_id`` and ``api.client_secret`` are read from, by key.

    Read from the YAML as written (before interpolation), so that a fix can name the variables
    instead of values; a key given literally has no entry.
    """
    try:
        data: Any = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    api = data.get("api") if isinstance(data, dict) else None
    if not isinstance(api, dict):
        return {}
    found = {}
    for key in ("client_id", "client_secret", "company_id"):
        value = api.get(key)
        names = _VARIABLE.findall(value) if isinstance(value, str) else []
        if names:
            found[key] = names
    return found


def check_sources(config: Config, names: Sequence[str]) -> list[Check]:
    """Read the first rows of each source of the integrations and map them."""
    from syncer.mapping import sample_sources

    checks = []
    for sample in sample_sources(config, integrations=names):
        name = f"source of {sample.integration} {sample.kind}"
        if sample.error is not None:
            fix: tuple[str, ...] = (
                f"check the source {sample.source} in {config.path} (its path, encoding, URL or query), "
                "and that the user running syncer can read it",
            )
            checks.append(Check(name, CheckStatus.FAIL, f"{sample.source}: cannot read: {sample.error}", fix))
            continue
        invalid = len(sample.invalid)
        counted = f"{sample.source}: {invalid} of the first {sample.read} rows are invalid"
        shown: tuple[str, ...] = tuple(f"{row.origin}: {row.reason}" for row in sample.invalid[:_SHOWN_ROWS])
        if invalid > len(shown):
            shown += (f"... and {invalid - len(shown)} more (syncer plan lists them all)",)
        if sample.beyond_tolerance:
            where = f"{sample.integration}'s {sample.kind}"
            fix = (f"correct these rows, or tolerate some: tolerate_invalid in {where}", *shown)
            checks.append(Check(name, CheckStatus.FAIL, f"{counted}, beyond tolerate_invalid", fix))
        elif invalid:
            checks.append(Check(name, CheckStatus.WARN, f"{counted} (tolerated, never sent)", shown))
        elif sample.read == 0:
            checks.append(Check(name, CheckStatus.OK, f"{sample.source}: no rows, nothing to send"))
        else:
            rows = "its one row maps" if sample.read == 1 else f"the first {sample.read} rows map"
            checks.append(Check(name, CheckStatus.OK, f"{sample.source}: {rows}"))
    return checks
