"""docs/cron.md stays true: its commands parse, its exit codes are the CLI's, its JSON is JSON."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner

from syncer import errors
from syncer.cli import EXIT_CODES, cli
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "cron.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def syncer_commands() -> list[list[str]]:
    commands = []
    for block in blocks("sh") + blocks("crontab"):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            found = re.search(r"(?:^|\s)syncer\s", line)
            if found is None or line.lstrip().startswith("#"):
                continue
            words = shlex.split(line[found.end() :])
            commands.append([w for w in words if not w.startswith((">", "2>"))])
    return commands


def parse_problems(args: list[str]) -> str:
    """What click says about ``args`` (empty: they parse); the config path does not exist."""
    result = CliRunner().invoke(cli, args, prog_name="syncer")
    return result.stderr if "Usage:" in result.stderr else ""


def test_doc_commands_parse_with_the_real_cli() -> None:
    commands = syncer_commands()
    assert [next(w for w in args if w in ("apply", "refresh")) for args in commands] == [
        "apply",
        "apply",
        "refresh",
    ]
    for args in commands:
        assert parse_problems(args) == ""
    assert "No such option" in parse_problems([*commands[0], "--no-such-option"])


def exit_table() -> str:
    """The exit-code table as docs/cron.md must hold it, rendered from the CLI's EXIT_CODES."""
    rows = ["| code | meaning | what to do |", "| --- | --- | --- |"]
    rows += [f"| {code} | {meaning} | {todo} |" for code, (meaning, todo) in EXIT_CODES.items()]
    return "\n".join(rows)


def test_doc_exit_table_is_the_cli_exit_codes() -> None:
    section = DOC.split("## Exit codes for alerting", 1)[1].split("\n## ", 1)[0]
    assert exit_table() in section, "docs/cron.md's table differs from EXIT_CODES; put this:\n" + exit_table()
    assert set(EXIT_CODES) == {0, 1, 2, 3, 4, 5, 6}


def test_every_error_class_exits_with_a_documented_code() -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls, *(sub for direct in cls.__subclasses__() for sub in subclasses(direct))]

    for cls in subclasses(errors.SyncerError):
        assert cls.exit_code in EXIT_CODES and cls.exit_code != 2, cls
    # The classes of issue 16: a person must act (1) or rerunning is the fix (4).
    assert errors.ApiError.exit_code == errors.LedgerUnusableError.exit_code == 1
    transient = [errors.ApiUnavailable, errors.BulkJobError, errors.LedgerError, errors.SubmissionLost]
    assert {cls.exit_code for cls in [*transient, errors.InterruptedRunError]} == {4}


@pytest.mark.parametrize("block", blocks("json"))
def test_doc_json_lines_are_log_objects(block: str) -> None:
    for line in block.strip().splitlines():
        data = json.loads(line)
        assert {"time", "level", "message"} <= set(data)
