"""The metrics file: Prometheus' own parser reads it, every series is documented, the last success
is carried over, and the write is atomic (docs/metrics.md). End to end: tests/e2e/apply/test_metrics.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.apply import IntegrationOutcome, RunReport
from syncer.report.metrics import SERIES, previous_success, render_metrics, write_metrics
from syncer.report.runend import RunEnd

ROOT = Path(__file__).resolve().parents[2]


def end(exit_code: int, report: RunReport | None, config: str = "syncer.yaml") -> RunEnd:
    return RunEnd(
        config=Path(config),
        exit_code=exit_code,
        started_at=1_700_000_000.0,
        ended_at=1_700_000_012.25,
        report=report,
        answers_429=3,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation == SERIES[family.name]
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_finished_run() -> None:
    report = RunReport(
        1,
        {
            "acme": IntegrationOutcome("acme", operations=2, synced=16, rejected=1, held=2, invalid=3),
            "beta": IntegrationOutcome("beta", operations=1, failed_operations=1),
        },
    )
    found = samples(render_metrics(end(4, report), last_success=1_600_000_000.0))
    assert found[("syncer_last_run_exit_code", ())] == 4
    assert found[("syncer_last_success_timestamp_seconds", ())] == 1_600_000_000.0  # exit 4: kept
    assert found[("syncer_last_run_timestamp_seconds", ())] == 1_700_000_012.25
    assert found[("syncer_last_run_duration_seconds", ())] == 12.25
    assert found[("syncer_last_run_http_429_responses", ())] == 3
    assert found[("syncer_last_run_records_synced", (("integration", "acme"),))] == 16
    assert found[("syncer_last_run_records_held", (("integration", "acme"),))] == 2
    assert found[("syncer_last_run_records_invalid", (("integration", "acme"),))] == 3
    assert found[("syncer_last_run_failed_operations", (("integration", "beta"),))] == 1
    assert {name for name, _ in found} == set(SERIES)


@pytest.mark.parametrize(("code", "kept"), [(0, False), (3, False), (1, True), (5, True), (6, True)])
def test_last_success_is_this_run_only_when_it_succeeded(code: int, kept: bool) -> None:
    found = samples(render_metrics(end(code, RunReport(1, {})), last_success=None))
    assert found[("syncer_last_success_timestamp_seconds", ())] == (0 if kept else 1_700_000_012.25)


def test_labels_are_escaped() -> None:
    text = render_metrics(end(1, None, config='/srv/a "b"\\c\nd.yaml'), last_success=None)
    info = [key for key in samples(text) if key[0] == "syncer_last_run_info"]
    assert dict(info[0][1])["config"] == '/srv/a "b"\\c\nd.yaml'


def test_previous_success(tmp_path: Path) -> None:
    path = tmp_path / "syncer.prom"
    assert previous_success(path) is None  # no file
    path.write_text(render_metrics(end(0, None), last_success=None))
    assert previous_success(path) == 1_700_000_012.25
    path.write_text(render_metrics(end(1, None), last_success=None))
    assert previous_success(path) is None  # 0: none known
    path.write_text("syncer_last_success_timestamp_seconds garbage\n")
    assert previous_success(path) is None


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "syncer.prom"
    path.write_text("old\n")
    held = path.open()  # a reader of the old file keeps reading the old file
    write_metrics(path, "new\n")
    assert held.read() == "old\n" and path.read_text() == "new\n"
    held.close()
    assert [p.name for p in tmp_path.iterdir()] == ["syncer.prom"]
    folder = tmp_path / "a-folder.prom"
    folder.mkdir()
    with pytest.raises(OSError):
        write_metrics(folder, "x\n")  # cannot replace a folder: the temporary file goes too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder.prom", "syncer.prom"]


def test_docs_list_every_series() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `(syncer_[a-z_0-9]+)` \|", text, re.MULTILINE))
    assert documented == set(SERIES)
