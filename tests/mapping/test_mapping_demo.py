"""Each deliberately invalid row of the demo is reported with its file:line, field and reason."""

from __future__ import annotations

from pathlib import Path

from syncer.config import load_config
from syncer.mapping import map_source
from syncer.models import InvalidRow, RecordKind

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = [
    ("stats.csv:43", "progress", "150 is greater than the maximum of 100"),
    ("stats.csv:109", "userIdentifier", "missing value in column 'email'"),
    ("stats.csv:235", "firstActivityAt", "'31/02/2025 10:00' does not match format '%d/%m/%Y %H:%M'"),
    (
        "stats.csv:320",
        "result",
        "'maybe' is not in the map of column 'outcome' (known: ['passed', 'failed'])",
    ),
    ("stats.csv:404", "timeSpent", "0 is less than the minimum of 1"),
]


def test_every_invalid_demo_row_is_reported_with_origin_field_and_reason() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml", {})
    acme = config.integrations["acme"]
    found: list[tuple[str, str | None, str]] = []
    for kind, spec in ((RecordKind.COURSE, acme.courses), (RecordKind.STAT, acme.stats)):
        assert spec is not None
        for item in map_source(acme, kind, spec, config.sources[spec.source]):
            if isinstance(item, InvalidRow):
                found.append((item.origin, item.field, item.reason))
    assert found == EXPECTED


def test_invalid_rows_point_at_the_right_line_of_the_file() -> None:
    lines = (ROOT / "configs" / "demo" / "stats.csv").read_text("utf-8").splitlines()
    assert ";1.5;" in lines[43 - 1]  # 1.5 scaled by 100 is 150
    assert "31/02/2025 10:00" in lines[235 - 1]
    assert "maybe" in lines[320 - 1]
