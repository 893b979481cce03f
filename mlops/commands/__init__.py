"""The CLI's commands, one module per group, each owning a Typer app; `mlops/cli.py` composes them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from infra.config import StageConfig
from mlops.errors import UsageError
from training.networks import NETWORKS, Network, get_network

NETWORK_HELP = f"network type: {', '.join(NETWORKS)}"
NetworkArgument = Annotated[str, typer.Argument(help=NETWORK_HELP, show_default=False)]


def known_network(name: str) -> Network:
    """The registry entry of `name`, or a UsageError listing the known networks."""
    try:
        return get_network(name)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


# The options of a local run, shared by `mlops local` and `mlops up`.
PortOption = Annotated[
    int | None, typer.Option(help="port of the local AWS (moto) server (default: a free one)", show_default=False)
]
RunParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        metavar="NAME=VALUE",
        help="a hyperparameter (epochs=3) or pipeline parameter (QualityThreshold=0.9) of this run; repeatable",
        show_default=False,
    ),
]
LimitOption = Annotated[
    int | None, typer.Option(help="at most this many examples per data channel (a quick run)", show_default=False)
]
IamOption = Annotated[bool, typer.Option(help="enforce the deployed IAM policies on every call (--no-iam to debug)")]


def checked_run_options(
    config: StageConfig,
    network: str,
    param: list[str] | None,
    limit: int | None,
    port: int | None,
    *,
    tune: bool = False,
) -> dict[str, Any]:
    """A local run's options checked before anything starts: its parameter overrides (of the tuning
    pipeline with `tune`), or a UsageError."""
    from infra.definitions.tuning_pipeline import tuning_parameters
    from mlops.local.moto import check_port
    from mlops.param_option import parse_parameters

    parameters = tuning_parameters(config, network, warm_start=False) if tune else None
    overrides = parse_parameters(config, network, param or [], parameters)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if port is not None:
        check_port(port)
    return overrides
