"""Plan files (``syncer plan --out``): what a plan was computed from, so that a stale one is refused.

A saved plan records the config digest, the ledger generation of each of its integrations and a
hash of each source it read; ``syncer apply PLANFILE`` checks them all, then plans again (the plan
is deterministic) and executes. Writes for another integration leave a plan valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from syncer.config import Config, SourceConfig, SourceKind
from syncer.errors import PlanError, SourceError
from syncer.ledger import Ledger
from syncer.models import RecordKind, dumps_canonical
from syncer.plan.build import select_integrations
from syncer.plan.plan import Plan
from syncer.plan.reads import Read, reads_from_data
from syncer.sources import load_rows

__all__ = ["SavedPlan", "check_saved_plan", "fingerprint_source", "load_saved_plan", "save_plan"]

SAVED_PLAN_VERSION = 2
"""2: a ledger generation per integration (``ledger_generations``); 1 had one for the whole ledger."""


@dataclass(frozen=True)
class SavedPlan:
    """A plan file: what it was computed from, and its summary."""

    path: Path
    config_digest: str
    ledger_generations: Mapping[str, int]
    sources: Mapping[str, str]
    integrations: tuple[str, ...] | None
    retry_rejected: bool
    summary: Mapping[str, Any] = field(default_factory=dict)
    # Incremental SQL sources: the rows each stream read (apply reads the same), and their hash.
    reads: Mapping[tuple[str, RecordKind], Read] = field(default_factory=dict)
    read_fingerprints: Mapping[tuple[str, RecordKind], str] = field(default_factory=dict)


def fingerprint_source(source: SourceConfig) -> str:
    """A hash of a source's content: the file's bytes, or the rows an SQL query returns."""
    digest = hashlib.blake2b(digest_size=16)
    if source.kind in (SourceKind.CSV, SourceKind.JSONL):
        if source.path is None:
            raise SourceError(f"source {source.name!r} has no file path")
        try:
            with open(source.path, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        except OSError as exc:
            raise SourceError(f"{source.path}: cannot read: {exc.strerror}") from exc
        return digest.hexdigest()
    for row in load_rows(source):
        digest.update(dumps_canonical(dict(row.values)) if row.values else b"{}")
        digest.update(b"\n")
    return digest.hexdigest()


def _used_sources(config: Config, names: Iterable[str], reads: Iterable[Read] = ()) -> list[str]:
    """The sources the plan read in full (an incremental read is fingerprinted on its own rows)."""
    windowed = {(r.integration, r.kind) for r in reads}
    used: list[str] = []
    for name in names:
        integration = config.integrations[name]
        for kind, spec in ((RecordKind.COURSE, integration.courses), (RecordKind.STAT, integration.stats)):
            if spec is not None and spec.source not in used and (name, kind) not in windowed:
                used.append(spec.source)
    return used


def _config_digest(config: Config) -> str:
    if config.digest:
        return config.digest
    try:
        return hashlib.blake2b(config.path.read_bytes(), digest_size=16).hexdigest()
    except OSError as exc:
        raise PlanError(f"{config.path}: cannot read: {exc.strerror}") from exc


def save_plan(
    path: Path,
    plan: Plan,
    config: Config,
    summary: Mapping[str, Any],
    *,
    integrations: Sequence[str] | None = None,
) -> None:
    """Write a plan file that ``syncer apply PLANFILE`` can check and execute (no secret in it)."""
    names = select_integrations(config, integrations)
    data = {
        "format_version": SAVED_PLAN_VERSION,
        "config": str(config.path),
        "config_digest": _config_digest(config),
        "ledger_generations": {name: plan.generations.get(name, 0) for name in names},
        "sources": {
            name: fingerprint_source(config.sources[name])
            for name in _used_sources(config, names, plan.reads)
        },
        "reads": [
            {**read.data(), "fingerprint": fingerprint_source(read.on(config.sources[read.source]))}
            for read in plan.reads
        ],
        "integrations": list(integrations) if integrations else None,
        "retry_rejected": plan.retry_rejected,
        "plan": dict(summary),
    }
    try:
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise PlanError(f"{path}: cannot write the plan: {exc.strerror}") from exc


def load_saved_plan(path: Path) -> SavedPlan:
    """Read a plan file written by ``syncer plan --out``."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise PlanError(f"{path}: not a plan file (invalid JSON: {exc})") from exc
    try:
        if data["format_version"] == 1:
            raise PlanError(
                f"{path}: plan format 1 was written by an older syncer (one ledger generation for "
                "every integration); run syncer plan again"
            )
        if data["format_version"] != SAVED_PLAN_VERSION:
            raise PlanError(f"{path}: plan format {data['format_version']} is not supported; plan again")
        names = data["integrations"]
        return SavedPlan(
            path=path,
            config_digest=str(data["config_digest"]),
            ledger_generations={str(k): int(v) for k, v in data["ledger_generations"].items()},
            sources={str(k): str(v) for k, v in data["sources"].items()},
            integrations=None if names is None else tuple(str(n) for n in names),
            retry_rejected=bool(data["retry_rejected"]),
            summary=data["plan"],
            reads=reads_from_data(data.get("reads", [])),
            read_fingerprints={
                (str(r["integration"]), RecordKind(r["kind"])): str(r["fingerprint"])
                for r in data.get("reads", [])
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanError(f"{path}: not a syncer plan file ({type(exc).__name__}: {exc})") from exc


def check_saved_plan(saved: SavedPlan, config: Config, ledger: Ledger) -> None:
    """Raise PlanError when the config, the ledger or a source changed since the plan was made."""
    again = "run syncer plan again"
    if saved.config_digest != _config_digest(config):
        raise PlanError(f"{saved.path}: the config changed since the plan was made; {again}")
    now = ledger.generations(saved.ledger_generations)
    for name, generation in saved.ledger_generations.items():
        if now[name] != generation:
            raise PlanError(
                f"{saved.path}: the ledger changed for integration {name!r} since the plan was made; {again}"
            )
    for name, fingerprint in saved.sources.items():
        source = config.sources.get(name)
        if source is None or fingerprint_source(source) != fingerprint:
            raise PlanError(f"{saved.path}: the source {name!r} changed since the plan was made; {again}")
    for key, read in saved.reads.items():
        source = config.sources.get(read.source)
        if source is None or fingerprint_source(read.on(source)) != saved.read_fingerprints.get(key):
            raise PlanError(
                f"{saved.path}: the rows of source {read.source!r} the plan read changed since it was made; "
                f"{again}"
            )
