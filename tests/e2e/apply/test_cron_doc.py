"""docs/cron.md stays true: its commands parse, its exit codes are the CLI's, its JSON is JSON."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner

from syncer.cli import cli
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


def test_doc_lists_exactly_the_exit_codes_apply_can_give() -> None:
    table = DOC.split("## Exit codes for alerting", 1)[1].split("##", 1)[0]
    codes = {int(m) for m in re.findall(r"^\| (\d) \|", table, re.M)}
    assert codes == {0, 1, 3, 4, 5, 6}


@pytest.mark.parametrize("block", blocks("json"))
def test_doc_json_lines_are_log_objects(block: str) -> None:
    for line in block.strip().splitlines():
        data = json.loads(line)
        assert {"time", "level", "message"} <= set(data)
