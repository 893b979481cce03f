"""The `mlops` command line, composed of the command modules in `mlops/commands/`, each of which
owns a Typer app with its commands."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlops.commands import (
    batch,
    data,
    deployment,
    endpoints,
    environment,
    executions,
    local,
    monitor,
    registry,
    teardown,
    training,
    tuning,
)
from mlops.errors import EXPECTED, RunFailed, UsageError
from mlops.failures import DEBUG_ENV, environment_failure, log_folders, one_line, write_log

_DEBUG = "mlops.debug"  # key in the click context's `meta`, shared by nested commands


class CommandGroup(TyperGroup):
    """A group of `mlops` commands. An exception that escapes one of its commands unexpected
    ends as one line (`mlops.failures`), and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer makes every context a typer.Context
        try:
            return super().invoke(ctx)
        except (*EXPECTED, typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise  # their own message or exit code (typer quiets a closed pipe, `mlops ... | head`)
        except Exception as error:
            command = " ".join(part for part in (ctx.command_path, ctx.invoked_subcommand) if part)
            problem = environment_failure(error)
            if problem:
                raise RunFailed(f"{command}: {problem}") from None
            if ctx.meta.get(_DEBUG):
                raise
            log = write_log(error, command, log_folders(ctx))
            if log is None:  # nowhere to keep the traceback: it goes to the terminal
                raise
            typer.secho(one_line(error, command, log), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="mlops",
    help="Train and serve TensorFlow/Keras models on SageMaker, or on this machine against moto.",
    cls=CommandGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="show the traceback of an unexpected error here instead of writing it to a log file",
        ),
    ] = False,
) -> None:
    ctx.meta[_DEBUG] = debug


app.add_typer(local.app)
app.add_typer(environment.app)
app.add_typer(endpoints.app)
app.add_typer(deployment.app)
app.add_typer(training.app)
app.add_typer(tuning.app)
app.add_typer(registry.app)
app.add_typer(executions.app)
app.add_typer(teardown.app)
app.add_typer(monitor.app)
app.add_typer(batch.app)
app.add_typer(data.app, cls=CommandGroup)


def main() -> None:
    try:
        app()
    except UsageError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except RunFailed as error:
        typer.secho(f"failed: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)
