"""``sample_sources``: the first rows of each source, mapped as a plan maps them, judged by tolerance."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from syncer.config import FieldSpec, load_config
from syncer.errors import ConfigError
from syncer.mapping import SourceSample, sample_sources
from syncer.models import InvalidRow, RecordKind

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
version: 1
api: {base_url: "http://127.0.0.1:8360", client_id: x, client_secret: "${SYNCER_TEST_SECRET:-s}"}
sources:
  catalog: {csv: courses.csv}
  progress: {csv: stats.csv}
integrations:
  acme:
    id: 507f1f77bcf86cd799439011
    courses:
      source: catalog
      filter: [{column: status, equals: published}]
      fields:
        externalId: course_id
        name: title
        launchUrl: {template: "https://acme.example/{course_id}"}
        defaultLang: {value: en}
        sources: {value: [{name: Acme}]}
        subjects: {value: []}
    stats:
      source: progress
      tolerate_invalid: TOLERANCE
      fields:
        course: {externalId: course_id}
        user: {mail: email}
        progress: {column: pct, type: number}
        timeSpent: {value: 60000}
        firstActivityAt: started
        lastActivityAt: finished
"""


def write(tmp_path: Path, stats: list[str], tolerance: str = "1", courses: str | None = None) -> Path:
    (tmp_path / "courses.csv").write_text(
        courses or "course_id,title,status\nC1,One,published\nC2,Two,draft\n", "utf-8"
    )
    rows = [
        f"C1,l{i}@x.example,{pct},2025-01-01T00:00:00Z,2025-01-02T00:00:00Z" for i, pct in enumerate(stats)
    ]
    (tmp_path / "stats.csv").write_text("course_id,email,pct,started,finished\n" + "\n".join(rows) + "\n")
    path = tmp_path / "syncer.yaml"
    path.write_text(CONFIG.replace("TOLERANCE", tolerance), "utf-8")
    return path


def test_valid_sources_give_one_sample_per_integration_and_kind(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["10", "20"]))
    assert sample_sources(config) == [
        SourceSample("acme", "courses", "catalog", 2, [], None, False),
        SourceSample("acme", "stats", "progress", 2, [], None, False),
    ]


def test_only_the_first_rows_are_read_and_invalid_ones_keep_origin_field_and_reason(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["10", "150", "20", "300", "400"]))
    _courses, stats = sample_sources(config, rows=3)
    assert (stats.read, stats.error, stats.beyond_tolerance) == (3, None, False)  # 1 of 3, tolerated: 1
    assert stats.invalid == [
        InvalidRow(
            "acme", RecordKind.STAT, "stats.csv:3", "progress", "150 is greater than the maximum of 100"
        )
    ]
    _courses, stats = sample_sources(config, rows=4)
    assert [row.origin for row in stats.invalid] == ["stats.csv:3", "stats.csv:5"]
    assert stats.beyond_tolerance  # 2 invalid, 1 tolerated


@pytest.mark.parametrize(
    ("tolerance", "beyond"),
    [
        pytest.param("0", True, id="none-tolerated"),
        pytest.param('"20%"', True, id="share-below"),  # 1 of 4 mapped rows is 25%
        pytest.param('"25%"', False, id="share-equal"),
        pytest.param("1", False, id="count"),
    ],
)
def test_tolerance_is_judged_as_the_plan_judges_it(tmp_path: Path, tolerance: str, beyond: bool) -> None:
    config = load_config(write(tmp_path, ["10", "150", "20", "30"], tolerance))
    assert sample_sources(config)[1].beyond_tolerance is beyond


def test_filtered_rows_are_read_but_not_judged(tmp_path: Path) -> None:
    courses = "course_id,title,status\nC1,,published\nC2,Two,draft\nC3,Three,draft\n"
    config = load_config(write(tmp_path, ["10"], courses=courses))
    [courses_sample] = sample_sources(config, integrations=["acme"])[:1]
    assert courses_sample.read == 3
    assert [(r.origin, r.field) for r in courses_sample.invalid] == [("courses.csv:2", "name")]
    assert courses_sample.beyond_tolerance  # 1 invalid of 1 mapped, none tolerated


def test_an_unreadable_source_is_an_error_of_its_sample(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["10", "20"]))
    (tmp_path / "stats.csv").write_text("course_id,email,pct,started,finished\nC1,a@x.example\n", "utf-8")
    _courses, stats = sample_sources(config)
    assert stats.read == 0 and stats.invalid == [] and not stats.beyond_tolerance
    declared = f"(source 'progress' declared at {tmp_path / 'syncer.yaml'}:5:3)"
    assert stats.error == f"{tmp_path / 'stats.csv'}:2: 2 values, but the header has 5 columns {declared}"
    (tmp_path / "stats.csv").unlink()
    assert sample_sources(config)[1].error == f"{tmp_path / 'stats.csv'}: file not found {declared}"


def test_zero_rows_reads_nothing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["150"]))
    assert [(s.read, s.invalid) for s in sample_sources(config, rows=0)] == [(0, []), (0, [])]


def test_unknown_integration_and_bad_field_rules_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, ["10"])
    with pytest.raises(ConfigError, match="no integration named nope"):
        sample_sources(load_config(path), integrations=["nope"])
    config = load_config(path)
    acme = config.integrations["acme"]
    assert acme.courses is not None
    courses = replace(
        acme.courses, fields=(*acme.courses.fields, FieldSpec("nope", column="x", where="c.yaml:9:9"))
    )
    bad = replace(config, integrations={"acme": replace(acme, courses=courses)})
    with pytest.raises(ConfigError, match=r"^c\.yaml:9:9: 'nope' is not a field of the API's course$"):
        sample_sources(bad)


def test_the_demo_sample_holds_its_first_invalid_row() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml", {})
    courses, stats = sample_sources(config)
    assert (courses.read, courses.invalid, stats.read) == (22, [], 100)
    assert [(r.origin, r.field) for r in stats.invalid] == [("stats.csv:43", "progress")]
    assert not stats.beyond_tolerance  # 2% of the sample's rows
