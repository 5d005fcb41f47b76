"""Over a hundred bad inputs through the CLI: each exits 1 naming the file, never with a traceback.

Every case starts from one healthy project (a config, a CSV and a JSON Lines source, a ledger
already migrated) in its own folder, breaks one thing (the config, a data file, the ledger, a
saved plan, or the command line) and runs ``syncer`` in-process. It must exit 1 (a person must
act), print no traceback and no "internal error", and its message must name the file (and the
line where there is one). No case reaches the network: the API is a closed local port, and
``apply`` is run only where it fails before any call.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config.document import MAX_CONFIG_BYTES
from syncer.ledger import Ledger
from tests.project import reset_syncer_logger

CONFIG = """\
version: 1
api:
  base_url: http://127.0.0.1:9
  client_id: demo
  client_secret: demo-secret
  timeout_seconds: 1
  retry_seconds: 1
sources:
  catalog: {csv: courses.csv}
  progress: {jsonl: stats.jsonl}
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
    stats:
      source: progress
      fields:
        course: {externalId: course_id}
        user: {mail: email}
        progress: {column: pct, type: number}
        timeSpent: {column: seconds, unit: s}
        firstActivityAt: started
        lastActivityAt: finished
"""
COURSES = "course_id,title,tags\nC1,One,a|b\nC2,Two,c\n"
STAT = (
    '{"course_id": "C1", "email": "ann@acme.example", "pct": 50, "seconds": 60,'
    ' "started": "2025-03-01T08:00:00Z", "finished": "2025-03-01T09:00:00Z"}\n'
)
DIR = object()
"""A file's content that makes it a directory."""

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: files to write over the healthy project, the command, what stderr must hold."""

    args: tuple[str, ...]
    files: dict[str, object] = field(default_factory=dict)
    expect: tuple[str, ...] = ()
    setup: Setup | None = None
    code: int = 1


def edit(old: str, new: str, text: str = CONFIG) -> str:
    """The config with ``old`` (which it must hold once) replaced."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def at(line: int, col: int | None = None) -> str:
    """``{config}:LINE:`` (or ``:LINE:COL:``): where a config problem is reported."""
    return f"{{config}}:{line}:{col}:" if col is not None else f"{{config}}:{line}:"


def config_case(text: str | bytes, *expect: str, command: str = "validate") -> Case:
    return Case((command, "{config}"), {"syncer.yaml": text}, expect or ("{config}",))


# -- configs ---------------------------------------------------------------------------------

CONFIGS: dict[str, Case] = {
    "empty-file": config_case("", at(1, 1), "empty"),
    "only-a-comment": config_case("# nothing here\n", at(1, 1), "empty"),
    "only-whitespace": config_case("\n\n   \n", "{config}:1:1:"),
    "binary-garbage": config_case(bytes(range(256)) * 4, "{config}"),
    "invalid-utf8": config_case(CONFIG.encode() + b"# caf\xe9\n", "{config}"),
    "utf16-file": config_case(CONFIG.encode("utf-16"), "{config}"),
    "nul-byte-in-yaml": config_case(edit("client_id: demo", "client_id: de\x00mo"), at(4)),
    "control-character": config_case(edit("client_id: demo", "client_id: de\x07mo"), at(4)),
    "a-list-not-a-mapping": config_case("- version: 1\n- api: {}\n", "{config}:1"),
    "a-scalar-document": config_case("just some text\n", "{config}:1"),
    "null-document": config_case("~\n", "{config}"),
    "two-documents": config_case(CONFIG + "---\nversion: 1\n", "{config}"),
    "unclosed-flow-mapping": config_case(
        edit("catalog: {csv: courses.csv}", "catalog: {csv: courses.csv"), at(10)
    ),
    "unclosed-flow-list": config_case(edit("[{name: Acme}]", "[{name: Acme}"), "{config}:2"),
    "unclosed-quote": config_case(edit('"https://acme.example/{course_id}"', '"https://acme'), "{config}:"),
    "tab-indentation": config_case(edit("  client_id: demo", "\tclient_id: demo"), at(4)),
    "bad-indentation": config_case(edit("  client_id: demo", "   client_id: demo"), at(4)),
    "mapping-value-not-allowed": config_case(edit("client_id: demo", "client_id: a: b"), at(4)),
    "text-after-a-quoted-value": config_case(edit("client_id: demo", "client_id: 'demo' x"), at(4)),
    "block-sequence-in-mapping": config_case(edit("  client_id: demo", "  - client_id: demo"), at(4)),
    "undefined-alias": config_case(edit("client_id: demo", "client_id: *nowhere"), at(4), "nowhere"),
    "python-object-tag": config_case(
        edit("client_id: demo", "client_id: !!python/object:os.system ls"), at(4)
    ),
    "custom-tag": config_case(edit("client_id: demo", "client_id: !secret demo"), at(4)),
    "bad-binary-tag": config_case(edit("client_id: demo", "client_id: !!binary '%%%'"), at(4)),
    "bad-int-tag": config_case(edit("timeout_seconds: 1", "timeout_seconds: !!int abc"), at(6)),
    "bad-timestamp-tag": config_case(edit("client_id: demo", "client_id: !!timestamp 2025-99-99"), at(4)),
    "unhashable-key": config_case(edit("  client_id: demo", "  ? [a, b]\n  : demo"), "{config}:4"),
    "integer-key": config_case(edit("  client_id: demo", "  client_id: demo\n  1: one"), at(5)),
    "null-key": config_case(
        edit("  client_id: demo", "  client_id: demo\n  ~: nothing"), "{config}:", "None"
    ),
    "version-missing": config_case(edit("version: 1\n", ""), "{config}:1", "version"),
    "version-2": config_case(edit("version: 1", "version: 2"), at(1), "version"),
    "version-a-string": config_case(edit("version: 1", "version: one"), at(1), "version"),
    "unknown-top-level-key": config_case(CONFIG + "colour: blue\n", at(32), "colour"),
    "unknown-api-key": config_case(
        edit("  client_id: demo", "  client_id: demo\n  colour: blue"), at(5), "colour"
    ),
    "unknown-source-key": config_case(
        edit("{csv: courses.csv}", "{csv: courses.csv, colour: blue}"), at(9), "colour"
    ),
    "unknown-integration-key": config_case(
        edit("    id: 507f", "    colour: blue\n    id: 507f"), at(13), "colour"
    ),
    "unknown-field-option": config_case(
        edit("{column: tags, split", "{column: tags, colour: blue, split"), at(22)
    ),
    "field-not-in-the-api": config_case(
        edit("        name: title", "        name: title\n        colour: x"), at(19)
    ),
    "api-a-string": config_case(edit("api:\n  base_url", "api: nope\nx:\n  base_url"), at(2)),
    "sources-a-list": config_case(edit("  catalog: {csv: courses.csv}", "  - catalog"), "{config}:"),
    "integrations-a-list": config_case(edit("integrations:\n  acme:", "integrations:\n- acme:"), "{config}:"),
    "fields-a-string": config_case(
        edit("      fields:\n        externalId", "      fields: x\n      f:\n        externalId"), at(16)
    ),
    "base-url-a-number": config_case(edit("base_url: http://127.0.0.1:9", "base_url: 5"), at(3)),
    "base-url-not-a-url": config_case(edit("base_url: http://127.0.0.1:9", "base_url: not a url"), at(3)),
    "base-url-ftp": config_case(edit("base_url: http://127.0.0.1:9", "base_url: ftp://x.example"), at(3)),
    "base-url-no-host": config_case(edit("base_url: http://127.0.0.1:9", "base_url: 'http://'"), at(3)),
    "base-url-bad-port": config_case(
        edit("base_url: http://127.0.0.1:9", "base_url: http://127.0.0.1:99999"), at(3), command="apply"
    ),
    "launch-url-template-unclosed": config_case(edit('{course_id}"}', '{course_id"}'), at(19)),
    "template-unknown-column": config_case(edit('{course_id}"}', '{nope}"}'), "{config}:19"),
    "timeout-negative": config_case(edit("timeout_seconds: 1", "timeout_seconds: -1"), at(6)),
    "timeout-a-string": config_case(edit("timeout_seconds: 1", "timeout_seconds: soon"), at(6)),
    "timeout-infinite": config_case(edit("timeout_seconds: 1", "timeout_seconds: .inf"), at(6)),
    "timeout-nan": config_case(edit("timeout_seconds: 1", "timeout_seconds: .nan"), at(6)),
    "retry-huge-number": config_case(edit("retry_seconds: 1", "retry_seconds: 1e400"), at(7)),
    "batch-size-a-string": config_case(
        edit("  retry_seconds: 1", "  retry_seconds: 1\n  batch_size: many"), at(8)
    ),
    "batch-size-zero": config_case(
        edit("  retry_seconds: 1", "  retry_seconds: 1\n  batch_size: {courses: 0}"), at(8)
    ),
    "batch-size-huge-int": config_case(
        edit("  retry_seconds: 1", "  retry_seconds: 1\n  batch_size: {courses: " + "9" * 400 + "}"), at(8)
    ),
    "limits-too-many-operations": config_case(
        edit("  retry_seconds: 1", "  retry_seconds: 1\n  limits: {concurrent_operations: 10}"), at(8)
    ),
    "company-id-not-an-objectid": config_case(
        edit("  retry_seconds: 1", "  retry_seconds: 1\n  company_id: x"), at(8)
    ),
    "integration-id-bad": config_case(
        edit("id: 507f1f77bcf86cd799439011", "id: 507f1f77bcf86cd79943901z"), at(13)
    ),
    "integration-id-a-number": config_case(edit("id: 507f1f77bcf86cd799439011", "id: 12"), at(13)),
    "integration-id-huge": config_case(edit("id: 507f1f77bcf86cd799439011", "id: " + "f" * 900_000), at(13)),
    "source-unknown": config_case(edit("      source: catalog", "      source: nowhere"), at(15), "nowhere"),
    "source-two-kinds": config_case(
        edit("{csv: courses.csv}", "{csv: courses.csv, jsonl: stats.jsonl}"), at(9)
    ),
    "source-no-kind": config_case(edit("{csv: courses.csv}", "{delimiter: ';'}"), at(9)),
    "delimiter-two-chars": config_case(
        edit("{csv: courses.csv}", "{csv: courses.csv, delimiter: ';;'}"), at(9)
    ),
    "encoding-unknown": config_case(
        edit("{csv: courses.csv}", "{csv: courses.csv, encoding: klingon}"), "klingon"
    ),
    "sql-source-bad-url": config_case(
        edit("  progress: {jsonl: stats.jsonl}", "  progress: {sql: {url: 'nonsense://', query: SELECT 1}}"),
        "nonsense",
    ),
    "timezone-unknown": config_case(
        edit("firstActivityAt: started", "firstActivityAt: {column: started, timezone: Mars/Olympus}"), at(30)
    ),
    "timezone-malformed": config_case(
        edit("firstActivityAt: started", "firstActivityAt: {column: started, timezone: '../../etc/passwd'}"),
        at(30),
    ),
    "timezone-a-number": config_case(
        edit("firstActivityAt: started", "firstActivityAt: {column: started, timezone: 5}"), at(30)
    ),
    "date-format-a-number": config_case(
        edit("firstActivityAt: started", "firstActivityAt: {column: started, format: 5}"), at(30)
    ),
    "unit-unknown": config_case(edit("unit: s}", "unit: fortnight}"), at(29)),
    "type-unknown": config_case(edit("type: number}", "type: complex}"), at(28)),
    "map-a-list": config_case(edit("{column: pct, type: number}", "{column: pct, map: [a, b]}"), at(28)),
    "split-empty": config_case(edit('split: "|"', 'split: ""'), at(22)),
    "identifier-unknown": config_case(edit("user: {mail: email}", "user: {phone: email}"), at(27)),
    "filter-unknown-op": config_case(
        edit("      source: progress", "      source: progress\n      filter: [{column: pct, like: 5}]"),
        at(25),
    ),
    "tolerate-invalid-bad": config_case(
        edit("      source: progress", "      source: progress\n      tolerate_invalid: lots"), at(25)
    ),
    "duplicate-top-level-key": config_case(CONFIG + "version: 1\n", at(32), "version"),
    "duplicate-api-key": config_case(
        edit("  client_id: demo", "  client_id: demo\n  client_id: other"), at(5)
    ),
    "duplicate-field": config_case(
        edit("        name: title", "        name: title\n        name: title"), at(19)
    ),
    "duplicate-integration": config_case(CONFIG + "  acme: {id: 507f1f77bcf86cd799439012}\n", at(32)),
    "missing-variable": config_case(
        edit("client_id: demo", "client_id: ${SYNCER_TEST_NOPE}"), at(4), "SYNCER_TEST_NOPE", command="plan"
    ),
    "unclosed-variable": config_case(edit("client_secret: demo-secret", "client_secret: ${oops"), at(5)),
    "variable-in-ledger-unset": config_case(CONFIG + "ledger: ${SYNCER_TEST_LEDGER}\n", at(32)),
    "alias-bomb": config_case(
        "version: 1\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "alias",
    ),
    "recursive-alias-mapping": config_case("version: 1\nx: &x\n  y: *x\n", at(2), "recursive"),
    "recursive-alias-list": config_case("version: 1\nx: &x [1, [2, *x]]\n", at(2), "recursive"),
    "oversized-file": config_case("version: 1\n# " + "x" * MAX_CONFIG_BYTES + "\n", at(1, 1)),
    "deeply-nested-lists": config_case(
        edit("client_id: demo", "client_id: " + "[" * 5000 + "]" * 5000), at(4)
    ),
    "deeply-nested-mappings": config_case(
        edit("client_id: demo", "client_id: " + "{a: " * 5000 + "1" + "}" * 5000), at(4)
    ),
    "deeply-nested-blocks": config_case(
        CONFIG + "".join(" " * i + "k:\n" for i in range(0, 400, 2)) + " " * 400 + "v: 1\n", at(132)
    ),
    "very-long-key": config_case(CONFIG + "k" * 2000 + ": 1\n", at(32)),
    "ledger-a-number": config_case(CONFIG + "ledger: 5\n", at(32)),
    "ledger-unknown-scheme": config_case(CONFIG + "ledger: 'nonsense://x'\n", "nonsense", command="plan"),
    "ledger-not-a-url": config_case(CONFIG + "ledger: ':::'\n", "{config}", command="plan"),
    "ledger-driver-missing": config_case(
        CONFIG + "ledger: 'mysql+nodriver://u@h/db'\n", "mysql", command="plan"
    ),
    "sample-rows-negative": config_case(CONFIG + "validate: {sample_rows: -5}\n", at(32)),
}

# -- how a config file is named on the command line --------------------------------------------

PATHS: dict[str, Case] = {
    "config-missing": Case(("validate", "{dir}/nope.yaml"), {}, ("{dir}/nope.yaml",)),
    "config-is-a-directory": Case(("validate", "{dir}/adir"), {"adir": DIR}, ("{dir}/adir",)),
    "config-under-a-file": Case(("validate", "{dir}/courses.csv/syncer.yaml"), {}, ("courses.csv",)),
    "config-missing-for-plan": Case(("plan", "{dir}/nope.yaml"), {}, ("{dir}/nope.yaml",)),
    "config-missing-for-status": Case(("status", "{dir}/nope.yaml"), {}, ("{dir}/nope.yaml",)),
    "config-missing-for-rejected": Case(("rejected", "{dir}/nope.yaml"), {}, ("{dir}/nope.yaml",)),
    "config-missing-for-apply": Case(("apply", "{dir}/nope.yaml"), {}, ("{dir}/nope.yaml",)),
    "config-empty-name": Case(("validate", ""), {}, ()),
}

# -- data files ----------------------------------------------------------------------------------


def data_case(name: str, content: object, *expect: str, command: str = "plan") -> Case:
    return Case((command, "{config}"), {name: content}, expect or (f"{{dir}}/{name}",))


DATA: dict[str, Case] = {
    "csv-missing": data_case("courses.csv", None, "{dir}/courses.csv"),
    "csv-is-a-directory": data_case("courses.csv", DIR, "{dir}/courses.csv"),
    "csv-latin1": data_case(
        "courses.csv", "course_id,title,tags\nC1,Café,a\n".encode("latin-1"), "{dir}/courses.csv:2"
    ),
    "csv-latin1-validate": data_case(
        "courses.csv",
        "course_id,title,tags\nC1,Café,a\n".encode("latin-1"),
        "{dir}/courses.csv:2",
        command="validate",
    ),
    "csv-utf16": data_case("courses.csv", COURSES.encode("utf-16"), "{dir}/courses.csv"),
    "csv-binary-garbage": data_case("courses.csv", bytes(range(256)) * 8, "{dir}/courses.csv"),
    "csv-too-many-values": data_case("courses.csv", COURSES + "C3,Three,x,extra\n", "{dir}/courses.csv:4"),
    "csv-too-few-values": data_case("courses.csv", COURSES + "C3\n", "{dir}/courses.csv:4"),
    "csv-ragged-validate": data_case(
        "courses.csv", COURSES + "C3\n", "{dir}/courses.csv:4", command="validate"
    ),
    "csv-empty": data_case("courses.csv", "", at(17), "course_id", command="validate"),
    "csv-header-missing-a-column": data_case(
        "courses.csv", "course_id,tags\nC1,a\n", at(18), command="validate"
    ),
    "csv-no-header-only-data": data_case(
        "courses.csv", "C1,One,a|b\n", at(17), "course_id", command="validate"
    ),
    "csv-semicolons": data_case(
        "courses.csv", COURSES.replace(",", ";"), at(17), "course_id", command="validate"
    ),
    "csv-bom-then-latin1": data_case(
        "courses.csv",
        b"\xef\xbb\xbf" + "course_id,title,tags\nC1,\xe9t\xe9,a\n".encode("latin-1"),
        "courses.csv:2",
    ),
    "csv-huge-field": data_case(
        "courses.csv", COURSES + "C3," + "x" * 200_000 + ",a\n", "{dir}/courses.csv:4"
    ),
    "csv-unterminated-quote": data_case("courses.csv", COURSES + 'C3,"Three,a\n', "{dir}/courses.csv"),
    "jsonl-missing": data_case("stats.jsonl", None, "{dir}/stats.jsonl"),
    "jsonl-is-a-directory": data_case("stats.jsonl", DIR, "{dir}/stats.jsonl"),
    "jsonl-broken-line": data_case("stats.jsonl", STAT + '{"course_id": "C1", \n', "{dir}/stats.jsonl:2"),
    "jsonl-truncated-last-line": data_case("stats.jsonl", STAT + STAT[:40], "{dir}/stats.jsonl:2"),
    "jsonl-an-array-line": data_case("stats.jsonl", STAT + "[1, 2]\n", "{dir}/stats.jsonl:2", "array"),
    "jsonl-a-string-line": data_case("stats.jsonl", STAT + '"text"\n', "{dir}/stats.jsonl:2", "string"),
    "jsonl-a-number-line": data_case("stats.jsonl", STAT + "42\n", "{dir}/stats.jsonl:2", "number"),
    "jsonl-a-null-line": data_case("stats.jsonl", STAT + "null\n", "{dir}/stats.jsonl:2", "null"),
    "jsonl-a-csv-file": data_case("stats.jsonl", COURSES, "{dir}/stats.jsonl:1"),
    "jsonl-latin1": data_case(
        "stats.jsonl", STAT.replace("ann", "\xe9").encode("latin-1"), "{dir}/stats.jsonl:1"
    ),
    "jsonl-raw-nul-byte": data_case("stats.jsonl", STAT.replace("ann", "a\x00n"), "{dir}/stats.jsonl:1"),
    "jsonl-deep-nesting": data_case(
        "stats.jsonl", STAT + "[" * 100_000 + "]" * 100_000 + "\n", "stats.jsonl:2"
    ),
    "jsonl-huge-number": data_case("stats.jsonl", STAT + '{"pct": 1e400}\n', "{dir}/stats.jsonl:2"),
    "jsonl-broken-validate": data_case(
        "stats.jsonl", '{"course_id": \n', "{dir}/stats.jsonl:1", command="validate"
    ),
}

# -- ledgers ---------------------------------------------------------------------------------------


def ledger_case(command: str, content: object = None, *expect: str, setup: Setup | None = None) -> Case:
    files = {} if content is None else {"syncer.db": content}
    return Case((command, "{config}"), files, expect or ("{dir}/syncer.db",), setup)


def _truncate(folder: Path) -> None:
    path = folder / "syncer.db"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _corrupt_pages(folder: Path) -> None:
    path = folder / "syncer.db"
    data = bytearray(path.read_bytes())
    for i in range(4096, len(data), 97):  # every page but the header: b-trees in shreds
        data[i] = 0xA5
    path.write_bytes(bytes(data))


def _newer_schema(folder: Path) -> None:
    with sqlite3.connect(folder / "syncer.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    conn.close()


def _no_version_row(folder: Path) -> None:
    with sqlite3.connect(folder / "syncer.db") as conn:
        conn.execute("DELETE FROM alembic_version")
        conn.execute("DROP TABLE records")
    conn.close()


def _foreign_sqlite(folder: Path) -> None:
    (folder / "syncer.db").unlink()
    with sqlite3.connect(folder / "syncer.db") as conn:
        conn.execute("CREATE TABLE records (x INTEGER)")
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('0001')")
    conn.close()


def _ledger_in(path: str) -> Setup:
    def setup(folder: Path) -> None:
        (folder / "syncer.yaml").write_text(CONFIG + f"ledger: sqlite:///{folder}/{path}\n", "utf-8")

    return setup


def _read_only_ledger(folder: Path) -> None:
    (folder / "syncer.db").chmod(0o444)


LEDGERS: dict[str, Case] = {}
for _command in ("plan", "status", "rejected"):
    LEDGERS |= {
        f"{_command}-ledger-is-a-directory": ledger_case(_command, DIR),
        f"{_command}-ledger-is-garbage": ledger_case(_command, b"this is not a database\n" * 200),
        f"{_command}-ledger-truncated": ledger_case(_command, setup=_truncate),
        f"{_command}-ledger-newer-schema": ledger_case(_command, None, "ffff", setup=_newer_schema),
        f"{_command}-ledger-folder-missing": ledger_case(
            _command, None, "{dir}/gone", setup=_ledger_in("gone/s.db")
        ),
    }
LEDGERS |= {
    "plan-ledger-pages-corrupt": ledger_case("plan", None, setup=_corrupt_pages),
    "plan-ledger-tables-dropped": ledger_case("plan", None, setup=_no_version_row),
    "plan-ledger-of-another-program": ledger_case("plan", None, setup=_foreign_sqlite),
    "plan-ledger-under-a-file": ledger_case(
        "plan", None, "courses.csv", setup=_ledger_in("courses.csv/s.db")
    ),
    "apply-ledger-is-garbage": ledger_case("apply", b"SQLite format 2\x00" + b"\xff" * 5000),
    "apply-ledger-newer-schema": ledger_case("apply", None, "ffff", setup=_newer_schema),
    "apply-lock-file-is-a-directory": Case(
        ("apply", "{config}"), {"syncer.db.lock": DIR}, ("{dir}/syncer.db.lock",)
    ),
}

# -- saved plans (syncer apply CONFIG PLANFILE) ------------------------------------------------------


def plan_case(content: object, *expect: str, setup: Setup | None = None) -> Case:
    files = {} if content is None else {"plan.json": content}
    return Case(("apply", "{config}", "{dir}/plan.json"), files, expect or ("{dir}/plan.json",), setup)


PLAN = (
    '{"format_version": 2, "config": "x", "config_digest": "d", "ledger_generations": {"a": 0},'
    ' "sources": {}, "integrations": null, "retry_rejected": false, "plan": {}}'
)


def _plan_of_another_config(folder: Path) -> None:
    other = folder / "other"
    other.mkdir()
    (other / "courses.csv").write_text(COURSES, "utf-8")
    (other / "stats.jsonl").write_text(STAT, "utf-8")
    (other / "syncer.yaml").write_text(edit("client_id: demo", "client_id: other"), "utf-8")
    result = CliRunner().invoke(cli, ["plan", str(other / "syncer.yaml"), "--out", str(folder / "plan.json")])
    assert result.exit_code == 0, result.output


SAVED_PLANS: dict[str, Case] = {
    "plan-file-missing": plan_case(None),
    "plan-file-is-a-directory": plan_case(DIR),
    "plan-file-empty": plan_case(""),
    "plan-file-garbage": plan_case(bytes(range(256))),
    "plan-file-truncated-json": plan_case(PLAN[:60]),
    "plan-file-a-json-list": plan_case("[1, 2, 3]"),
    "plan-file-a-json-string": plan_case('"plan"'),
    "plan-file-wrong-version": plan_case(PLAN.replace('"format_version": 2', '"format_version": 99'), "99"),
    "plan-file-version-a-string": plan_case(PLAN.replace('"format_version": 2', '"format_version": "one"')),
    "plan-file-missing-keys": plan_case('{"format_version": 2}'),
    "plan-file-format-1": plan_case(
        PLAN.replace('"format_version": 2', '"format_version": 1'), "older syncer"
    ),
    "plan-file-sources-a-list": plan_case(PLAN.replace('"sources": {}', '"sources": [1]')),
    "plan-file-generation-a-word": plan_case(
        PLAN.replace('"ledger_generations": {"a": 0}', '"ledger_generations": {"a": "x"}')
    ),
    "plan-file-integrations-a-number": plan_case(PLAN.replace('"integrations": null', '"integrations": 5')),
    "plan-file-stale-digest": plan_case(PLAN, "config changed"),
    "plan-file-of-another-config": plan_case(None, "config changed", setup=_plan_of_another_config),
    "plan-file-huge-integer": plan_case(
        PLAN.replace('"ledger_generations": {"a": 0}', '"ledger_generations": {"a": 1' + "0" * 400 + "}")
    ),
}

# -- the command line ------------------------------------------------------------------------------

CLI: dict[str, Case] = {
    "unknown-command": Case(("frobnicate",), {}, ("frobnicate",)),
    "unknown-global-option": Case(("--colour", "validate", "{config}"), {}, ("--colour",)),
    "unknown-option": Case(("validate", "{config}", "--colour"), {}, ("--colour",)),
    "missing-config-argument": Case(("validate",), {}, ("CONFIG",)),
    "missing-config-for-apply": Case(("apply",), {}, ("CONFIG",)),
    "extra-argument": Case(("validate", "{config}", "more"), {}, ("more",)),
    "bad-format": Case(("plan", "{config}", "--format", "xml"), {}, ("xml",)),
    "bad-status-format": Case(("status", "{config}", "--format", "xml"), {}, ("xml",)),
    "bad-log-format": Case(("--log-format", "yaml", "validate", "{config}"), {}, ("yaml",)),
    "lock-timeout-negative": Case(("apply", "{config}", "--lock-timeout", "-1"), {}, ("-1",)),
    "lock-timeout-a-word": Case(("apply", "{config}", "--lock-timeout", "soon"), {}, ("soon",)),
    "format-missing-value": Case(("plan", "{config}", "--format"), {}, ("--format",)),
    "integration-unknown-plan": Case(("plan", "{config}", "--integration", "nope"), {}, ("nope",)),
    "integration-unknown-apply": Case(("apply", "{config}", "--integration", "nope"), {}, ("nope",)),
    "integration-unknown-refresh": Case(("refresh", "{config}", "--integration", "nope"), {}, ("nope",)),
    "plan-out-is-a-directory": Case(
        ("plan", "{config}", "--out", "{dir}/adir"), {"adir": DIR}, ("{dir}/adir",)
    ),
    "plan-out-folder-missing": Case(("plan", "{config}", "--out", "{dir}/gone/p.json"), {}, ("{dir}/gone",)),
    "plan-out-under-a-file": Case(
        ("plan", "{config}", "--out", "{dir}/courses.csv/p.json"), {}, ("courses.csv",)
    ),
    "apply-plan-with-other-integration": Case(
        ("apply", "{config}", "{dir}/plan.json", "--integration", "acme"),
        {"plan.json": PLAN},
        ("--integration",),
    ),
}

CASES: dict[str, Case] = {**CONFIGS, **PATHS, **DATA, **LEDGERS, **SAVED_PLANS, **CLI}


def test_there_are_at_least_a_hundred_bad_inputs() -> None:
    assert len(CASES) >= 100, len(CASES)


@pytest.fixture(scope="module")
def migrated_ledger(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A healthy ledger's bytes, migrated once (copying beats migrating for every case)."""
    path = tmp_path_factory.mktemp("ledger") / "syncer.db"
    Ledger.open(f"sqlite:///{path}").close()
    return path.read_bytes()


@pytest.fixture
def project(tmp_path: Path, migrated_ledger: bytes) -> Iterator[Path]:
    (tmp_path / "syncer.yaml").write_text(CONFIG, "utf-8")
    (tmp_path / "courses.csv").write_text(COURSES, "utf-8")
    (tmp_path / "stats.jsonl").write_text(STAT, "utf-8")
    (tmp_path / "syncer.db").write_bytes(migrated_ledger)
    yield tmp_path
    reset_syncer_logger()


def _lay_out(folder: Path, files: dict[str, object]) -> None:
    for name, content in files.items():
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if content is DIR:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, "utf-8", newline="")


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_input_exits_1_with_a_located_message(project: Path, case: Case) -> None:
    _lay_out(project, case.files)
    if case.setup is not None:
        case.setup(project)
    names = {"config": str(project / "syncer.yaml"), "dir": str(project)}
    args = [arg.format(**names) for arg in case.args]
    result = CliRunner().invoke(cli, args, prog_name="syncer")
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown
    assert "internal error" not in shown, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__} escaped the CLI") from result.exception
    assert result.exit_code == case.code, result.stderr
    for expected in case.expect:
        assert expected.format(**names) in result.stderr, result.stderr


def test_an_empty_ledger_file_is_a_new_ledger(project: Path) -> None:
    """Not a bad input: SQLite reads an empty file as an empty database, which syncer migrates."""
    (project / "syncer.db").write_bytes(b"")
    result = CliRunner().invoke(cli, ["status", str(project / "syncer.yaml")], prog_name="syncer")
    assert result.exit_code == 0, result.stderr


def test_a_csv_with_a_byte_order_mark_is_read(project: Path) -> None:
    """Not a bad input either: Excel's BOM is dropped, the first column keeps its name."""
    (project / "courses.csv").write_bytes(b"\xef\xbb\xbf" + COURSES.encode())
    result = CliRunner().invoke(cli, ["validate", str(project / "syncer.yaml")], prog_name="syncer")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_nul_bytes_in_values_are_invalid_rows_listed_by_plan_and_rejected(project: Path, fmt: str) -> None:
    if fmt == "csv":
        (project / "courses.csv").write_bytes(COURSES.encode() + b"C3,Th\x00ree,x\n")
        where, field_ = "courses.csv:4", "name: contains a NUL byte in column 'title'"
    else:
        (project / "stats.jsonl").write_text(STAT + STAT.replace("ann@", "a\\u0000nn@"), "utf-8")
        where, field_ = "stats.jsonl:2", "userIdentifier: contains a NUL byte in column 'email'"
    config = project / "syncer.yaml"  # a few invalid rows are tolerated: plan exits 0
    config.write_text(CONFIG.replace("      source: ", "      tolerate_invalid: 10\n      source: "), "utf-8")
    config = str(config)
    planned = CliRunner().invoke(cli, ["plan", config], prog_name="syncer")
    assert planned.exit_code == 0, planned.stderr
    assert "invalid 1" in planned.stdout
    line = next(line for line in planned.stdout.splitlines() if where in line)
    assert field_ in line
    listed = CliRunner().invoke(cli, ["rejected", config], prog_name="syncer")
    assert listed.exit_code == 0, listed.stderr
    assert where in listed.stdout and field_ in listed.stdout
