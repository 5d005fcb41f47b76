"""Hostile or broken YAML is refused with a located error, never a hang or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config import load_config
from syncer.config.document import MAX_CONFIG_BYTES, MAX_VALUES
from syncer.errors import ConfigError

# The "billion laughs": 9 levels of 9 aliases, a few hundred bytes, 9**9 values once expanded.
BOMB = "version: 1\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    (problem,) = info.value.problems
    assert str(problem).startswith(f"{path}:"), problem
    return str(problem)[len(str(path)) + 1 :]


def test_an_alias_bomb_is_refused_where_it_grows(tmp_path: Path) -> None:
    assert len(BOMB) < 500
    message = refused(tmp_path, BOMB)
    assert f"more than {MAX_VALUES:,} values" in message
    line = int(message.split(":")[0])
    assert 4 <= line <= 10  # the level where the expansion passes the bound


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\nx: &x\n  y: *x\n", id="mapping-contains-itself"),
        pytest.param("version: 1\nx: &x [1, [2, *x]]\n", id="list-contains-itself"),
    ],
)
def test_a_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    message = refused(tmp_path, text)
    assert message.startswith("2:") and "recursive YAML alias" in message


def test_shared_anchors_within_the_bound_are_fine(tmp_path: Path) -> None:
    """Aliases are YAML: a config may reuse a block (the schema still checks what it holds)."""
    text = "version: 1\nx: &x {a: 1}\ny: [*x, *x, *x]\n"
    path = tmp_path / "c.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as info:  # refused for its unknown keys, not for the aliases
        load_config(path, {})
    assert info.value.problems and not any("alias" in str(p) for p in info.value.problems)


def test_an_oversized_config_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, "version: 1\n# " + "x" * MAX_CONFIG_BYTES + "\n")
    assert message.startswith("1:1:") and message.endswith("are refused")


def test_validate_on_a_bomb_exits_1_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB, "utf-8")
    result = CliRunner().invoke(cli, ["validate", str(path)], prog_name="syncer")
    assert result.exit_code == 1
    assert "alias bomb" in result.stderr and "Traceback" not in result.stderr + result.stdout
