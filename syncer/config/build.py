"""Build the typed, frozen ``Config`` (``model``) from config data that passed every check.

Nothing here reports a problem: ``checks`` has already refused what cannot be built. A source's
file is relative to the folder of the file that declares it, the ledger and the metrics file to
the main file's; each declaration keeps its ``FILE:LINE:COL`` for later stages' messages, and the
digest covers the data of every file (merged, so that moving a declaration to another file
changes nothing) without its secrets.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from syncer.config.document import Document, NodePath, is_secret
from syncer.config.model import (
    REGIONS,
    ApiConfig,
    BatchSizes,
    Config,
    FieldSpec,
    FieldType,
    FilterOp,
    FilterSpec,
    IntegrationConfig,
    Limits,
    NotifyFormat,
    NotifyOutcome,
    ObjectConfig,
    OnDrift,
    SourceConfig,
    SourceKind,
    Tolerance,
    UnsafeChange,
    Webhook,
)
from syncer.models import content_hash
from syncer.secrets import Secret


def build(doc: Document, path: Path, data: dict[str, Any]) -> Config:
    """The ``Config`` of the config at ``path`` (a file or a directory), from its checked ``data``."""
    folder = Path(doc.file).resolve().parent  # the main file's
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
    sources = {
        name: _build_source(doc, name, spec, Path(doc.file_of(("sources", name))).resolve().parent)
        for name, spec in data["sources"].items()
    }
    integrations = {name: _build_integration(doc, name, spec) for name, spec in data["integrations"].items()}
    return Config(
        path=path,
        files=(Path(doc.file), *(Path(part.file) for part in doc.parts)),
        api=api_config,
        ledger_url=Secret(_ledger_url(data.get("ledger"), folder)),
        sources=sources,
        integrations=integrations,
        version=int(data["version"]),
        digest=content_hash(_public(data)),
        refresh_users=bool(data.get("refresh", {}).get("users", False)),
        sample_rows=data.get("validate", {}).get("sample_rows"),
        redact=bool(data.get("output", {}).get("redact", False)),
        notify=tuple(_build_webhook(doc, i, spec) for i, spec in enumerate(data.get("notify", []))),
        metrics_file=_metrics_file(data.get("metrics"), folder),
        warnings=tuple(doc.all_warnings()),
    )


def _ledger_url(url: str | None, folder: Path) -> str:
    if url is None:
        return f"sqlite:///{folder / 'syncer.db'}"
    return _sqlite_relative(url, folder)


def _sqlite_relative(url: str, folder: Path) -> str:
    """Like source paths, a relative SQLite file is relative to the config file, not to the cwd."""
    match = re.match(r"^(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?$", url)
    if match and match.group(2) and match.group(2) != ":memory:" and not match.group(2).startswith("/"):
        return f"{match.group(1)}:///{folder / match.group(2)}{match.group(3) or ''}"
    return url


def _public(data: Any, path: NodePath = ()) -> Any:
    """The document without its secrets, with string keys: what the digest covers."""
    if isinstance(data, dict):
        return {
            str(k): _public(v, (*path, str(k))) for k, v in data.items() if not is_secret((*path, str(k)))
        }
    if isinstance(data, list):
        return [_public(v, (*path, i)) for i, v in enumerate(data)]
    return data


def _build_webhook(doc: Document, index: int, spec: dict[str, Any]) -> Webhook:
    default = Webhook(url=Secret(""))
    return Webhook(
        url=Secret(str(spec["url"])),
        format=NotifyFormat(spec.get("format", default.format.value)),
        on=frozenset(NotifyOutcome(o) for o in spec["on"]) if "on" in spec else default.on,
        rejected_above=int(spec.get("rejected_above", default.rejected_above)),
        timeout_seconds=float(spec.get("timeout_seconds", default.timeout_seconds)),
        name=str(spec.get("name") or f"notify[{index}]"),
        where=doc.where(("notify", index)),
    )


def _metrics_file(spec: dict[str, Any] | None, folder: Path) -> Path | None:
    """``metrics.file``, relative to the config's folder like the sources' paths."""
    if not spec:
        return None
    file = Path(spec["file"]).expanduser()
    return file if file.is_absolute() else folder / file


def _build_source(doc: Document, name: str, spec: dict[str, Any], folder: Path) -> SourceConfig:
    where = doc.where(("sources", name))
    if "sql" in spec:
        sql = spec["sql"]
        overlap = sql.get("overlap")
        return SourceConfig(
            name,
            SourceKind.SQL,
            url=Secret(_sqlite_relative(sql["url"], folder)),
            query=sql["query"],
            where=where,
            cursor=sql.get("cursor"),
            overlap=duration(overlap) if isinstance(overlap, str) else overlap,
            full_every=duration(sql["full_every"]) if "full_every" in sql else None,
        )
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d``, ``2w`` (the schema's pattern) as a timedelta."""
    return timedelta(seconds=float(text[:-1]) * _UNITS[text[-1]])


def _build_integration(doc: Document, name: str, spec: dict[str, Any]) -> IntegrationConfig:
    path: NodePath = ("integrations", name)
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


def _build_object(doc: Document, path: NodePath, spec: dict[str, Any]) -> ObjectConfig:
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
        on_drift=OnDrift(spec.get("on_drift", OnDrift.RESTORE.value)),
        where=doc.where(path),
    )


def _tolerance(value: int | str | None) -> Tolerance:
    if value is None:
        return Tolerance()
    if isinstance(value, int):
        return Tolerance(count=value)
    return Tolerance(share=float(value.rstrip("%")) / 100)


def _build_field(
    doc: Document, path: NodePath, target: str, spec: Any, identifier: str | None = None
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
