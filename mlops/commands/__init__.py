"""The CLI's commands, one module per group, each owning a Typer app; `mlops/cli.py` composes them."""

from __future__ import annotations

from typing import Annotated

import typer

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
