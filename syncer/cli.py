"""The command line: a thin click layer over the library. Exit codes are decided here only.

``EXIT_CODES`` says what each code means and what to do about it; docs/cron.md's table is
checked against it by a test. In short: 0 done, 1 a person must act, 2 changes present (plan
--detailed-exitcode only), 3 records a person must look at, 4 transient failure (safe to
rerun), 5 locked by another run, 6 a safety guard refused. ``--debug`` prints the traceback
and keeps the exit code.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncer.errors import ConfigError, GuardError, SyncerError

if TYPE_CHECKING:
    from syncer.report.watch import RunWatch

# Every import inside a function below is there on purpose, for start-up speed: each command
# loads only the stages it runs (asyncio, orjson, aiohttp, SQLAlchemy, the simulator), so
# `syncer --help` and `syncer validate` stay fast.
FULL = click.option(
    "--full",
    is_flag=True,
    help="Read incremental SQL sources (cursor:) in full: every row, and courses they no longer have "
    "are archived where archive_missing is on (docs/incremental.md).",
)
# CONFIG: a config file, or a config directory (syncer.yaml and part files: docs/config.md).
CONFIG_ARG = click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
LOCK_TIMEOUT = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another run's lock before exiting 5.",
)
REDACT = click.option(
    "--redact",
    is_flag=True,
    help="Write learner e-mails as stable tokens (learner-<hash>) in the output and the log lines "
    "(also `output: {redact: true}` in the config); pseudonymised, not anonymous.",
)


EXIT_CODES: dict[int, tuple[str, str]] = {
    0: (
        "done: every valid record is synced (invalid rows within `tolerate_invalid` are reported "
        "but do not fail)",
        "nothing",
    ),
    1: (
        "a person must act: the config or the command line is wrong (bad YAML, unknown key, "
        "missing `${VAR}`, unreadable source, stale saved plan), the platform refused for good "
        "(credentials, a missing scope, `reservedPlatformName`, `duplicateExternalPlatform`, an "
        "unknown group, author or integration id), or the ledger cannot be used (cannot be opened "
        "or created, read-only, corrupt, written by a newer syncer, no driver for its URL)",
        "read the message: it names the cause and the fix; `syncer doctor CONFIG` checks the "
        "config, sources, ledger, credentials and scopes in one go. Rerunning unchanged fails "
        "the same way",
    ),
    2: (
        "`syncer plan --detailed-exitcode` only: the plan has changes",
        "nothing (apply them, or review the pull request)",
    ),
    3: (
        "finished, but the API rejected some records, invalid rows exceeded `tolerate_invalid`, "
        "or statistics are held (their predicted effect on the platform's attempts is unsafe: a "
        "duplicate or an overwritten attempt; docs/attempts.md)",
        "`syncer rejected CONFIG`; fix the source rows. Rejected records are not resent until "
        "their content changes (or `--retry-rejected`), so the next run exits 0 unless it is "
        "refused something new. Held statistics are planned again at every run and keep it at 3 "
        "until a person decides: revert the edit, make it a new attempt on purpose, or set "
        "`stats.on_unsafe_change: send`",
    ),
    4: (
        "a transient failure stopped the run: the API or the ledger's server could not be "
        "reached, timed out, answered 5xx or 429 after the retry budget, a bulk operation ended "
        "in `error` on the platform, or the run was interrupted (SIGINT/SIGTERM)",
        "nothing urgent: **safe to rerun**; the next run resumes what is in flight and resends "
        "what did not get through. Alert when it repeats",
    ),
    5: (
        "another run holds the lock",
        "nothing, unless it repeats (a run is stuck or too slow: `syncer status`)",
    ),
    6: (
        "a safety guard refused: the run would archive more than 10% (and more than 5) of an "
        "integration's live courses",
        "check the catalog source; if intended, run once with `--allow-mass-archive`",
    ),
}
"""Every exit code: what it means, and what to do (docs/cron.md's table; a test compares them)."""


@dataclass
class Context:
    """Options shared by every command."""

    debug: bool = False
    log_format: str = "text"
    redact: bool = False  # --redact or output.redact: the final error line too


class _Group(click.Group):
    """Maps SyncerError to its exit code and click's usage errors to exit 1; --debug keeps the code."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # --debug and --log-format after the command too: `syncer apply CONFIG --log-format json`.
        cmd.params.extend(_command_options())
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncerError as exc:
            _fail(ctx, exc, exc)
        except OSError as exc:
            # A file syncer was told to write or read (a plan's --out, a folder): a person acts.
            _fail(ctx, exc, SyncerError(_os_message(exc)))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            _fail(
                ctx,
                exc,
                SyncerError(
                    f"internal error ({type(exc).__name__}: {exc}): this is a bug in syncer; nothing "
                    "recorded is lost. Run again with --debug and report the traceback"
                ),
            )

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


def _fail(ctx: click.Context, raised: BaseException, exc: SyncerError) -> None:
    """Print ``exc`` (and with --debug the traceback of ``raised``), then exit with its code."""
    obj = ctx.obj if isinstance(ctx.obj, Context) else None
    if obj is not None and obj.debug:
        import traceback

        traceback.print_exception(raised, file=sys.stderr)
    if obj is not None and obj.redact:
        from syncer.redaction import redact_text

        exc.args = (redact_text(str(exc)),)
    _print_error(exc, obj.log_format if obj is not None else "text")
    sys.exit(exc.exit_code)


def _os_message(exc: OSError) -> str:
    """``cannot use FILE: reason``, for an OSError that escaped the stages."""
    what = f" {exc.filename}" if exc.filename else ""
    reason = exc.strerror or str(exc)
    return f"cannot use{what}: {reason}; check the path and its permissions"


def _print_error(exc: SyncerError, log_format: str = "text") -> None:
    if log_format == "json":
        # Log shippers read stderr as one JSON object per line: the final error is one too.
        import orjson

        from syncer.progress import json_log_line

        problems = [str(p) for p in exc.problems] if isinstance(exc, ConfigError) else []
        fields: dict[str, Any] = {"exit_code": exc.exit_code, "error": type(exc).__name__}
        if problems:
            fields["problems"] = problems
        if isinstance(exc, ConfigError) and exc.warnings:
            fields["warnings"] = [str(w) for w in exc.warnings]
        click.echo(orjson.dumps(json_log_line("error", str(exc), fields)).decode(), err=True)
        return
    if isinstance(exc, ConfigError) and exc.problems:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        for warning in exc.warnings:
            click.echo(f"warning: {warning}", err=True)
        return
    click.echo(f"Error: {exc}", err=True)


DEBUG_HELP = "Show tracebacks instead of one-line errors, and debug log lines."
LOG_FORMAT_HELP = "Plain text lines, or one JSON object per line for cron and log shippers."


def _command_options() -> list[click.Parameter]:
    """``--debug`` and ``--log-format`` of one command: the same as before the command (which
    also read SYNCER_DEBUG and SYNCER_LOG_FORMAT); given after it, they win."""

    def set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        obj = ctx.find_object(Context)
        if value and obj is not None:
            obj.debug = True

    def set_log_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        obj = ctx.find_object(Context)
        if value is not None and obj is not None:
            obj.log_format = value

    return [
        click.Option(
            ["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=set_debug, help=DEBUG_HELP
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(["text", "json"]),
            default=None,
            expose_value=False,
            is_eager=True,
            callback=set_log_format,
            help=LOG_FORMAT_HELP,
        ),
    ]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="SYNCER_DEBUG", show_envvar=True, help=DEBUG_HELP)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="SYNCER_LOG_FORMAT",
    show_envvar=True,
    help=LOG_FORMAT_HELP,
)
@click.version_option(package_name="syncer")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str) -> None:
    """Keep a 360Learning platform in step with an external learning platform.

    --debug and --log-format go before or after the command; SYNCER_DEBUG=1 and
    SYNCER_LOG_FORMAT=json set them from the environment (docs/logging.md).
    """
    ctx.obj = Context(debug=debug, log_format=log_format)


SHOWN_INVALID = 5
"""Invalid rows ``syncer validate`` shows per source; the others are counted."""

# What apply ends with on a plan's blockers (syncer.plan.Blocker): the highest one wins.
_BLOCKED_EXIT = {"mass_archive": GuardError.exit_code, "invalid_beyond_tolerance": 3, "held": 3}


def _print_warnings(ctx: Context | None, warnings: Iterable[object]) -> None:
    """Print warnings on stderr as ``warning: MESSAGE`` (with --log-format json: one object each).

    validate, plan, apply and refresh call it with ``Config.warnings`` (``FILE:LINE:COL: message``).
    """
    for warning in warnings:
        if ctx is not None and ctx.log_format == "json":
            import orjson

            from syncer.progress import json_log_line

            click.echo(orjson.dumps(json_log_line("warning", str(warning), {})).decode(), err=True)
        else:
            click.echo(f"warning: {warning}", err=True)


def _redacted(text: str, redact: bool) -> str:
    from syncer.redaction import redact_text

    return redact_text(text) if redact else text


def _redaction(ctx: Context, flag: bool, config: Any) -> bool:
    """``--redact`` or ``output.redact``: learner e-mails become tokens in what the command prints
    and in its log lines from now on (syncer/redaction.py). True when on."""
    from syncer.progress import add_log_filter, remove_log_filter
    from syncer.redaction import LOG_FILTER

    ctx.redact = flag or config.redact
    (add_log_filter if ctx.redact else remove_log_filter)(LOG_FILTER)
    if ctx.redact:  # for this command only (the library, tests: many commands in one process)
        click.get_current_context().call_on_close(lambda: remove_log_filter(LOG_FILTER))
    return ctx.redact


@cli.command()
@CONFIG_ARG
@click.option(
    "--sample-rows",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Rows of each source to map and check (default: validate.sample_rows of the config, else 100).",
)
@click.option(
    "--no-sources",
    is_flag=True,
    help="Read no source (a pull request without access to them): config, field rules and ledger URL only.",
)
@click.pass_obj
def validate(ctx: Context, config_path: Path, sample_rows: int | None, no_sources: bool) -> None:
    """Check a config and the first rows of its sources. Never calls the API, never opens the ledger."""
    # Imported here so that `syncer --help` stays fast and free of the heavier stages.
    from syncer.config import load_config
    from syncer.mapping import DEFAULT_SAMPLE_ROWS, check_columns, sample_sources
    from syncer.report.pieces import invalid_text

    config = load_config(config_path, offline=True)
    _print_warnings(ctx, config.warnings)
    rows = next(n for n in (sample_rows, config.sample_rows, DEFAULT_SAMPLE_ROWS) if n is not None)
    problems = [] if no_sources else check_columns(config)
    try:  # with --no-sources: the field rules against the API's schemas, no row read
        samples = sample_sources(config, rows=0 if no_sources else rows)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    integrations, sources = len(config.integrations), len(config.sources)
    counts = f"{integrations} integration{'s' * (integrations != 1)}, {sources} source{'s' * (sources != 1)}"
    checked = (
        "sources not read: --no-sources"
        if no_sources
        else f"the first {rows:,} rows of each source mapped"
        if rows
        else "no row mapped: --sample-rows 0"
    )
    failed = [s for s in samples if s.error or s.beyond_tolerance]
    if not failed:
        click.echo(f"{config_path}: valid ({counts}; {checked})")
    for sample in samples:
        what = f"{sample.integration} {sample.kind} (source {sample.source!r})"
        if sample.error:
            click.echo(f"{sample.error}", err=True)
        elif sample.read == 0 and not no_sources and rows:
            spec = config.integrations[sample.integration].courses
            archive = sample.kind == "courses" and spec is not None and spec.archive_missing
            _print_warnings(
                ctx,
                [
                    f"{what}: the source has no rows; plan and apply send nothing from it"
                    + (" and archive nothing (archive_missing)" if archive else "")
                ],
            )
        if not sample.invalid:
            continue
        verdict = "beyond tolerate_invalid" if sample.beyond_tolerance else "within tolerate_invalid"
        click.echo(f"{what}: {len(sample.invalid):,} of the first {sample.read:,} rows invalid, {verdict}:")
        click.echo("".join(f"  {invalid_text(row)}\n" for row in sample.invalid[:SHOWN_INVALID]), nl=False)
        if len(sample.invalid) > SHOWN_INVALID:
            click.echo(f"  and {len(sample.invalid) - SHOWN_INVALID:,} more")
    beyond = [f"{s.integration} {s.kind}" for s in failed if s.beyond_tolerance and not s.error]
    if beyond:
        click.echo(
            f"Error: {config_path}: more invalid rows than tolerate_invalid allows in the first "
            f"{rows:,} rows of {', '.join(beyond)}; plan and apply would exit 3",
            err=True,
        )
    if failed:
        sys.exit(1)


@cli.command()
@CONFIG_ARG
@click.option(
    "--integration", "integrations", multiple=True, help="Check only this integration (repeatable)."
)
def doctor(config_path: Path, integrations: tuple[str, ...]) -> None:
    """Check that syncer can run: config, sources, ledger, API host, credentials, scopes, integrations.

    Writes nothing anywhere. One line per check (✓ ✗ ⚠, - for skipped), each fix below it; exit 1
    when a check failed.
    """
    from syncer.doctor import run_doctor
    from syncer.report.doctor import render_doctor

    report = run_doctor(config_path, integrations or None)
    click.echo(render_doctor(report), nl=False)
    if not report.ok:
        sys.exit(1)


@cli.command()
@CONFIG_ARG
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for a terminal, json for tools, markdown for a pull-request comment.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also save the plan (JSON) for `syncer apply CONFIG PLANFILE`.",
)
@click.option("--integration", "integrations", multiple=True, help="Plan only this integration (repeatable).")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes, 0 when it has none."
)
@click.option(
    "--refresh",
    "refresh_first",
    is_flag=True,
    help="Read back what the platform holds first (as `syncer refresh`; never writes to the platform).",
)
@click.option(
    "--allow-mass-archive",
    is_flag=True,
    help="As apply's: the plan does not exit 6 for archiving more than 10% of the live courses.",
)
@FULL
@REDACT
@click.pass_obj
def plan(
    ctx: Context,
    config_path: Path,
    fmt: str,
    out: Path | None,
    integrations: tuple[str, ...],
    detailed_exitcode: bool,
    refresh_first: bool,
    allow_mass_archive: bool,
    full: bool,
    redact: bool,
) -> None:
    """Show what apply would send: courses, statistics, archives, and the invalid rows.

    Exits as apply would when the plan cannot be applied cleanly: 6 the mass-archive guard, 3
    invalid rows beyond tolerate_invalid or statistics held; else 2 with --detailed-exitcode
    when there are changes (6 > 3 > 2 > 0).
    """
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.plan import build_plan, select_integrations
    from syncer.plan.saved import save_plan
    from syncer.report import plan_data, render_plan

    config = load_config(config_path)
    _print_warnings(ctx, config.warnings)
    redact = _redaction(ctx, redact, config)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        if refresh_first:
            from syncer.ledger.lock import acquire_lock
            from syncer.refresh import run_refresh

            names = select_integrations(config, integrations or None)
            progress = _progress_for(ctx)
            with acquire_lock(ledger, names):
                run_refresh(config, ledger, names, progress=progress)
        with build_plan(config, ledger, integrations=integrations or None, full=full) as computed:
            blockers = computed.blockers(allow_mass_archive=allow_mass_archive)
            would_exit = max((_BLOCKED_EXIT[b.reason.value] for b in blockers), default=0)
            if out is not None:
                data = plan_data(computed, blockers=blockers, would_exit=would_exit, redact=redact)
                save_plan(out, computed, config, data, integrations=integrations or None)
            shown = render_plan(computed, fmt, blockers=blockers, would_exit=would_exit, redact=redact)
            click.echo(shown, nl=False)
            changed = computed.has_changes
    finally:
        ledger.close()
    if would_exit:  # what apply would end with: the plan cannot be applied cleanly
        sys.exit(would_exit)
    if detailed_exitcode and changed:
        sys.exit(2)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8360, show_default=True, help="Port to listen on (0: any free).")
@click.option(
    "--users",
    "users_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File of known learner mails, one a line; others become item errors. Default: any mail.",
)
@click.option("--token-lifetime", type=float, default=3600.0, show_default=True, help="Token lifetime (s).")
@click.option("--op-seconds", type=float, default=0.2, show_default=True, help="Operation duration (s).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated ids and tokens.")
@click.option(
    "--write-rate", type=float, default=10.0, show_default=True, help="Writes per second (0: unlimited)."
)
@click.option(
    "--read-rate", type=float, default=50.0, show_default=True, help="Reads per second (0: unlimited)."
)
@click.option("--trust-items", is_flag=True, help="Skip the schema check of each bulk item (for benchmarks).")
def simulator(
    host: str,
    port: int,
    users_path: Path | None,
    token_lifetime: float,
    op_seconds: float,
    seed: int,
    write_rate: float,
    read_rate: float,
    trust_items: bool,
) -> None:
    """Run the built-in 360Learning API simulator until Ctrl-C."""
    import asyncio

    from syncer.simulator import (
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        DEMO_COMPANY_ID,
        Simulator,
        SimulatorSettings,
        load_users,
        serve_forever,
    )

    settings = SimulatorSettings(
        host=host,
        port=port,
        users=load_users(users_path) if users_path else None,
        token_lifetime=token_lifetime,
        op_seconds=op_seconds,
        seed=seed,
        write_rate=write_rate or None,
        read_rate=read_rate or None,
        check_items=not trust_items,
    )

    def announce(sim: Simulator) -> None:
        click.echo(f"360Learning API simulator listening on {sim.base_url}")
        click.echo(f"  client_id:     {DEMO_CLIENT_ID}")
        click.echo(f"  client_secret: {DEMO_CLIENT_SECRET}")
        click.echo(f"  company_id:    {DEMO_COMPANY_ID}")
        click.echo(f"  state: GET {sim.base_url}/_sim/state   faults: POST {sim.base_url}/_sim/faults")
        click.echo("Press Ctrl-C to stop.")

    try:
        asyncio.run(serve_forever(settings, announce))
    except KeyboardInterrupt:
        click.echo("Simulator stopped.", err=True)


def _progress_for(ctx: Context) -> Any:
    from syncer.progress import LogProgress, RichProgress, configure_logging

    if ctx.log_format == "text" and sys.stderr.isatty():
        # A terminal: a live display; the log lines a person should read print above it.
        display = RichProgress()
        configure_logging(ctx.log_format, verbose=ctx.debug, display=display)
        return display
    configure_logging(ctx.log_format, verbose=ctx.debug)
    return LogProgress()


def _exit_code_of(exc: BaseException) -> int:
    """The exit code ``_Group`` and ``main`` give a command that raised ``exc``."""
    if isinstance(exc, SyncerError):
        return exc.exit_code
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    return 1  # a file syncer could not use, a usage error, Ctrl-C outside a run, a bug


def _watched(command: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``apply``: however it ends, its metrics file is written and its webhooks called once,
    with the exit code the command will end with (``syncer.report.watch``); never changes it."""

    @functools.wraps(command)
    def run(ctx: Context, /, *args: Any, metrics_file: Path | None, **kwargs: Any) -> None:
        from syncer.report.watch import RunWatch

        watch = RunWatch(
            kwargs["config_path"], metrics_file, simulate=kwargs["simulate"], redact=kwargs["redact"]
        )
        try:
            command(ctx, *args, watch=watch, **kwargs)
        except SystemExit as exc:  # sys.exit(code): the run's own exit code
            watch.finish(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1)
            raise
        except click.exceptions.Exit as exc:
            watch.finish(exc.exit_code)
            raise
        except BaseException as exc:
            watch.finish(_exit_code_of(exc), exc)
            raise
        watch.finish(0)

    return run


@cli.command()
@CONFIG_ARG
@click.argument(
    "plan_file", metavar="[PLANFILE]", required=False, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--integration", "integrations", multiple=True, help="Apply only this integration (repeatable)."
)
@click.option(
    "--simulate",
    is_flag=True,
    help="Run against the built-in simulator and a throw-away copy of the ledger.",
)
@click.option("--retry-rejected", is_flag=True, help="Send again records the API rejected, even unchanged.")
@click.option(
    "--allow-mass-archive",
    is_flag=True,
    help="Archive even when more than 10% (and more than 5) of an integration's live courses go.",
)
@LOCK_TIMEOUT
@FULL
@REDACT
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.001),
    default=None,
    hidden=True,  # advanced: the first poll delay of an operation (tests use a short one)
    help="First delay between polls of an operation, in seconds (default 1; grows to 15x).",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a Prometheus text-format file at the end of the run, even a failed one "
    "(node_exporter's textfile collector; overrides metrics.file of the config; docs/metrics.md).",
)
@click.pass_obj
@_watched
def apply(
    ctx: Context,
    config_path: Path,
    plan_file: Path | None,
    integrations: tuple[str, ...],
    simulate: bool,
    retry_rejected: bool,
    allow_mass_archive: bool,
    lock_timeout: float,
    full: bool,
    redact: bool,
    poll_seconds: float | None,
    watch: RunWatch,
) -> None:
    """Finish operations left in flight, then plan and send the difference. Never prompts."""
    from syncer.apply import ApplyOptions, run_apply
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.ledger.lock import acquire_lock
    from syncer.plan import select_integrations
    from syncer.plan.saved import check_saved_plan, load_saved_plan
    from syncer.progress import event
    from syncer.report import render_run

    config = load_config(config_path)
    watch.saw_config(config)
    _print_warnings(ctx, config.warnings)
    redact = _redaction(ctx, redact, config)
    saved = load_saved_plan(plan_file) if plan_file is not None else None
    if saved is not None:
        if integrations and tuple(integrations) != (saved.integrations or ()):
            raise ConfigError("--integration differs from the saved plan's; plan again or drop it")
        integrations = saved.integrations or ()
        retry_rejected = retry_rejected or saved.retry_rejected
        if full:
            raise ConfigError("--full goes with the plan: run syncer plan --full --out PLANFILE, apply that")
    progress = _progress_for(ctx)
    with contextlib.ExitStack() as stack:
        if simulate:
            # Only here: a real apply never loads the simulator.
            from syncer.apply.sandbox import simulated

            config = stack.enter_context(simulated(config))
        ledger = Ledger.open(config.ledger_url.reveal())
        stack.callback(ledger.close)
        names = select_integrations(config, integrations or None)
        lock = stack.enter_context(acquire_lock(ledger, names, timeout=lock_timeout))
        watch.saw_ledger(ledger)  # the past runs, for alerts and metrics (read only)
        if saved is not None and not simulate:
            check_saved_plan(saved, config, ledger)
        if hasattr(progress, "shown"):
            stack.enter_context(progress.shown())
        report = run_apply(
            config,
            ledger,
            ApplyOptions(
                integrations=tuple(names),
                retry_rejected=retry_rejected,
                allow_mass_archive=allow_mass_archive,
                full=full,
                reads=saved.reads if saved is not None else None,
                **_poll_option(poll_seconds),
            ),
            progress=progress,
            heartbeat=lock.heartbeat,
        )
    watch.saw_report(report)
    click.echo(_redacted(render_run(report), redact), nl=False)
    code = report.exit_code  # the rule lives with the report: the run recorded this same code
    # One last log line with the numbers, so that cron mail and log shippers see the outcome.
    event(f"apply finished: exit {code}", exit_code=code, **report.summary())
    if code:
        sys.exit(code)


def _poll_option(poll_seconds: float | None) -> dict[str, Any]:
    """ApplyOptions keywords for ``--poll-seconds`` (none: apply's default policy)."""
    if poll_seconds is None:
        return {}
    from syncer.api.bulk import PollPolicy

    return {"poll": PollPolicy(first=poll_seconds, factor=1.5, maximum=poll_seconds * 15)}


@cli.command()
@CONFIG_ARG
@click.option(
    "--integration", "integrations", multiple=True, help="Refresh only this integration (repeatable)."
)
@click.option(
    "--users",
    is_flag=True,
    help="Also list every learner of the platform: from then on, statistics of learners it does not "
    "have are held at plan time.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@LOCK_TIMEOUT
@REDACT
@click.pass_obj
def refresh(
    ctx: Context,
    config_path: Path,
    integrations: tuple[str, ...],
    users: bool,
    fmt: str,
    lock_timeout: float,
    redact: bool,
) -> None:
    """Read back what the platform holds and record it in the ledger. Never writes to the platform."""
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.ledger.lock import acquire_lock
    from syncer.plan import select_integrations
    from syncer.refresh import run_refresh
    from syncer.report import render_refresh

    config = load_config(config_path)
    _print_warnings(ctx, config.warnings)
    redact = _redaction(ctx, redact, config)
    progress = _progress_for(ctx)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        names = select_integrations(config, integrations or None)
        with acquire_lock(ledger, names, timeout=lock_timeout):
            if hasattr(progress, "shown"):
                with progress.shown():
                    report = run_refresh(config, ledger, names, users=users, progress=progress)
            else:
                report = run_refresh(config, ledger, names, users=users, progress=progress)
    finally:
        ledger.close()
    click.echo(_redacted(render_refresh(report, fmt), redact), nl=False)


@cli.command()
@CONFIG_ARG
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@REDACT
@click.pass_obj
def status(ctx: Context, config_path: Path, fmt: str, redact: bool) -> None:
    """Last runs, operations in flight, and synced, rejected, invalid and held records per integration."""
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.ledger.identity import orphaned_integrations
    from syncer.report import render_status

    config = load_config(config_path)
    redact = _redaction(ctx, redact, config)  # a run's recorded error may quote the API's message
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        shown = render_status(ledger, fmt, orphans=orphaned_integrations(config, ledger))
    finally:
        ledger.close()
    click.echo(_redacted(shown, redact), nl=False)


@cli.command()
@CONFIG_ARG
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--integration", "integration", default=None, help="Only this integration.")
@REDACT
@click.pass_obj
def rejected(ctx: Context, config_path: Path, fmt: str, integration: str | None, redact: bool) -> None:
    """Records the API refused (with its message), invalid rows and held statistics (with their origin)."""
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.plan import select_integrations
    from syncer.report import render_rejected

    config = load_config(config_path)
    redact = _redaction(ctx, redact, config)
    if integration is not None:
        select_integrations(config, [integration])
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        click.echo(_redacted(render_rejected(ledger, fmt, integration=integration), redact), nl=False)
    finally:
        ledger.close()


@cli.command()
@CONFIG_ARG
def unlock(config_path: Path) -> None:
    """Clear lock holder rows left behind by a run that died (a live run's lock is kept)."""
    from syncer.config import load_config
    from syncer.ledger import Ledger
    from syncer.ledger.lock import clear_stale_holders, read_holders

    config = load_config(config_path)
    ledger = Ledger.open(config.ledger_url.reveal())
    try:
        cleared = clear_stale_holders(ledger)
        left = read_holders(ledger)
    finally:
        ledger.close()
    for holder in cleared:
        click.echo(f"cleared {holder.name}: {holder.describe()}")
    for holder in left:
        click.echo(f"kept {holder.name}: held by a live run, {holder.describe()}")
    if not cleared and not left:
        click.echo("no lock holder recorded")


def tune_gc() -> None:
    """Collect cycles less often: a plan or an apply of a million records allocates tens of
    millions of short-lived objects, almost none of them in a reference cycle (reference counts
    free them), and CPython's default (a collection every 700 allocations) spent 10-20% of a
    first sync's CPU time walking them. What the imports created is frozen out of every collection.
    """
    gc.set_threshold(50_000, 20, 100)
    gc.freeze()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def tune_malloc() -> None:
    """Fixed glibc malloc thresholds of 1 MiB (elsewhere a no-op).

    By default glibc raises its mmap threshold each time a large block is freed, up to 32 MiB:
    a first sync's request bodies, results answers and executemany lists (1-10 MB each) then
    come from the heap, and the holes they leave keep its pages resident. With the threshold
    fixed, blocks of 1 MiB and more are mapped and unmapped on their own, and the heap's free
    top is given back past 1 MiB: peak RSS of a 1,000,000-statistic first apply 162 -> 147 MB
    (docs/performance.md).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    mallopt(_M_TRIM_THRESHOLD, 1 << 20)


def main() -> None:
    """Entry point of the ``syncer`` command."""
    tune_gc()
    tune_malloc()
    cli(prog_name="syncer")
