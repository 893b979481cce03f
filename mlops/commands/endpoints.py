"""`mlops serve` (a model behind a local SageMaker endpoint) and `mlops invoke` (call an endpoint)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from inference.artifact import ArtifactError, read_serving_config
from inference.client import EndpointRequestError, InputFileError, ModelError, encode_input
from inference.client import invoke as invoke_endpoint
from inference.local_endpoint import LocalEndpoint
from infra.config import DEFAULT_PROJECT
from infra.naming import endpoint_name
from mlops.commands import NetworkArgument, known_network
from mlops.errors import RunFailed, UsageError
from mlops.stages import LOCAL_STAGE, target_stage

DEFAULT_PORT = 8080  # the port SageMaker's containers serve on

app = typer.Typer()
console = Console()


def default_endpoint_name(network: str, stage: str = LOCAL_STAGE) -> str:
    return endpoint_name(f"{DEFAULT_PROJECT}-{stage}", network)


@app.command()
def serve(
    network: NetworkArgument,
    model: Annotated[Path, typer.Argument(help="exported model folder or model.tar.gz")],
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0 picks a free one)")] = DEFAULT_PORT,
    name: Annotated[str | None, typer.Option(help="endpoint name (default mlops-local-NETWORK)")] = None,
) -> None:
    """Serve MODEL as a local SageMaker endpoint until Ctrl-C or SIGTERM."""
    known_network(network)
    try:
        served_network = read_serving_config(model).get("network")
    except ArtifactError as error:
        raise UsageError(str(error)) from None
    if served_network != network:
        raise UsageError(f"{model} holds a {served_network!r} model, not {network!r}")
    endpoint = LocalEndpoint(model, name or default_endpoint_name(network), port=port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        endpoint.start()
    except ArtifactError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    console.print(
        f"[bold]{endpoint.endpoint_name}[/] serving {model} at {endpoint.url}  (Ctrl-C stops it)\n"
        f"  mlops invoke {network} FILE --local {endpoint.url}" + ("" if name is None else f" --endpoint-name {name}"),
        highlight=False,
        soft_wrap=True,
    )
    endpoint.serve_until_signal()


@app.command()
def invoke(
    network: NetworkArgument,
    file: Annotated[str, typer.Argument(help="PNG/JPEG image, .csv or .json file; - reads stdin")],
    local: Annotated[
        str | None, typer.Option(metavar="URL", help="a local endpoint, e.g. http://127.0.0.1:8080")
    ] = None,
    endpoint_name_: Annotated[
        str | None, typer.Option("--endpoint-name", metavar="NAME", help="endpoint name (default mlops-STAGE-NETWORK)")
    ] = None,
    stage: Annotated[
        str | None,
        typer.Option(help="stage whose endpoint is called (default: cdk.json's `stage`)", show_default=False),
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (default: the stage's)", show_default=False)] = None,
) -> None:
    """Send FILE to NETWORK's endpoint (in AWS, or a local one) and print the answer."""
    spec = known_network(network)
    try:
        request = encode_input(file, spec.request_content_types)
    except InputFileError as error:
        raise UsageError(str(error)) from None
    if local:
        name = endpoint_name_ or default_endpoint_name(network, LOCAL_STAGE)
    else:
        config = target_stage(stage)
        name = endpoint_name_ or endpoint_name(config.prefix(), spec.name)
        region = region or config.region
    try:
        answer = invoke_endpoint(name, request, endpoint_url=local, region=region)
    except EndpointRequestError as error:
        raise UsageError(f"endpoint {name}: {error}") from None
    except ModelError as error:
        raise RunFailed(f"endpoint {name}: {error}") from None
    if isinstance(answer, str):
        console.print(answer, highlight=False)
    else:
        console.print_json(data=answer)
