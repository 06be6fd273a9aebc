"""The `featurelake` command: global options, lazy config and store, one-line errors."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from loguru import logger
from typer.core import TyperGroup

from featurelake.errors import FeatureStoreError
from featurelake.logs import disable_logging, enable_logging, quiet_engine_logs
from featurelake.pipeline.runtime import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    exit_code,
    one_line,
    parse_spark_conf,
    stop_session,
)
from featurelake.session import active_session

if TYPE_CHECKING:
    pass

from featurelake.cli.state import State

PROG = "featurelake"
DEBUG_ENV = "FEATURELAKE_DEBUG"


class FeaturelakeGroup(TyperGroup):
    """Runs the command and turns every error into one line on stderr and an exit code.

    Exit codes: 0 success; 2 a user error (bad arguments, configuration, schema, unknown group
    or feature); 1 a failure (engine, storage, retries exhausted). `--debug` (or
    FEATURELAKE_DEBUG=1) adds the traceback.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
        code = EXIT_OK
        try:
            result = super().main(
                args=argv,
                prog_name=prog_name or PROG,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else EXIT_OK
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            code = EXIT_FAILURE
        except Exception as error:
            parser_error = _parser_error(error)
            if parser_error is not None:
                code, message = parser_error
                typer.echo(message, err=code != EXIT_OK)
            else:
                if debug:
                    traceback.print_exception(error, file=sys.stderr)
                typer.echo(f"Error: {one_line(error)}", err=True)
                code = exit_code(error)
        finally:
            # The CLI switched library logging on; leave the process as the library default.
            disable_logging()
            logger.remove()
        sys.exit(code)


def _parser_error(error: BaseException) -> tuple[int, str] | None:
    """Exit code and text for an error of the argument parser (Typer's Click exceptions).

    Recognised by shape, so any Typer version works (recent ones vendor Click).
    """
    ctx = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
        return EXIT_OK, ctx.get_help()
    format_message = getattr(error, "format_message", None)
    code = getattr(error, "exit_code", None)
    if isinstance(error, FeatureStoreError) or not callable(format_message):
        return None
    if not isinstance(code, int):
        return None
    message = " ".join(str(format_message()).split())
    if code == EXIT_USAGE and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return code, f"Error: {message}"


app = typer.Typer(
    name=PROG,
    cls=FeaturelakeGroup,
    help="featurelake: feature groups as validated Delta tables, from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Store config YAML. Default: $FEATURELAKE_CONFIG, else conf/featurelake.yaml.",
            show_default=False,
        ),
    ] = None,
    spark_conf: Annotated[
        list[str] | None,
        typer.Option(
            "--spark-conf",
            metavar="KEY=VALUE",
            help="A Spark setting for this run, e.g. spark.sql.shuffle.partitions=8. Repeatable.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print results as JSON (for scripts).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show featurelake's log lines.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show debug logs and tracebacks of errors.")
    ] = False,
) -> None:
    """featurelake: feature groups as validated Delta tables, from the command line."""
    enable_logging("DEBUG" if debug else "INFO" if verbose else "WARNING")
    quiet_engine_logs(debug=debug)
    try:
        overrides = parse_spark_conf(spark_conf or [])
    except FeatureStoreError as error:
        raise typer.BadParameter(error.message, param_hint="'--spark-conf'") from None
    ctx.obj = State(config, overrides, as_json, verbose or debug)


def _register() -> None:
    from featurelake.cli import data, groups, health, online, quality, scaffold

    app.command("init")(scaffold.init)
    app.command("apply")(groups.apply)
    app.command("list")(groups.list_groups)
    app.command("describe")(groups.describe)
    app.command("materialize")(data.materialize)
    app.command("backfill")(data.backfill)
    app.command("training-set")(data.training_set)
    app.command("sync-online")(online.sync_online)
    app.command("health")(health.health)
    app.command("report")(quality.report)
    from featurelake.cli.aggregate import aggregate

    app.command("aggregate")(aggregate)
    from featurelake.cli.setup import setup

    app.command("setup")(setup)
    _register_scheduling()
    _register_server()


def _register_scheduling() -> None:
    from featurelake.cli import schedule

    app.command("freshness")(schedule.freshness)
    app.command("refresh")(schedule.refresh)
    app.add_typer(schedule.schedule_app, name="schedule")
    app.add_typer(schedule.stream_app, name="stream")


def _register_server() -> None:
    from featurelake.cli import server

    app.command("serve")(server.serve)
    app.command("dead-letters")(server.dead_letters)
    app.add_typer(server.api_keys, name="api-key")


_register()


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in this process and return its exit code (used by scripts and the demo)."""
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name=PROG)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else EXIT_FAILURE
    return EXIT_OK


def main() -> None:
    """Console-script entry point: a process of its own, so its Spark session is stopped."""
    code = run()
    if "pyspark" in sys.modules:
        session = active_session()
        if session is not None:
            stop_session(session)
    sys.exit(code)
