"""`syncer validate CONFIG`: offline checks through the CLI, exact output and exit codes."""

from __future__ import annotations

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
  client_secret: demo-secret
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
    assert result.stdout == f"{config}: valid (1 integration, 1 source)\n"


def test_done_when_three_problems_three_lines(runner: CliRunner, config: Path) -> None:
    text = CONFIG.replace("  client_secret: demo-secret\n", "  client_secret: demo-secret\n  colour: blue\n")
    text = text.replace(f"id: {OID}", "id: 507f1f77bcf86cd79943901z")
    text = text.replace("client_id: ${SYNCER_TEST_ID:-demo}", "client_id: ${SYNCER_TEST_ID}")
    config.write_text(text, "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{config}:4:14: api.client_id: environment variable SYNCER_TEST_ID is not set"
        " (or write ${SYNCER_TEST_ID:-default})\n"
        f"{config}:6:3: api.colour: unknown key 'colour'; expected one of: region, base_url, client_id,"
        " client_secret, company_id, limits, batch_size, timeout_seconds, retry_seconds\n"
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


def test_secret_never_printed(runner: CliRunner, config: Path) -> None:
    config.write_text(CONFIG.replace("client_secret: demo-secret", "client_secret: [hunter2]"), "utf-8")
    result = runner.invoke(cli, ["validate", str(config)])
    assert result.exit_code == 1
    assert "api.client_secret: must be a string" in result.stderr and "hunter2" not in result.output
