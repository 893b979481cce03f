"""`mlops local`: the whole project on this machine, against an embedded moto server.

Today: start moto, bootstrap CDK, deploy every stack of the `local` stage, show the outputs.
Each step is a `Phase` of `LocalRun.phases()`; later steps (prepare data, train, register,
deploy an endpoint, invoke it) are added there. Whatever happens (a failure, Ctrl-C), the
moto server and every CLI process stop, and the next run starts from nothing.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlops.cli import app
from mlops.errors import UsageError
from mlops.local.cdk import CdkCli
from mlops.local.moto import LocalAws, moto_server
from mlops.phases import Phase, run_phases
from training.networks import Network, get_network

LOCAL_STAGE = "local"
# Outputs CDK adds on its own to carry cross-stack references; not for people.
_CDK_EXPORT_OUTPUT = "ExportsOutput"

console = Console()


class LocalRun:
    """State shared by the phases of one `mlops local` run."""

    def __init__(self, network: Network, port: int | None, resources: ExitStack) -> None:
        self.network = network
        self.port = port
        self.resources = resources
        self.outputs: dict[str, dict[str, str]] = {}
        self._aws: LocalAws | None = None
        self._cdk: CdkCli | None = None

    def phases(self) -> list[Phase]:
        return [
            Phase("Start the local AWS (moto server)", self.start_aws),
            Phase("Bootstrap CDK in the local account", self.bootstrap),
            Phase(f"Deploy every stack of the {LOCAL_STAGE} stage", self.deploy),
        ]

    def start_aws(self) -> None:
        self._aws = self.resources.enter_context(moto_server(self.port))
        assembly = Path(self.resources.enter_context(tempfile.TemporaryDirectory(prefix="mlops-cdk.out-")))
        self._cdk = CdkCli(target=self._aws, stage=LOCAL_STAGE, output_dir=assembly, echo=_echo)
        console.print(f"  local AWS at {self._aws.endpoint_url}", style="dim", highlight=False)

    def bootstrap(self) -> None:
        self.cdk.bootstrap()

    def deploy(self) -> None:
        self.outputs = self.cdk.deploy()

    @property
    def cdk(self) -> CdkCli:
        assert self._cdk is not None, "the local AWS phase runs first"
        return self._cdk


def _echo(line: str) -> None:
    console.print(f"  {line}", style="dim", markup=False, highlight=False, soft_wrap=True)


def outputs_table(outputs: dict[str, dict[str, str]]) -> Table:
    table = Table(title="Stack outputs")
    table.add_column("stack", no_wrap=True)
    table.add_column("output", no_wrap=True)
    table.add_column("value", overflow="fold")
    for stack in sorted(outputs):
        for key, value in sorted(outputs[stack].items()):
            if not key.startswith(_CDK_EXPORT_OUTPUT):
                table.add_row(stack, key, value)
    return table


def _network(name: str) -> Network:
    try:
        return get_network(name)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


@app.command()
def local(
    network: Annotated[str, typer.Option(help="network type: cnn, rnn, autoencoder or transfer")] = "cnn",
    port: Annotated[int | None, typer.Option(help="port of the local AWS (moto) server [default: a free one]",
                                             show_default=False)] = None,
) -> None:
    """Run the project on this machine, with no AWS account: deploy every stack to a local AWS."""
    spec = _network(network)
    console.print(f"[bold]mlops local[/] — network [bold]{spec.name}[/]: {spec.summary}", highlight=False)
    with ExitStack() as resources:
        run = LocalRun(spec, port, resources)
        seconds = run_phases(console, run.phases())
        console.print(outputs_table(run.outputs))
    console.print(f"done in {sum(seconds.values()):.1f} s; the local AWS has stopped, and its state with it.",
                  highlight=False)
