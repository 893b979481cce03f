"""The `mlops` command line. Each command group lives in `mlops/commands/`."""

from __future__ import annotations

import sys

import typer

from mlops.errors import RunFailed, UsageError

app = typer.Typer(
    name="mlops",
    help="Train and serve TensorFlow/Keras models on SageMaker, or on this machine against moto.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`.
    from mlops.commands import local  # noqa: F401
    from mlops.commands import endpoints  # noqa: F401
    from mlops.commands import deployment  # noqa: F401
    from mlops.commands import training  # noqa: F401
    from mlops.commands import data  # noqa: F401


def main() -> None:
    _register_commands()
    try:
        app()
    except UsageError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except RunFailed as error:
        typer.secho(f"failed: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)
