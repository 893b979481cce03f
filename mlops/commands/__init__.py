"""The CLI's commands, one module per group; `mlops/cli.py` assembles them."""

from __future__ import annotations

from mlops.errors import UsageError
from training.networks import Network, get_network


def known_network(name: str) -> Network:
    """The registry entry of `name`, or a UsageError listing the known networks."""
    try:
        return get_network(name)
    except KeyError as error:
        raise UsageError(error.args[0]) from None
