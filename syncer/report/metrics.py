"""Metrics: the Prometheus text-format file an apply writes at its end (docs/metrics.md).

node_exporter's textfile collector reads every ``*.prom`` file of its directory at each scrape:
the file is written to a temporary file in the same directory, then renamed over the old one,
so that a scrape never sees half a file. Every series is a gauge describing the last apply run;
``syncer_last_success_timestamp_seconds`` is carried over from the previous file (or the
ledger's runs) when this run did not succeed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from syncer.report.runend import RunEnd

SERIES: dict[str, str] = {
    "syncer_last_run_info": "The last apply run: its run id, syncer version, host and config (value 1).",
    "syncer_last_run_timestamp_seconds": "When the last apply run ended (Unix time).",
    "syncer_last_run_exit_code": "Exit code of the last apply run (docs/cron.md).",
    "syncer_last_success_timestamp_seconds": "When the last apply run that succeeded (exit 0 or 3) "
    "ended (Unix time; 0: none known).",
    "syncer_last_run_duration_seconds": "How long the last apply run took, in seconds.",
    "syncer_last_run_http_429_responses": "429 (too many requests) answers the API gave the last apply run.",
    "syncer_last_run_operations": "Bulk operations the last apply run followed to their end, "
    "per integration.",
    "syncer_last_run_failed_operations": "Bulk operations of the last apply run that ended in error, "
    "per integration.",
    "syncer_last_run_records_synced": "Records the last apply run synced, per integration.",
    "syncer_last_run_records_rejected": "Records the API rejected in the last apply run, per integration.",
    "syncer_last_run_records_held": "Statistics the last apply run held (not sent), per integration.",
    "syncer_last_run_records_invalid": "Invalid rows the last apply run's plan found, per integration.",
}
"""Every series of the file and its HELP text; all are gauges."""

_LAST_SUCCESS = re.compile(r"^syncer_last_success_timestamp_seconds(?:\{[^}]*\})?\s+(\S+)\s*$", re.MULTILINE)


def previous_success(path: Path) -> float | None:
    """``syncer_last_success_timestamp_seconds`` of the file at ``path``, if it has a known one."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return None
    match = _LAST_SUCCESS.search(text)
    try:
        value = float(match.group(1)) if match else 0.0
    except ValueError:
        return None
    return value if value > 0 else None


def render_metrics(end: RunEnd, last_success: float | None) -> str:
    """The file's text: HELP and TYPE of each series, then its samples."""
    run = end.run
    samples: dict[str, list[tuple[dict[str, str], float]]] = {
        "syncer_last_run_info": [
            (
                {
                    "run_id": run.run_id,
                    "syncer_version": run.syncer_version,
                    "host": run.host,
                    "config": str(end.config),
                },
                1,
            )
        ],
        "syncer_last_run_timestamp_seconds": [({}, end.ended_at)],
        "syncer_last_run_exit_code": [({}, end.exit_code)],
        "syncer_last_success_timestamp_seconds": [
            ({}, end.ended_at if end.succeeded else (last_success or 0))
        ],
        "syncer_last_run_duration_seconds": [({}, end.duration)],
        "syncer_last_run_http_429_responses": [({}, end.answers_429)],
    }
    report = end.report
    if report is not None:  # a run an error stopped has no counts: its per-integration series are absent
        for name, o in report.integrations.items():
            label = {"integration": name}
            for series, value in (
                ("syncer_last_run_operations", o.operations),
                ("syncer_last_run_failed_operations", o.failed_operations),
                ("syncer_last_run_records_synced", o.synced),
                ("syncer_last_run_records_rejected", o.rejected),
                ("syncer_last_run_records_held", o.held),
                ("syncer_last_run_records_invalid", o.invalid),
            ):
                samples.setdefault(series, []).append((label, value))
    lines: list[str] = []
    for series, help_text in SERIES.items():
        if series not in samples:
            continue
        lines.append(f"# HELP {series} {_escape_help(help_text)}")
        lines.append(f"# TYPE {series} gauge")
        lines.extend(f"{series}{_labels(labels.items())} {_value(v)}" for labels, v in samples[series])
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, text: str) -> None:
    """Replace the file at ``path`` by ``text`` atomically: a temporary file in the same
    directory, flushed to disk, then renamed over it (readable by all, as node_exporter needs)."""
    folder = path.parent
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in pairs)
    return f"{{{inner}}}" if inner else ""


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}"
