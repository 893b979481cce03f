"""`mlops train`, `runs`, `models`, `approve`, `reject`: a network's training pipeline and its
model registry group, in the AWS this shell points at.

Names come from `infra.naming` (the same functions the stacks use) and parameters are checked
against `infra.pipeline_definition` (the same list the pipeline is defined with). boto3's default chain
picks credentials, so `AWS_ENDPOINT_URL` pointing at a moto server works as well as a real account.
Every input is checked before anything starts; bad input is a one-line error with exit code 2.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

import boto3
import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from infra import naming
from infra.config import StageConfig
from mlops.commands import NetworkArgument, known_network
from mlops.costs import PRICES_FILE, load_prices
from mlops.errors import RunFailed, UsageError
from mlops.job_costs import JobCost, processing_job_cost, training_job_cost
from mlops.pipeline_parameters import parse_parameters
from mlops.registry import model_versions, set_approval
from mlops.stages import enabled_network, stage_config
from training.networks import Network

TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
DEFAULT_POLL_SECONDS = 20.0

app = typer.Typer()
console = Console()

StageOption = Annotated[str | None, typer.Option(help="stage in cdk.json (default: its `stage` context)",
                                                 show_default=False)]
VersionOption = Annotated[int | None, typer.Option(help="model package version (default: the newest)",
                                                   show_default=False)]


class Aws:
    """The stage's region, through boto3's default credential chain."""

    def __init__(self, config: StageConfig) -> None:
        self.region = config.region

    def client(self, service: str, **options: Any) -> Any:
        return boto3.client(service, region_name=self.region, **options)


def resolve(network: str, stage: str | None) -> tuple[StageConfig, Network]:
    """The stage and the registry entry of `network`, or a UsageError naming the problem."""
    config = stage_config(stage)
    spec = known_network(network)
    enabled_network(config, spec.name)
    return config, spec


def require_pipeline(sagemaker: Any, config: StageConfig, network: str) -> str:
    """The pipeline's name, or a UsageError if the target account/region has no such pipeline."""
    name = naming.pipeline_name(config.prefix(), network)
    try:
        sagemaker.describe_pipeline(PipelineName=name)
    except ClientError as error:
        if _code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(f"pipeline {name} does not exist in region {config.region} of this account "
                             f"({error.response['Error'].get('Message', _code(error))}); "
                             f"{_deploy_hint(config)}") from None
        raise RunFailed(f"cannot read pipeline {name}: {error}") from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach SageMaker in {config.region}: {error}") from None
    return name


@app.command()
def train(
    network: NetworkArgument,
    param: Annotated[list[str] | None, typer.Option(
        "--param", metavar="NAME=VALUE",
        help="a hyperparameter (epochs=3) or pipeline parameter (TrainingInstanceType=ml.m7i.2xlarge); repeatable",
        show_default=False)] = None,
    wait: Annotated[bool, typer.Option(help="follow the run step by step until it ends")] = False,
    stage: StageOption = None,
    poll_seconds: Annotated[float, typer.Option(help="seconds between status checks with --wait", min=0.0)
                            ] = DEFAULT_POLL_SECONDS,
) -> None:
    """Start NETWORK's training pipeline (train, evaluate, quality gate, register)."""
    config, spec = resolve(network, stage)
    values = parse_parameters(config, spec.name, param or [])
    aws = Aws(config)
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
        follow(aws, arn, poll_seconds)


def follow(aws: Aws, execution_arn: str, poll_seconds: float) -> None:
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
            _poll_until_done(watch, poll_seconds, lambda: [console.print(line, markup=False, highlight=False,
                                                                         soft_wrap=True)
                                                           for line in watch.changes()])
    except KeyboardInterrupt:
        console.print("stopped following; the run goes on in SageMaker (mlops runs shows it)", highlight=False)
        raise typer.Exit(130) from None
    if watch.steps_unsupported:
        console.print("  this endpoint does not implement ListPipelineExecutionSteps (moto does not): "
                      "only the execution's own status is shown, and no job costs", style="yellow",
                      highlight=False)
    for line in cost_lines(sagemaker, watch.steps, aws.region):
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if watch.status != "Succeeded":
        raise RunFailed(f"execution {execution_arn.rsplit('/', 1)[-1]} ended {watch.status}: "
                        f"{watch.failure_reason(sagemaker)}")
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


class ExecutionWatch:
    """The latest view of one pipeline execution."""

    def __init__(self, sagemaker: Any, poller: Any, execution_arn: str) -> None:
        self._sagemaker = sagemaker
        self._poller = poller
        self.arn = execution_arn
        self.execution: dict[str, Any] = {}
        self.steps: list[dict[str, Any]] = []
        self.steps_unsupported = False
        self._shown: set[tuple[str, ...]] = set()

    @property
    def status(self) -> str:
        return self.execution.get("PipelineExecutionStatus", "Starting")

    def poll(self) -> None:
        try:
            self.execution = self._sagemaker.describe_pipeline_execution(PipelineExecutionArn=self.arn)
        except (BotoCoreError, ClientError) as error:
            raise RunFailed(f"cannot read execution {self.arn}: {error}") from None
        if self.steps_unsupported:
            return
        try:
            pages = self._poller.get_paginator("list_pipeline_execution_steps").paginate(
                PipelineExecutionArn=self.arn, SortOrder="Ascending")
            self.steps = [step for page in pages for step in page["PipelineExecutionSteps"]]
        except ClientError as error:
            # A real SageMaker error has a name (InternalFailure, ThrottlingException); moto answers
            # an action it lacks with an HTML error page, which botocore reports as code "500".
            self.steps_unsupported = _code(error).isdigit() or _code(error).startswith("NotImplemented")
        except BotoCoreError:
            pass  # keep the last view; the next poll tries again

    def render(self) -> Group:
        started = self.execution.get("CreationTime")
        elapsed = f" for {_duration(started, _now())}" if started and self.status not in TERMINAL_STATUSES else ""
        header = f"[bold]{self.status}[/]{elapsed}  {self.arn.rsplit('/', 1)[-1]}"
        if not self.steps:
            return Group(header)
        table = Table(show_edge=False, pad_edge=False)
        for column in ("step", "type", "status", "started", "took", "reason"):
            table.add_column(column, overflow="fold")
        for step in self.steps:
            table.add_row(escape(step["StepName"]), step.get("StepType", ""), step.get("StepStatus", ""),
                          _clock(step.get("StartTime")), _duration(step.get("StartTime"), step.get("EndTime")),
                          escape(step.get("FailureReason", "")))
        return Group(header, table)

    def changes(self) -> list[str]:
        """Lines for what changed since the last call: the execution's status, then each step's."""
        states = [(self.status,)] + [(step["StepName"], step.get("StepStatus", ""), step.get("FailureReason", ""))
                                     for step in self.steps]
        lines = []
        for state in states:
            if state not in self._shown:
                self._shown.add(state)
                lines.append(f"  execution {state[0]}" if len(state) == 1
                             else f"  step {state[0]}: {state[1]}" + (f" ({state[2]})" if state[2] else ""))
        return lines

    def failure_reason(self, sagemaker: Any) -> str:
        """The failed step's reason, else the execution's (describe, then the listing's summary)."""
        for step in self.steps:
            if step.get("StepStatus") == "Failed" and step.get("FailureReason"):
                return f"step {step['StepName']}: {step['FailureReason']}"
        if self.execution.get("FailureReason"):
            return self.execution["FailureReason"]
        # Some endpoints (moto) report the reason only in the execution listing.
        pipeline = self.arn.split(":pipeline/", 1)[1].split("/", 1)[0]
        for summary in _execution_summaries(sagemaker, pipeline):
            if summary["PipelineExecutionArn"] == self.arn and summary.get("PipelineExecutionFailureReason"):
                return summary["PipelineExecutionFailureReason"]
        return "no reason reported"

    def registered_model(self) -> str | None:
        for step in self.steps:
            arn = step.get("Metadata", {}).get("RegisterModel", {}).get("Arn")
            if arn:
                return arn
        return None


def cost_lines(sagemaker: Any, steps: list[dict[str, Any]], region: str) -> list[str]:
    """One line per job the run started, with its billable time and estimated cost."""
    prices = load_prices()
    table = prices["training_jobs"]
    costs: list[JobCost] = []
    lines: list[str] = []
    for step in steps:
        metadata = step.get("Metadata", {})
        try:
            if "TrainingJob" in metadata:
                name = metadata["TrainingJob"]["Arn"].rsplit("/", 1)[-1]
                costs.append(training_job_cost(step["StepName"], sagemaker.describe_training_job(
                    TrainingJobName=name), table))
            elif "ProcessingJob" in metadata:
                name = metadata["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
                costs.append(processing_job_cost(step["StepName"], sagemaker.describe_processing_job(
                    ProcessingJobName=name), table))
        except (BotoCoreError, ClientError) as error:
            lines.append(f"{step['StepName']:<10} cost unknown: cannot read its job ({error})")
    if not costs:
        return lines
    lines += [cost.line() for cost in costs]
    known = [cost.cost for cost in costs if cost.cost is not None]
    total = f"total      ~${sum(known):.4f} {prices['currency']}"
    if len(known) < len(costs):
        total += " (incomplete: some instance types have no price)"
    lines.append(total)
    lines.append(f"on-demand {prices['region']} prices retrieved {table['retrieved']}; sources and caveats: "
                 f"mlops/{PRICES_FILE.name}")
    if region != prices["region"]:
        lines.append(f"these jobs ran in {region}, whose prices differ: the estimate is only indicative")
    return lines


@app.command()
def runs(
    network: NetworkArgument,
    stage: StageOption = None,
    limit: Annotated[int, typer.Option(help="newest executions shown", min=1)] = 10,
) -> None:
    """List NETWORK's pipeline executions, newest first, with status and duration."""
    config, spec = resolve(network, stage)
    sagemaker = Aws(config).client("sagemaker")
    pipeline = require_pipeline(sagemaker, config, spec.name)
    summaries = sorted(_execution_summaries(sagemaker, pipeline), key=lambda s: s["StartTime"], reverse=True)
    if not summaries:
        console.print(f"{pipeline} has not run yet: mlops train {spec.name}", highlight=False)
        return
    table = Table(title=f"{pipeline} executions")
    for column in ("execution", "status", "started", "duration", "description / failure"):
        table.add_column(column, overflow="fold")
    for summary in summaries[:limit]:
        execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=summary["PipelineExecutionArn"])
        status = execution["PipelineExecutionStatus"]
        ended = execution.get("LastModifiedTime") if status in TERMINAL_STATUSES else None
        note = summary.get("PipelineExecutionDescription", "")
        if status == "Failed":
            note = execution.get("FailureReason") or summary.get("PipelineExecutionFailureReason", "")
        table.add_row(summary["PipelineExecutionArn"].rsplit("/", 1)[-1], status, _clock(summary["StartTime"]),
                      _duration(execution.get("CreationTime", summary["StartTime"]), ended), escape(note))
    console.print(table)


@app.command()
def models(
    network: NetworkArgument,
    stage: StageOption = None,
    limit: Annotated[int, typer.Option(help="newest versions shown", min=1)] = 10,
) -> None:
    """List the registered versions of NETWORK with their metrics and approval status."""
    config, spec = resolve(network, stage)
    aws = Aws(config)
    sagemaker = aws.client("sagemaker")
    group = require_group(sagemaker, config, spec.name)
    versions = model_versions(sagemaker, group)
    if not versions:
        console.print(f"{group} holds no model yet: a pipeline run registers one when it passes the "
                      f"quality gate ({spec.quality_gate.metric} {spec.quality_gate.comparison} "
                      f"{spec.quality_gate.threshold})", highlight=False)
        return
    s3 = aws.client("s3")
    table = Table(title=f"{group} ({spec.quality_gate.metric} {spec.quality_gate.comparison} "
                        f"{spec.quality_gate.threshold} to register)")
    for column in ("version", "approval", "created", spec.quality_gate.metric, "other metrics"):
        table.add_column(column, overflow="fold")
    for version in versions[:limit]:
        package = sagemaker.describe_model_package(ModelPackageName=version.arn)
        metrics, note = model_metrics(s3, package)
        gate_value = metrics.pop(spec.quality_gate.metric, None)
        if gate_value is None:
            gate_value = package.get("CustomerMetadataProperties", {}).get("quality_value")
        others = ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items())) or note
        table.add_row(str(version.version), version.status, _clock(package.get("CreationTime")),
                      _number(gate_value), escape(others))
    console.print(table)


def require_group(sagemaker: Any, config: StageConfig, network: str) -> str:
    group = naming.model_package_group_name(config.prefix(), network)
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if _code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(f"model package group {group} does not exist in region {config.region} of this "
                             f"account; {_deploy_hint(config)}") from None
        raise RunFailed(f"cannot read model package group {group}: {error}") from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach SageMaker in {config.region}: {error}") from None
    return group


def model_metrics(s3: Any, package: dict[str, Any]) -> tuple[dict[str, float], str]:
    """The metrics of the version's evaluation report (ModelQuality statistics), or why there are none."""
    uri = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
    if not uri:
        return {}, "no evaluation report registered"
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        report = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        return {}, f"report {uri} unreadable ({_code(error) if isinstance(error, ClientError) else error})"
    try:
        metrics = json.loads(report)["metrics"]
        return {name: float(entry["value"]) for name, entry in metrics.items()}, ""
    except (ValueError, KeyError, TypeError):
        return {}, f"report {uri} is not evaluation.json ({{\"metrics\": {{name: {{\"value\": ...}}}}}})"


@app.command()
def approve(network: NetworkArgument, version: VersionOption = None, stage: StageOption = None) -> None:
    """Approve a registered version of NETWORK (default: the newest) for deployment."""
    _set_approval(network, version, stage, "Approved")


@app.command()
def reject(network: NetworkArgument, version: VersionOption = None, stage: StageOption = None) -> None:
    """Reject a registered version of NETWORK (default: the newest)."""
    _set_approval(network, version, stage, "Rejected")


def _set_approval(network: str, version: int | None, stage: str | None, status: str) -> None:
    config, spec = resolve(network, stage)
    sagemaker = Aws(config).client("sagemaker")
    group = require_group(sagemaker, config, spec.name)
    versions = model_versions(sagemaker, group)
    if not versions:
        raise UsageError(f"{group} holds no model version to set {status}")
    chosen = versions[0] if version is None else next((v for v in versions if v.version == version), None)
    if chosen is None:
        raise UsageError(f"{group} has no version {version} (it has {', '.join(str(v.version) for v in versions)})")
    set_approval(sagemaker, chosen, status)
    console.print(f"{group} version {chosen.version}: {chosen.status} -> {status}", highlight=False)


def _execution_summaries(sagemaker: Any, pipeline: str) -> list[dict[str, Any]]:
    try:
        pages = sagemaker.get_paginator("list_pipeline_executions").paginate(PipelineName=pipeline)
        return [summary for page in pages for summary in page["PipelineExecutionSummaries"]]
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot list executions of {pipeline}: {error}") from None


def _deploy_hint(config: StageConfig) -> str:
    return f"deploy stack {naming.stack_name(config.prefix(), naming.PIPELINES_STACK_SUFFIX)} first"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _duration(start: datetime | None, end: datetime | None) -> str:
    if not start:
        return ""
    seconds = int(((end or _now()) - start).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return "-"

