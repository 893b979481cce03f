"""`mlops follow` (a pipeline execution, live) and `mlops logs` (a step's log), in the AWS this shell
points at: CloudWatch Logs in an account, the job folders of the local AWS of `mlops up`.

    mlops follow cnn                       # the newest execution, step by step, until it ends
    mlops logs cnn Train                   # the newest execution's Train job's log
    mlops logs cnn Evaluate --execution 8nerpuhq1vlr --follow
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from mlops.aws import ShellAws
from mlops.commands import NetworkArgument
from mlops.commands.training import DEFAULT_POLL_SECONDS, StageOption, follow_execution, require_pipeline, resolve
from mlops.errors import RunFailed, UsageError
from mlops.local.environment_state import running_environment
from mlops.pipeline_executions import TERMINAL_STATUSES, execution_summaries
from mlops.step_logs import FileSource, LogSource, cloudwatch_source

app = typer.Typer()
console = Console()

ExecutionOption = Annotated[
    str | None,
    typer.Option(metavar="ID", help="execution id or ARN (default: the newest)", show_default=False),
]
PollOption = Annotated[float, typer.Option(help="seconds between checks", min=0.0)]
LOG_POLL_SECONDS = 2.0


@app.command()
def follow(
    network: NetworkArgument,
    execution: ExecutionOption = None,
    stage: StageOption = None,
    poll_seconds: PollOption = DEFAULT_POLL_SECONDS,
) -> None:
    """Follow an execution of NETWORK's pipeline step by step until it ends (default: the newest)."""
    config, spec = resolve(network, stage)
    aws = ShellAws(config.region)
    arn = _execution_arn(
        aws.client("sagemaker"), require_pipeline(aws.client("sagemaker"), config, spec.name), execution
    )
    console.print(f"following {arn}", highlight=False, soft_wrap=True)
    follow_execution(aws, arn, poll_seconds)


@app.command()
def logs(
    network: NetworkArgument,
    step: Annotated[str, typer.Argument(help="a step of the pipeline that runs a job, e.g. Train or Evaluate")],
    execution: ExecutionOption = None,
    stage: StageOption = None,
    follow_log: Annotated[
        bool, typer.Option("--follow", help="keep printing what the job writes until the step ends")
    ] = False,
    poll_seconds: PollOption = LOG_POLL_SECONDS,
) -> None:
    """Print the log of STEP's job in an execution of NETWORK's pipeline (default: the newest)."""
    config, spec = resolve(network, stage)
    aws = ShellAws(config.region)
    sagemaker = aws.client("sagemaker")
    arn = _execution_arn(sagemaker, require_pipeline(sagemaker, config, spec.name), execution)
    record = _step(sagemaker, arn, step)
    source = _log_source(aws, arn, record)
    while True:
        ended = record.get("StepStatus") in TERMINAL_STATUSES
        for line in source.new_lines(final=ended):
            typer.echo(line)
        if ended or not follow_log:
            return
        time.sleep(poll_seconds)
        record = _step(sagemaker, arn, step)


def _execution_arn(sagemaker: Any, pipeline: str, execution: str | None) -> str:
    summaries = sorted(execution_summaries(sagemaker, pipeline), key=lambda s: s["StartTime"], reverse=True)
    if not summaries:
        raise UsageError(f"{pipeline} has no execution yet")
    if execution is None:
        return str(summaries[0]["PipelineExecutionArn"])
    for summary in summaries:
        arn = str(summary["PipelineExecutionArn"])
        if execution in (arn, arn.rsplit("/", 1)[-1]):
            return arn
    newest = ", ".join(s["PipelineExecutionArn"].rsplit("/", 1)[-1] for s in summaries[:3])
    raise UsageError(f"{pipeline} has no execution {execution!r} (its newest: {newest}; mlops runs lists them)")


def _step(sagemaker: Any, arn: str, step: str) -> dict[str, Any]:
    try:
        pages = sagemaker.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
        steps = [found for page in pages for found in page["PipelineExecutionSteps"]]
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot list the steps of {arn}: {error}") from None
    for found in steps:
        if found["StepName"] == step:
            return dict(found)
    names = ", ".join(sorted({found["StepName"] for found in steps})) or "none yet"
    raise UsageError(f"execution {arn.rsplit('/', 1)[-1]} has no step {step!r} (its steps so far: {names})")


def _log_source(aws: ShellAws, arn: str, record: dict[str, Any]) -> LogSource:
    """The job folder's log.txt in the local AWS of `mlops up`; CloudWatch Logs anywhere else."""
    metadata = record.get("Metadata", {})
    kind = next((kind for kind in ("TrainingJob", "ProcessingJob") if kind in metadata), None)
    if kind is None:
        described = ", ".join(metadata) or "no job yet"
        raise UsageError(f"step {record['StepName']} runs no training or processing job ({described}): it has no log")
    environment = running_environment()
    if environment is not None and environment.url == aws.client("sagemaker").meta.endpoint_url:
        return FileSource(
            Path(environment.folder) / "pipeline" / arn.rsplit("/", 1)[-1] / record["StepName"] / "log.txt"
        )
    sagemaker = aws.client("sagemaker")
    name = metadata[kind]["Arn"].rsplit("/", 1)[-1]
    try:  # the job's name as it was given (the ARN may be lower case): the streams are named by it
        described = getattr(sagemaker, "describe_training_job" if kind == "TrainingJob" else "describe_processing_job")(
            **{f"{kind}Name": name}
        )
        name = described[f"{kind}Name"]
    except ClientError:
        pass
    return cloudwatch_source(aws.client("logs"), kind, name)
