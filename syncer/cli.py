"""The command line: a thin click layer over the library. Exit codes are decided here only.

0 done (or no changes with --detailed-exitcode), 1 config/usage error, 2 plan has changes
(--detailed-exitcode only), 3 records rejected or invalid rows beyond tolerance, 4 API or
ledger failure (safe to rerun), 5 locked by another run, 6 a safety guard refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from syncer.errors import ConfigError, SyncerError

CONFIG_ARG = click.argument(
    "config_path", metavar="CONFIG", type=click.Path(path_type=Path, dir_okay=False)
)


@dataclass
class Context:
    """Options shared by every command."""

    debug: bool = False
    log_format: str = "text"


class _Group(click.Group):
    """Maps SyncerError to its exit code and click's usage errors to exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncerError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            _print_error(exc)
            sys.exit(exc.exit_code)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(1)  # usage errors are 1: exit 2 only ever means "changes present"


def _print_error(exc: SyncerError) -> None:
    if isinstance(exc, ConfigError) and exc.problems:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        return
    click.echo(f"Error: {exc}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Plain text lines, or one JSON object per line for cron and log shippers.",
)
@click.version_option(package_name="syncer")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str) -> None:
    """Keep a 360Learning platform in step with an external learning platform."""
    ctx.obj = Context(debug=debug, log_format=log_format)


@cli.command()
@CONFIG_ARG
def validate(config_path: Path) -> None:
    """Check a config and the first rows of its sources, offline."""
    raise SyncerError("validate is not implemented yet")


def main() -> None:
    """Entry point of the ``syncer`` command."""
    cli(prog_name="syncer")
