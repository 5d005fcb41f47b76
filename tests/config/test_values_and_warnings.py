"""Issue 16 §6: ``${VAR}`` typed by the schema, ids YAML reads as numbers, secrets written in the file,
API variables unset offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.config import load_config
from syncer.errors import ConfigError, Problem

HEAD = """\
version: 1
api:
  base_url: http://127.0.0.1:8360
  client_id: ${L360_CLIENT_ID:-demo}
  client_secret: ${L360_CLIENT_SECRET:-demo-secret}
"""
TAIL = """\
sources:
  catalog: {csv: courses.csv}
integrations:
  acme:
    platform: Acme
    group: 64b7f0c2a1e4d5f6a7b8c9d0
    author: 64b7f0c2a1e4d5f6a7b8c9d1
    courses:
      source: catalog
      archive_missing: ${ARCHIVE:-false}
      tolerate_invalid: ${TOLERANCE:-3}
      fields:
        externalId: course_id
        name: title
        launchUrl: {template: "https://acme.example/{course_id}"}
        defaultLang: {value: en}
        sources: {value: [{name: Acme}]}
        subjects: {value: []}
"""


def write(tmp_path: Path, head: str = HEAD, tail: str = TAIL) -> Path:
    path = tmp_path / "syncer.yaml"
    path.write_text(head + tail, "utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None, *, offline: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {}, offline=offline)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


NUMBERS = HEAD + '  timeout_seconds: ${TIMEOUT:-60}\n  limits: {concurrent_operations: "${OPS:-2}"}\n'


@pytest.mark.parametrize(
    ("env", "timeout", "ops", "archive", "tolerance"),
    [
        pytest.param({}, 60.0, 2, False, (3, None), id="defaults"),
        pytest.param({"TIMEOUT": "2.5", "OPS": "1"}, 2.5, 1, False, (3, None), id="from-the-environment"),
        pytest.param(
            {"ARCHIVE": "true", "TOLERANCE": "5%"}, 60.0, 2, True, (None, 0.05), id="bool-and-share"
        ),
        pytest.param({"ARCHIVE": "yes", "TOLERANCE": "7"}, 60.0, 2, True, (7, None), id="yaml-rules"),
    ],
)
def test_a_variable_where_a_number_or_boolean_is_expected_is_read_as_one(
    tmp_path: Path, env: dict[str, str], timeout: float, ops: int, archive: bool, tolerance: tuple[int, float]
) -> None:
    config = load_config(write(tmp_path, NUMBERS), env)
    courses = config.integrations["acme"].courses
    assert courses is not None
    assert (config.api.timeout_seconds, config.api.limits.concurrent_operations) == (timeout, ops)
    assert courses.archive_missing is archive
    assert (courses.tolerate_invalid.count, courses.tolerate_invalid.share) == tolerance


def test_a_variable_that_is_not_a_number_is_a_located_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, NUMBERS)
    env = {"TIMEOUT": "soon", "OPS": "1.5", "ARCHIVE": "maybe"}
    assert problems(path, env) == [
        "6:20: api.timeout_seconds: ${TIMEOUT} is 'soon': expected a number",
        "7:35: api.limits.concurrent_operations: ${OPS} is '1.5': expected an integer",
        "17:24: integrations.acme.courses.archive_missing: ${ARCHIVE} is 'maybe': expected true or false",
    ]


def test_a_string_stays_a_string(tmp_path: Path) -> None:
    head = HEAD.replace("client_id: ${L360_CLIENT_ID:-demo}", "client_id: ${L360_CLIENT_ID:-12345}")
    assert load_config(write(tmp_path, head), {}).api.client_id == "12345"


@pytest.mark.parametrize("key", ["group", "author"])
def test_an_all_digit_id_read_as_a_number_says_to_quote_it(tmp_path: Path, key: str) -> None:
    digits = "123456789012345678901234"
    tail = TAIL.replace(f"{key}: 64b7f0c2a1e4d5f6a7b8c9d{'0' if key == 'group' else '1'}", f"{key}: {digits}")
    where = "11:12" if key == "group" else "12:13"
    assert problems(write(tmp_path, tail=tail)) == [
        f"{where}: integrations.acme.{key}: must be a 24-character hex ObjectId: YAML reads {digits} as a"
        f' number; quote it: "{digits}"'
    ]
    quoted = tail.replace(digits, f'"{digits}"')
    assert getattr(load_config(write(tmp_path, tail=quoted), {}).integrations["acme"], key) == digits


def test_an_id_given_by_id_says_to_quote_it_too(tmp_path: Path) -> None:
    tail = TAIL.replace(
        "    platform: Acme\n    group: 64b7f0c2a1e4d5f6a7b8c9d0\n    author: 64b7f0c2a1e4d5f6a7b8c9d1\n",
        "    id: 000000000000000000000123\n",
    )
    assert problems(write(tmp_path, tail=tail)) == [
        "10:9: integrations.acme.id: must be a 24-character hex ObjectId: YAML reads 000000000000000000000123"
        ' as a number; quote it: "000000000000000000000123"'
    ]


def test_secrets_written_in_the_file_are_located_warnings(tmp_path: Path) -> None:
    head = HEAD.replace("${L360_CLIENT_SECRET:-demo-secret}", "s3cr3t") + (
        "ledger: postgresql+psycopg://syncer:pw@db/ledger\n"
    )
    tail = TAIL.replace(
        "  catalog: {csv: courses.csv}\n",
        "  catalog: {csv: courses.csv}\n"
        "  lms: {sql: {url: 'postgresql://reader:pw2@dwh/lms', query: SELECT 1}}\n"
        "  safe: {sql: {url: 'postgresql://reader:${DWH_PASSWORD}@dwh/lms', query: SELECT 1}}\n",
    )
    path = write(tmp_path, head, tail)
    config = load_config(path, {"DWH_PASSWORD": "x"})
    file = str(path)
    assert config.warnings == (
        Problem(
            file,
            5,
            18,
            "api.client_secret: the secret is written in the config; keep it in the environment: "
            "client_secret: ${L360_CLIENT_SECRET}",
        ),
        Problem(
            file,
            6,
            9,
            "ledger: the URL holds a password written in the config; keep it in the environment: "
            "ledger: ${SYNCER_LEDGER_URL}, or ${VAR} in place of the password",
        ),
        Problem(
            file,
            9,
            20,
            "sources.lms.sql.url: the URL holds a password written in the config; keep it in the "
            "environment: url: ${WAREHOUSE_URL}, or ${VAR} in place of the password",
        ),
    )
    assert not any("s3cr3t" in str(w) or "pw@" in str(w) or "pw2" in str(w) for w in config.warnings)


def test_no_warning_for_secrets_from_the_environment(tmp_path: Path) -> None:
    head = HEAD + "ledger: ${SYNCER_LEDGER_URL:-sqlite:///syncer.db}\n"
    assert load_config(write(tmp_path, head), {}).warnings == ()


def test_api_variables_unset_are_warnings_only_offline(tmp_path: Path) -> None:
    head = HEAD.replace("${L360_CLIENT_SECRET:-demo-secret}", "${L360_CLIENT_SECRET}")
    head = head.replace("http://127.0.0.1:8360", "${L360_BASE_URL}") + "  company_id: ${L360_COMPANY}\n"
    head += "ledger: ${SYNCER_LEDGER_URL}\n"
    path = write(tmp_path, head)
    unset = "(or write ${{{0}:-default}})"
    assert problems(path) == [
        f"3:13: api.base_url: environment variable L360_BASE_URL is not set {unset.format('L360_BASE_URL')}",
        f"5:18: api.client_secret: environment variable L360_CLIENT_SECRET is not set "
        f"{unset.format('L360_CLIENT_SECRET')}",
        f"6:15: api.company_id: environment variable L360_COMPANY is not set {unset.format('L360_COMPANY')}",
        f"7:9: ledger: environment variable SYNCER_LEDGER_URL is not set {unset.format('SYNCER_LEDGER_URL')}",
    ]
    # Offline the API's variables are warnings; the ledger is not the API's: still an error.
    assert problems(path, offline=True) == [problems(path)[-1]]
    config = load_config(path, {"SYNCER_LEDGER_URL": "sqlite:///x.db"}, offline=True)
    assert [(w.line, w.message) for w in config.warnings] == [
        (
            line,
            f"api.{key}: environment variable {name} is not set: validate does not call the API; "
            f"plan and apply will need {name}",
        )
        for line, key, name in [
            (3, "base_url", "L360_BASE_URL"),
            (5, "client_secret", "L360_CLIENT_SECRET"),
            (6, "company_id", "L360_COMPANY"),
        ]
    ]
