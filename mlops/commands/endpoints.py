"""`mlops serve` (a model behind a local SageMaker endpoint) and `mlops invoke` (call an endpoint).

`--async` on both: `mlops serve --async-output s3://.../` also answers InvokeEndpointAsync, its
answers written to that S3 (the shell's AWS, e.g. a moto server's AWS_ENDPOINT_URL); `mlops invoke
--async` uploads the input, calls InvokeEndpointAsync and, with `--wait`, prints the answer once
written (docs/batch.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from inference.artifact import ArtifactError, read_serving_config
from inference.async_inference import AsyncConfig, AsyncTarget
from inference.client import (
    EncodedRequest,
    EndpointRequestError,
    InputFileError,
    ModelError,
    await_async_answer,
    encode_input,
    invoke_async,
)
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
    async_output: Annotated[
        str | None,
        typer.Option(
            metavar="URI", help="also answer InvokeEndpointAsync, answers to this s3://.../", show_default=False
        ),
    ] = None,
    async_failures: Annotated[
        str | None, typer.Option(metavar="URI", help="s3://.../ of async failures", show_default=False)
    ] = None,
    success_topic: Annotated[str | None, typer.Option(metavar="ARN", help="SNS topic of async answers")] = None,
    error_topic: Annotated[str | None, typer.Option(metavar="ARN", help="SNS topic of async failures")] = None,
) -> None:
    """Serve MODEL as a local SageMaker endpoint until Ctrl-C or SIGTERM."""
    known_network(network)
    try:
        served_network = read_serving_config(model).get("network")
    except ArtifactError as error:
        raise UsageError(str(error)) from None
    if served_network != network:
        raise UsageError(f"{model} holds a {served_network!r} model, not {network!r}")
    target = None
    if async_output is not None:
        for uri in (async_output, async_failures):
            if uri is not None and not uri.startswith("s3://"):
                raise UsageError(f"{uri} is not an s3:// URI")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        config = AsyncConfig(async_output, async_failures, success_topic, error_topic)
        target = AsyncTarget(config, _shell_signing(region))
    endpoint = LocalEndpoint(model, name or default_endpoint_name(network), port=port, async_target=target)
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
    asynchronous: Annotated[
        bool, typer.Option("--async", help="InvokeEndpointAsync: upload FILE to --input-location first")
    ] = False,
    input_location: Annotated[
        str | None,
        typer.Option(metavar="URI", help="with --async: where FILE is uploaded (s3://BUCKET/KEY)", show_default=False),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="with --async: seconds to wait for the answer (0: do not wait)", min=0)
    ] = 0,
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
    if asynchronous:
        _invoke_async(name, request, input_location, local, region, wait)
        return
    if input_location is not None or wait:
        raise UsageError("--input-location and --wait go with --async")
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


def _invoke_async(
    name: str, request: EncodedRequest, input_location: str | None, local: str | None, region: str | None, wait: float
) -> None:
    """Upload the input, InvokeEndpointAsync, and the answer once written if asked to wait."""
    import boto3

    if input_location is None or not input_location.startswith("s3://") or input_location.endswith("/"):
        raise UsageError("--async needs --input-location s3://BUCKET/KEY (where the input is uploaded)")
    s3 = boto3.client("s3", region_name=region)
    bucket, _, key = input_location.removeprefix("s3://").partition("/")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=request.body, ContentType=request.content_type)
        accepted = invoke_async(name, input_location, request.content_type, endpoint_url=local, region=region)
    except EndpointRequestError as error:
        raise UsageError(f"endpoint {name}: {error}") from None
    except Exception as error:  # the upload: no bucket, no credentials
        raise UsageError(f"cannot upload the input to {input_location}: {error}") from None
    console.print_json(data=accepted)
    if not wait:
        return
    try:
        answer = await_async_answer(s3, accepted, wait)
    except ModelError as error:
        raise RunFailed(f"endpoint {name}: {error}") from None
    except TimeoutError as error:
        raise RunFailed(str(error)) from None
    console.print_json(data=answer) if not isinstance(answer, str) else console.print(answer, highlight=False)


def _shell_signing(region: str) -> dict[str, str]:
    """The shell's AWS (a moto server's endpoint and test credentials, or a profile's), for the
    endpoint's server process, which signs its S3 and SNS calls with them."""
    import boto3

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise UsageError("--async-output: no AWS credentials in this shell to write the answers with")
    frozen = credentials.get_frozen_credentials()
    signing = {
        "region_name": region,
        "aws_access_key_id": frozen.access_key,
        "aws_secret_access_key": frozen.secret_key,
    }
    if frozen.token:
        signing["aws_session_token"] = frozen.token
    if os.environ.get("AWS_ENDPOINT_URL"):
        signing["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    return signing
