"""`mlops train`, `runs`, `models`, `approve`, `reject`: a network's training pipeline and its
model registry group, in the AWS this shell points at.

Names come from `infra.naming` (the same functions the stacks use) and parameters are checked
against `infra.definitions.training_pipeline` (the same list the pipeline is defined with). boto3's default chain
picks credentials, so `AWS_ENDPOINT_URL` pointing at a moto server works as well as a real account.
Every input is checked before anything starts; bad input is a one-line error with exit code 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from infra import naming
from infra.config import StageConfig
from mlops.aws import ShellAws
from mlops.cli_output import JsonOption, print_json
from mlops.commands import NetworkArgument, known_network
from mlops.errors import RunFailed, UsageError
from mlops.param_option import parse_parameters
from mlops.pipeline_executions import (
    TERMINAL_STATUSES,
    ExecutionWatch,
    clock,
    cost_lines,
    duration,
    error_code,
    execution_summaries,
)
from mlops.stages import enabled_network, target_stage
from training.networks import Network

DEFAULT_POLL_SECONDS = 20.0

app = typer.Typer()
console = Console()

StageOption = Annotated[
    str | None, typer.Option(help="stage in cdk.json (default: its `stage` context)", show_default=False)
]
WaitOption = Annotated[bool, typer.Option(help="follow the run step by step until it ends")]
PollSecondsOption = Annotated[float, typer.Option(help="seconds between status checks with --wait", min=0.0)]


def resolve(network: str, stage: str | None) -> tuple[StageConfig, Network]:
    """The stage and the registry entry of `network`, or a UsageError naming the problem (a stage
    that promotes from another has no pipeline and no registry of its own)."""
    spec = known_network(network)
    config = target_stage(stage)
    enabled_network(config, spec.name)
    source = config.promotion_source
    if source is not None:
        raise UsageError(
            f"stage {config.name} trains nothing: its endpoints serve the versions approved in {source.stage}'s "
            f"registry ({config.served_model_package_group(spec.name)}): train, list and approve them with "
            f"--stage {source.stage}"
        )
    return config, spec


def require_pipeline(sagemaker: Any, config: StageConfig, network: str) -> str:
    """The pipeline's name, or a UsageError if the target account/region has no such pipeline."""
    name = naming.pipeline_name(config.prefix(), network)
    try:
        sagemaker.describe_pipeline(PipelineName=name)
    except ClientError as error:
        if error_code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(
                f"pipeline {name} does not exist in region {config.region} of this account "
                f"({error.response['Error'].get('Message', error_code(error))}); "
                f"{deploy_hint(config)}"
            ) from None
        raise RunFailed(f"cannot read pipeline {name}: {error}") from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach SageMaker in {config.region}: {error}") from None
    return name


@app.command()
def train(
    network: NetworkArgument,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="a hyperparameter (epochs=3) or pipeline parameter (TrainingInstanceType=ml.m7i.2xlarge); repeatable",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = False,
    stage: StageOption = None,
    poll_seconds: PollSecondsOption = DEFAULT_POLL_SECONDS,
) -> None:
    """Start NETWORK's training pipeline (train, evaluate, quality gate, register)."""
    config, spec = resolve(network, stage)
    values = parse_parameters(config, spec.name, param or [])
    aws = ShellAws(config.region)
    sagemaker = aws.client("sagemaker")
    pipeline = require_pipeline(sagemaker, config, spec.name)
    try:
        started = sagemaker.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDescription="started by mlops train",
            PipelineParameters=[{"Name": name, "Value": str(value)} for name, value in values.items()],
        )
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot start pipeline {pipeline}: {error}") from None
    arn = started["PipelineExecutionArn"]
    overrides = ", ".join(f"{name}={value}" for name, value in values.items()) or "stage defaults"
    console.print(f"started {pipeline} ({overrides})\n  {arn}", highlight=False, soft_wrap=True)
    if wait:
        follow_execution(aws, arn, poll_seconds)


def follow_execution(aws: ShellAws, execution_arn: str, poll_seconds: float) -> None:
    """Shows the run live until it ends; then what it cost, and RunFailed if it did not succeed."""
    sagemaker = aws.client("sagemaker")
    # One attempt per call: the poll loop is the retry, and a 500 may mean "not implemented" (moto).
    poller = aws.client("sagemaker", config=Config(retries={"total_max_attempts": 1}))
    watch = ExecutionWatch(sagemaker, poller, execution_arn)
    try:
        if console.is_terminal:
            with Live(watch.render(), console=console, refresh_per_second=4) as live:
                _poll_until_done(watch, poll_seconds, lambda: live.update(watch.render()))
        else:
            # Logs and pipes get a line per change instead of a redrawn table.
            def print_changes() -> None:
                for line in watch.changes():
                    console.print(line, markup=False, highlight=False, soft_wrap=True)

            _poll_until_done(watch, poll_seconds, print_changes)
    except KeyboardInterrupt:
        console.print("stopped following; the run goes on in SageMaker (mlops runs shows it)", highlight=False)
        raise typer.Exit(130) from None
    if watch.steps_unsupported:
        console.print(
            "  this endpoint does not implement ListPipelineExecutionSteps (moto does not): "
            "only the execution's own status is shown, and no job costs",
            style="yellow",
            highlight=False,
        )
    for line in cost_lines(sagemaker, watch.steps, aws.region):
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if watch.status != "Succeeded":
        raise RunFailed(
            f"execution {execution_arn.rsplit('/', 1)[-1]} ended {watch.status}: {watch.failure_reason(sagemaker)}"
        )
    registered = watch.registered_model()
    if registered:
        console.print(f"  registered {registered}", highlight=False)


def _poll_until_done(watch: ExecutionWatch, poll_seconds: float, show: Callable[[], object]) -> None:
    while True:
        watch.poll()
        show()
        if watch.status in TERMINAL_STATUSES:
            return
        time.sleep(poll_seconds)


@app.command()
def runs(
    network: NetworkArgument,
    stage: StageOption = None,
    limit: Annotated[int, typer.Option(help="newest executions shown", min=1)] = 10,
    as_json: JsonOption = False,
) -> None:
    """List NETWORK's pipeline executions, newest first, with status and duration."""
    config, spec = resolve(network, stage)
    sagemaker = ShellAws(config.region).client("sagemaker")
    pipeline = require_pipeline(sagemaker, config, spec.name)
    summaries = sorted(execution_summaries(sagemaker, pipeline), key=lambda s: s["StartTime"], reverse=True)
    rows = [_execution_row(sagemaker, summary) for summary in summaries[:limit]]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{pipeline} has not run yet: mlops train {spec.name}", highlight=False)
        return
    table = Table(title=f"{pipeline} executions")
    for column in ("execution", "status", "started", "duration", "description / failure"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["execution"],
            row["status"],
            clock(row["started"]),
            duration(row["started"], row["ended"]),
            escape(row["failure"] or row["description"]),
        )
    console.print(table)


def _execution_row(sagemaker: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """One execution as `runs` shows it (and `--json` prints it)."""
    execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=summary["PipelineExecutionArn"])
    status = execution["PipelineExecutionStatus"]
    failure = None
    if status == "Failed":
        failure = execution.get("FailureReason") or summary.get("PipelineExecutionFailureReason")
    return {
        "execution": summary["PipelineExecutionArn"].rsplit("/", 1)[-1],
        "arn": summary["PipelineExecutionArn"],
        "status": status,
        "started": execution.get("CreationTime", summary["StartTime"]),
        "ended": execution.get("LastModifiedTime") if status in TERMINAL_STATUSES else None,
        "description": summary.get("PipelineExecutionDescription", ""),
        "failure": failure,
    }


def deploy_hint(config: StageConfig) -> str:
    return f"deploy stack {naming.stack_name(config.prefix(), naming.PIPELINES_STACK_SUFFIX)} first"
