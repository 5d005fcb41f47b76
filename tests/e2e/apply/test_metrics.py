"""The metrics file end to end: ``syncer apply --metrics-file`` (or ``metrics.file``) against the
simulator writes node_exporter's textfile format, which Prometheus' own parser reads, with the
series of docs/metrics.md; a failed run keeps the last success (docs/metrics.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.report.metrics import SERIES
from syncer.runinfo import current_run
from syncer.version import __version__
from tests.e2e.apply.conftest import SECRET, Project

RUN_SERIES = {
    "syncer_last_run_info",
    "syncer_last_run_timestamp_seconds",
    "syncer_last_run_exit_code",
    "syncer_last_success_timestamp_seconds",
    "syncer_last_run_duration_seconds",
    "syncer_last_run_http_429_responses",
}


def read_metrics(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Series name -> {sorted labels: value}, through prometheus_client's text parser."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text("utf-8")):
        assert family.type == "gauge", family.name
        assert family.documentation == SERIES[family.name]
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    return float(metrics[name][tuple(sorted(labels.items()))])


def test_the_file_parses_and_holds_every_documented_series(project: Project) -> None:
    path = project.root / "textfile" / "syncer.prom"
    path.parent.mkdir()
    began = time.time()
    result = project.apply("--metrics-file", str(path))
    assert result.exit_code == 0, result.stderr
    metrics = read_metrics(path)
    assert set(metrics) == set(SERIES)  # every series, and no other
    run = current_run()
    info = {
        "run_id": run.run_id,
        "syncer_version": __version__,
        "host": run.host,
        "config": str(project.config),
    }
    assert value(metrics, "syncer_last_run_info", **info) == 1
    ended = value(metrics, "syncer_last_run_timestamp_seconds")
    assert began <= ended <= time.time()
    assert value(metrics, "syncer_last_success_timestamp_seconds") == ended
    assert value(metrics, "syncer_last_run_exit_code") == 0
    assert 0 < value(metrics, "syncer_last_run_duration_seconds") <= time.time() - began
    assert value(metrics, "syncer_last_run_http_429_responses") == 0
    per_integration = {
        "syncer_last_run_operations": 2,
        "syncer_last_run_failed_operations": 0,
        "syncer_last_run_records_synced": 16,
        "syncer_last_run_records_rejected": 0,
        "syncer_last_run_records_held": 0,
        "syncer_last_run_records_invalid": 0,
    }
    assert {name: value(metrics, name, integration="acme") for name in per_integration} == per_integration
    assert [p.name for p in path.parent.iterdir()] == ["syncer.prom"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert f"metrics written to {path}" in result.stderr


def test_a_failed_run_keeps_the_last_success(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    path = project.root / "syncer.prom"
    assert project.apply("--metrics-file", str(path)).exit_code == 0
    succeeded = value(read_metrics(path), "syncer_last_success_timestamp_seconds")

    monkeypatch.setenv("L360_CLIENT_SECRET", "wrong-secret")
    assert project.apply("--metrics-file", str(path)).exit_code == 1
    metrics = read_metrics(path)
    assert value(metrics, "syncer_last_run_exit_code") == 1
    assert value(metrics, "syncer_last_success_timestamp_seconds") == succeeded  # from the previous file
    assert value(metrics, "syncer_last_run_timestamp_seconds") > succeeded
    assert set(metrics) == RUN_SERIES  # the run's counts are unknown: no per-integration series

    path.unlink()  # no previous file: the ledger's runs say when the last success ended
    assert project.apply("--metrics-file", str(path)).exit_code == 1
    from_ledger = value(read_metrics(path), "syncer_last_success_timestamp_seconds")
    assert succeeded - 2 < from_ledger <= succeeded

    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    assert project.apply("--metrics-file", str(path)).exit_code == 0
    assert value(read_metrics(path), "syncer_last_success_timestamp_seconds") > succeeded


def test_config_file_is_relative_to_the_config_and_the_flag_wins(project: Project) -> None:
    project.config.write_text(project.config.read_text() + "metrics:\n  file: out/syncer.prom\n")
    (project.root / "out").mkdir()
    configured = project.root / "out" / "syncer.prom"
    assert project.apply().exit_code == 0
    first = configured.read_text()
    assert "syncer_last_run_exit_code 0" in first

    flag = project.root / "flag.prom"
    assert project.apply("--metrics-file", str(flag)).exit_code == 0
    assert configured.read_text() == first  # untouched
    assert "syncer_last_run_exit_code 0" in flag.read_text()

    simulated = project.apply("--simulate")  # never overwrites the real runs' file
    assert simulated.exit_code == 0, simulated.stderr
    assert configured.read_text() == first


def test_429_answers_are_counted(project: Project) -> None:
    assert project.sim is not None
    project.sim.add_faults(
        [
            {"method": "PUT", "path_regex": "/courses$", "status": 429, "shape": "structured", "count": 2},
            {"method": "GET", "path": "/api/v2/integrations", "status": 429, "shape": "flat"},
        ]
    )
    path = project.root / "syncer.prom"
    result = project.apply("--metrics-file", str(path))
    assert result.exit_code == 0, result.stderr
    assert value(read_metrics(path), "syncer_last_run_http_429_responses") == 3


def test_written_even_when_the_config_is_broken(project: Project) -> None:
    project.config.write_text(project.config.read_text() + "bogus: 1\n")
    path = project.root / "syncer.prom"
    result = project.apply("--metrics-file", str(path))
    assert result.exit_code == 1
    metrics = read_metrics(path)
    assert value(metrics, "syncer_last_run_exit_code") == 1
    assert value(metrics, "syncer_last_success_timestamp_seconds") == 0  # none known
    assert set(metrics) == RUN_SERIES


def test_a_file_that_cannot_be_written_is_a_warning(project: Project) -> None:
    path = project.root / "missing-folder" / "syncer.prom"
    result = project.apply("--metrics-file", str(path))
    assert result.exit_code == 0, result.stderr
    assert f"metrics: cannot write {path}: " in result.stderr
    assert "the run's exit code (0) is unchanged" in result.stderr
    assert not path.parent.exists()
