"""Guard tests: the public API is pinned and every command has help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import syncer
from syncer.cli import cli

PUBLIC = [
    "ApiError",
    "ApiUnavailable",
    "ApplyOptions",
    "BulkJobError",
    "Config",
    "ConfigError",
    "GuardError",
    "InterruptedRunError",
    "Ledger",
    "LedgerError",
    "LedgerUnusableError",
    "LockedError",
    "Plan",
    "PlanError",
    "RunReport",
    "SourceError",
    "SubmissionLost",
    "SyncerError",
    "__version__",
    "acquire_lock",
    "apply_config",
    "build_plan",
    "load_config",
    "render_plan",
    "run_apply",
]


def test_all_is_pinned() -> None:
    assert sorted(syncer.__all__) == PUBLIC
    for name in syncer.__all__:
        assert getattr(syncer, name) is not None


def test_every_public_object_has_a_docstring() -> None:
    for name in syncer.__all__:
        obj = getattr(syncer, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name


def test_errors_form_one_tree() -> None:
    for name in syncer.__all__:
        obj = getattr(syncer, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, syncer.SyncerError), name


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert cli.commands[command].help, command
    assert "Usage: " in result.output


def test_usage_errors_exit_1_never_2() -> None:
    from syncer.cli import main

    with pytest.raises(SystemExit) as exc:
        import sys

        argv, sys.argv = sys.argv, ["syncer", "plan", "--no-such-option"]
        try:
            main()
        finally:
            sys.argv = argv
    assert exc.value.code == 1
