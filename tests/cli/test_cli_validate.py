"""`syncer validate CONFIG`: offline checks through the CLI, exact output and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli

OID = "507f1f77bcf86cd799439011"

CONFIG = """\
version: 1
api:
  base_url: http://127.0.0.1:8360
  client_id: ${SYNCER_TEST_ID:-demo}
  client_secret: ${SYNCER_TEST_SECRET:-demo-secret}
sources:
  catalog: {csv: courses.csv}
integrations:
  acme:
    id: 507f1f77bcf86cd799439011
    courses:
      source: catalog
      fields:
        externalId: course_id
        name: title
        launchUrl: {template: "https://acme.example/{course_id}"}
        defaultLang: {value: en}
        sources: {value: [{name: Acme}]}
        subjects: {column: tags, split: "|"}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "courses.csv").write_text("course_id,title,tags\nC1,One,a|b\n", "utf-8")
    path = tmp_path / "syncer.yaml"
    path.write_text(CONFIG, "utf-8")
    return path


def test_valid_config(runner: CliRunner, config: Path) -> None:
    result = runner.invoke(cli, ["validate", str(config)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"{config}: valid (1 integration, 1 source; the first 100 rows of each source mapped)\n"
    )


def test_done_when_three_problems_three_lines(runner: CliRunner, config: Path) -> None:
    text = CONFIG.replace("  client_secret: ${SYNCER_TEST_SECRET:-demo-secret}\n", "  colour: blue\n")
    text = text.replace(f"id: {OID}", "id: 507f1f77bcf86cd79943901z")
    text = text.replace("client_id: ${SYNCER_TEST_ID:-demo}", "client_id: ${SYNCER_TEST_ID}")
    text = text.replace("sources:\n", "ledger: ${SYNCER_TEST_LEDGER}\nsources:\n")
    config.write_text(text, "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{config}:3:3: api: missing required key 'client_secret'\n"
        f"{config}:5:3: api.colour: unknown key 'colour'; expected one of: region, base_url, client_id,"
        " client_secret, company_id, limits, batch_size, timeout_seconds, retry_seconds\n"
        f"{config}:6:9: ledger: environment variable SYNCER_TEST_LEDGER is not set"
        " (or write ${SYNCER_TEST_LEDGER:-default})\n"
        f"{config}:11:9: integrations.acme.id: must be a 24-character hex ObjectId"
        " (got '507f1f77bcf86cd79943901z')\n"
    )


def test_variable_from_the_environment(runner: CliRunner, config: Path) -> None:
    config.write_text(CONFIG.replace("${SYNCER_TEST_ID:-demo}", "${SYNCER_TEST_ID}"), "utf-8")
    result = runner.invoke(cli, ["validate", str(config)], env={"SYNCER_TEST_ID": "set"})
    assert result.exit_code == 0, result.stderr


def test_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = runner.invoke(cli, ["validate", str(path)])
    assert (result.exit_code, result.stderr) == (1, f"{path}: config file not found\n")


def test_missing_column_is_reported_at_the_field(runner: CliRunner, config: Path) -> None:
    config.write_text(CONFIG.replace("name: title", "name: titel"), "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{config}:15:9: ") and "'titel'" in line


def test_unreadable_source(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    (tmp_path / "courses.csv").unlink()
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{config}:7:") and "courses.csv" in result.stderr


def test_api_variables_unset_are_warnings_offline(runner: CliRunner, config: Path) -> None:
    text = CONFIG.replace("${SYNCER_TEST_ID:-demo}", "${SYNCER_TEST_ID}")
    text = text.replace("${SYNCER_TEST_SECRET:-demo-secret}", "${SYNCER_TEST_SECRET}")
    text = text.replace("base_url: http://127.0.0.1:8360", "base_url: ${SYNCER_TEST_URL}")
    config.write_text(text, "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "".join(
        f"warning: {config}:{line}: api.{key}: environment variable {name} is not set: validate does not"
        f" call the API; plan and apply will need {name}\n"
        for line, key, name in [
            ("3:13", "base_url", "SYNCER_TEST_URL"),
            ("4:14", "client_id", "SYNCER_TEST_ID"),
            ("5:18", "client_secret", "SYNCER_TEST_SECRET"),
        ]
    )
    result = runner.invoke(cli, ["plan", str(config)])  # plan calls no API either, but needs them
    assert result.exit_code == 1
    assert "SYNCER_TEST_URL is not set (or write ${SYNCER_TEST_URL:-default})" in result.stderr


def test_a_literal_secret_is_a_located_warning(runner: CliRunner, config: Path) -> None:
    text = CONFIG.replace("${SYNCER_TEST_SECRET:-demo-secret}", "hunter2")
    text = text.replace("sources:\n", "ledger: postgresql+psycopg://syncer:pw42@db/syncer\nsources:\n")
    config.write_text(text, "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 0
    assert result.stderr == (
        f"warning: {config}:5:18: api.client_secret: the secret is written in the config; keep it in the"
        " environment: client_secret: ${L360_CLIENT_SECRET}\n"
        f"warning: {config}:6:9: ledger: the URL holds a password written in the config; keep it in the"
        " environment: ledger: ${SYNCER_LEDGER_URL}, or ${VAR} in place of the password\n"
    )
    assert "hunter2" not in result.output and "pw42" not in result.output
    result = runner.invoke(cli, ["--log-format", "json", "validate", str(config)])
    assert [json.loads(line)["level"] for line in result.stderr.splitlines()] == ["warning", "warning"]


def test_ledger_url_is_checked_without_opening_it(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    cases = {
        "nosuchdb://u@h/db": "unknown database 'nosuchdb' (no SQLAlchemy dialect of that name); use"
        " sqlite:///PATH or postgresql+psycopg://USER@HOST/DB in `ledger:`",
        "mssql+pymssql://u@h/db": "the database driver is not installed (pymssql)",
        "postgresql+psycopg://": None,
        "no url at all": "not a SQLAlchemy database URL (e.g. sqlite:///syncer.db, postgresql+psycopg://host/db)",
    }
    for url, message in cases.items():
        config.write_text(CONFIG.replace("sources:\n", f"ledger: {url}\nsources:\n"), "utf-8")
        result = runner.invoke(cli, ["validate", str(config)])
        expected = (1, f"{config}:6:9: ledger: {message}\n") if message else (0, "")
        assert (result.exit_code, result.stderr) == expected, url
    config.write_text(CONFIG.replace("sources:\n", "ledger: sqlite:///new/ledger.db\nsources:\n"), "utf-8")
    assert runner.invoke(cli, ["validate", str(config)]).exit_code == 0
    assert not (tmp_path / "new").exists()  # never opened, never created


def test_secret_never_printed(runner: CliRunner, config: Path) -> None:
    config.write_text(CONFIG.replace("${SYNCER_TEST_SECRET:-demo-secret}", "[hunter2]"), "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 1
    assert "api.client_secret: must be a string" in result.stderr and "hunter2" not in result.output


ROOT = Path(__file__).resolve().parents[2]
BROKEN_DATE = 'firstActivityAt: {column: started, format: "%Y-%m-%d %H:%M"'


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of configs/demo.yaml and its data."""
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "demo.yaml")
    shutil.copytree(ROOT / "configs" / "demo", tmp_path / "demo")
    return tmp_path / "demo.yaml"


def test_demo_sample_is_valid_and_shows_its_tolerated_invalid_row(runner: CliRunner, demo: Path) -> None:
    result = runner.invoke(cli, ["validate", str(demo)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"{demo}: valid (1 integration, 2 sources; the first 100 rows of each source mapped)\n"
        "acme stats (source 'progress'): 1 of the first 100 rows invalid, within tolerate_invalid:\n"
        "  stats.csv:43  acme stat  progress: 150 is greater than the maximum of 100\n"
    )


def test_a_date_format_that_breaks_every_statistic_fails_validate(runner: CliRunner, demo: Path) -> None:
    text = demo.read_text("utf-8")
    demo.write_text(text.replace('firstActivityAt: {column: started, format: "%d/%m/%Y %H:%M"', BROKEN_DATE))
    result = runner.invoke(cli, ["validate", str(demo)])
    assert result.exit_code == 1
    wrong = "acme stat  firstActivityAt: '{}' does not match format '%Y-%m-%d %H:%M'"
    assert result.stdout == (
        "acme stats (source 'progress'): 99 of the first 100 rows invalid, beyond tolerate_invalid:\n"
        f"  stats.csv:2  {wrong.format('13/07/2025 07:35')}\n"
        f"  stats.csv:3  {wrong.format('30/03/2025 08:55')}\n"
        f"  stats.csv:4  {wrong.format('27/06/2025 01:10')}\n"
        f"  stats.csv:5  {wrong.format('14/04/2025 08:35')}\n"
        f"  stats.csv:6  {wrong.format('10/05/2025 02:00')}\n"
        "  and 94 more\n"
    )
    assert result.stderr == (
        f"Error: {demo}: more invalid rows than tolerate_invalid allows in the first 100 rows of acme stats;"
        " plan and apply would exit 3\n"
    )
    # Read no source: what can be checked without them still is, and passes.
    result = runner.invoke(cli, ["validate", str(demo), "--no-sources"])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"{demo}: valid (1 integration, 2 sources; sources not read: --no-sources)\n"


def test_sample_rows_from_the_option_or_the_config(runner: CliRunner, demo: Path) -> None:
    text = demo.read_text("utf-8")
    demo.write_text(text.replace('firstActivityAt: {column: started, format: "%d/%m/%Y %H:%M"', BROKEN_DATE))
    result = runner.invoke(cli, ["validate", str(demo), "--sample-rows", "3"])
    assert result.exit_code == 1
    assert "3 of the first 3 rows invalid, beyond tolerate_invalid" in result.stdout
    assert "in the first 3 rows of acme stats" in result.stderr
    demo.write_text(demo.read_text("utf-8") + "validate:\n  sample_rows: 0\n")
    result = runner.invoke(cli, ["validate", str(demo)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"{demo}: valid (1 integration, 2 sources; no row mapped: --sample-rows 0)\n"
    assert runner.invoke(cli, ["validate", str(demo), "--sample-rows", "10"]).exit_code == 1


def test_no_sources_reads_no_file(runner: CliRunner, demo: Path) -> None:
    shutil.rmtree(demo.parent / "demo")  # a pull request from a fork: no access to the data
    assert runner.invoke(cli, ["validate", str(demo)]).exit_code == 1
    result = runner.invoke(cli, ["validate", str(demo), "--no-sources"])
    assert (result.exit_code, result.stderr) == (0, "")


def test_an_empty_source_is_a_warning(runner: CliRunner, demo: Path) -> None:
    courses = demo.parent / "demo" / "courses.csv"
    courses.write_text(courses.read_text("utf-8").splitlines(keepends=True)[0], "utf-8")  # header only
    result = runner.invoke(cli, ["validate", str(demo)])
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: acme courses (source 'catalog'): the source has no rows; plan and apply send nothing from"
        " it and archive nothing (archive_missing)\n"
    )


def test_a_bad_row_past_the_column_check_fails_validate(runner: CliRunner, demo: Path) -> None:
    stats = demo.parent / "demo" / "stats.csv"
    lines = stats.read_text("utf-8").splitlines(keepends=True)
    lines[50] = "ACME-001;too;few\n"
    stats.write_text("".join(lines), "utf-8")
    result = runner.invoke(cli, ["validate", str(demo)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"{stats}:51: 3 values, but the header has 10 columns (source 'progress' declared at {demo}:18:3)\n"
    )
