"""`mlops transform NETWORK INPUT`: score a batch of inputs with an approved model version, in AWS.

    mlops transform cnn mnist-test.jsonl                 # upload it, run <prefix>-cnn-transform on it
    mlops transform cnn rows.csv --version 3 --wait      # a named version; wait, then the summary
    mlops transform cnn s3://DATA/cnn/batch/input/ --content-type text/csv

It uploads a local file (or a folder's files) to the data bucket's `<network>/batch/runs/<time>/`,
starts the network's batch transform pipeline on it (docs/batch.md) and prints where the output
goes; with `--wait`, the run's steps until it ends, then the records, seconds and records/s. On
this machine, `mlops local --transform FILE` runs the same pipeline through the local executor.
"""

from __future__ import annotations

from typing import Annotated

import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from infra import naming
from infra.definitions import transform_pipeline as definition
from mlops.aws import ShellAws
from mlops.batch import TransformRequest, checked_output, run_stamp, summarize
from mlops.commands import NetworkArgument
from mlops.commands.training import DEFAULT_POLL_SECONDS, StageOption, follow_execution, resolve
from mlops.errors import RunFailed, UsageError
from mlops.monitoring import ARTIFACTS_OUTPUT, stack_values

DATA_OUTPUT = "DataBucketName"

app = typer.Typer()
console = Console()


@app.command()
def transform(
    network: NetworkArgument,
    source: Annotated[str, typer.Argument(metavar="INPUT", help="a .jsonl/.csv file, a folder of them, or s3://.../")],
    version: Annotated[
        int | None, typer.Option(help="approved model version (default: the newest approved)", show_default=False)
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            metavar="URI", help="s3://ARTIFACTS/batch-transform/.../ (default: the pipeline's)", show_default=False
        ),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(help="application/jsonlines or text/csv (default: from the file names)", show_default=False),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the run to its end, then summarize it")] = False,
    stage: StageOption = None,
    poll_seconds: Annotated[
        float, typer.Option(help="seconds between checks with --wait", min=0.0)
    ] = DEFAULT_POLL_SECONDS,
) -> None:
    """Score INPUT with NETWORK's batch transform pipeline and an approved model version."""
    config, spec = resolve(network, stage)
    request = TransformRequest.of(spec.name, source, version=version, content_type=content_type)
    aws = ShellAws(config.region)
    _, outputs = stack_values(
        aws.client("cloudformation"), naming.stack_name(config.prefix(), naming.STORAGE_STACK_SUFFIX)
    )
    chosen_output = checked_output(output, outputs[ARTIFACTS_OUTPUT], spec.name)
    sagemaker = aws.client("sagemaker")
    pipeline = naming.transform_pipeline_name(config.prefix(), spec.name)
    try:
        sagemaker.describe_pipeline(PipelineName=pipeline)
    except ClientError:
        raise UsageError(f"pipeline {pipeline} does not exist in this account and region: deploy the stage") from None
    try:
        input_uri = request.upload(aws.client("s3"), outputs[DATA_OUTPUT], run_stamp())
        started = sagemaker.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDescription="started by mlops transform",
            PipelineParameters=[
                {"Name": name, "Value": value} for name, value in request.parameters(input_uri, chosen_output).items()
            ],
        )
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot start pipeline {pipeline}: {error}") from None
    arn = started["PipelineExecutionArn"]
    base = chosen_output or f"s3://{outputs[ARTIFACTS_OUTPUT]}/{definition.output_prefix(spec.name)}"
    console.print(
        f"started {pipeline} on {input_uri} ({request.record_format.content_type}, "
        f"{'version ' + str(request.version) if request.version else 'the newest approved version'})\n  {arn}\n"
        f"  output: {base}{arn.rsplit('/', 1)[-1]}/",
        highlight=False,
        soft_wrap=True,
    )
    if wait:
        follow_execution(aws, arn, poll_seconds)
        _summarize(aws, arn)


def _summarize(aws: ShellAws, execution_arn: str) -> None:
    sagemaker = aws.client("sagemaker", config=Config(retries={"total_max_attempts": 1}))
    try:
        steps = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn)["PipelineExecutionSteps"]
    except ClientError as error:
        console.print(f"  no summary: ListPipelineExecutionSteps is not available here ({error})", style="yellow")
        return
    jobs = [step["Metadata"]["TransformJob"]["Arn"] for step in steps if "TransformJob" in step.get("Metadata", {})]
    for job_arn in jobs:
        job = sagemaker.describe_transform_job(TransformJobName=job_arn.rsplit("/", 1)[-1])
        console.print(f"  {summarize(aws.client('s3'), job).line()}", highlight=False, soft_wrap=True)
