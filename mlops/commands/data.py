"""`mlops data prepare NETWORK --out DIR`: a network's dataset as channel folders, optionally uploaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlops.cli_output import JsonOption, print_json
from mlops.commands import NetworkArgument, known_network
from mlops.errors import RunFailed, UsageError

app = typer.Typer(
    name="data",
    help="Prepare training data: train/validation/test (+ pretrained) channel folders.",
    no_args_is_help=True,
)
console = Console()


@app.command("prepare")
def prepare_command(
    network: NetworkArgument,
    out: Annotated[Path, typer.Option(help="folder that receives one subfolder per channel")],
    source: Annotated[
        str, typer.Option(help="offline (shipped with sklearn/statsmodels) or online (downloads, e.g. MNIST, CIFAR-10)")
    ] = "offline",
    limit: Annotated[int | None, typer.Option(help="at most this many examples per channel")] = None,
    upload_bucket: Annotated[str | None, typer.Option(help="also upload to s3://BUCKET/NETWORK/CHANNEL/")] = None,
) -> None:
    """Write NETWORK's dataset under OUT (and upload it to the data bucket)."""
    # Imported here: data preparation loads TensorFlow, which no other command should wait for.
    from mlops.datasets import prepare, preparer_for, upload_channels

    known_network(network)
    if source not in ("offline", "online"):
        raise UsageError(f"--source must be offline or online, got {source!r}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    preparer = preparer_for(network, source)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        with console.status(f"preparing {preparer.name} ({preparer.summary})"):
            channels = prepare(network, out, source=source, limit=limit)  # type: ignore[arg-type]
    except FileExistsError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        hint = " (online datasets need internet access)" if preparer.needs_internet else ""
        raise RunFailed(f"preparing {preparer.name} failed: {error}{hint}") from None
    for channel, folder in channels.items():
        console.print(f"{channel:12} {folder}", highlight=False)
    if upload_bucket:
        for channel, uri in upload_channels(channels, bucket=upload_bucket, network=network).items():
            console.print(f"{channel:12} uploaded to {uri}", highlight=False)


@app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """The datasets the preparers know."""
    from mlops.datasets import PREPARERS

    if as_json:
        print_json(
            [
                {"name": preparer.name, "online": preparer.needs_internet, "summary": preparer.summary}
                for preparer in PREPARERS.values()
            ]
        )
        return
    for preparer in PREPARERS.values():
        console.print(
            f"{preparer.name:16} {'online ' if preparer.needs_internet else 'offline'}  {preparer.summary}",
            highlight=False,
        )
