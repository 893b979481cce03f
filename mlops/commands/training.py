"""`mlops train`, `runs`, `models`, `approve`, `reject`: a network's training pipeline and its
model registry group, in the AWS this shell points at.

Names come from `infra.naming` (the same functions the stacks use) and parameters are checked
against `infra.definitions.training_pipeline` (the same list the pipeline is defined with). boto3's default chain
picks credentials, so `AWS_ENDPOINT_URL` pointing at a moto server works as well as a real account.
Every input is checked before anything starts; bad input is a one-line error with exit code 2.
"""

from __future__ import annotations

import json
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
from mlops.registry import model_versions, set_approval
from mlops.stages import enabled_network, stage_config
from training.networks import Network

DEFAULT_POLL_SECONDS = 20.0

app = typer.Typer()
console = Console()

StageOption = Annotated[
    str | None, typer.Option(help="stage in cdk.json (default: its `stage` context)", show_default=False)
]
WaitOption = Annotated[bool, typer.Option(help="follow the run step by step until it ends")]
PollSecondsOption = Annotated[float, typer.Option(help="seconds between status checks with --wait", min=0.0)]
VersionOption = Annotated[
    int | None, typer.Option(help="model package version (default: the newest)", show_default=False)
]


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
        if error_code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(
                f"pipeline {name} does not exist in region {config.region} of this account "
                f"({error.response['Error'].get('Message', error_code(error))}); "
                f"{_deploy_hint(config)}"
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
        follow(aws, arn, poll_seconds)


def follow(aws: ShellAws, execution_arn: str, poll_seconds: float) -> None:
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
            _poll_until_done(
                watch,
                poll_seconds,
                lambda: [
                    console.print(line, markup=False, highlight=False, soft_wrap=True) for line in watch.changes()
                ],
            )
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
) -> None:
    """List NETWORK's pipeline executions, newest first, with status and duration."""
    config, spec = resolve(network, stage)
    sagemaker = ShellAws(config.region).client("sagemaker")
    pipeline = require_pipeline(sagemaker, config, spec.name)
    summaries = sorted(execution_summaries(sagemaker, pipeline), key=lambda s: s["StartTime"], reverse=True)
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
        table.add_row(
            summary["PipelineExecutionArn"].rsplit("/", 1)[-1],
            status,
            clock(summary["StartTime"]),
            duration(execution.get("CreationTime", summary["StartTime"]), ended),
            escape(note),
        )
    console.print(table)


@app.command()
def models(
    network: NetworkArgument,
    stage: StageOption = None,
    limit: Annotated[int, typer.Option(help="newest versions shown", min=1)] = 10,
) -> None:
    """List the registered versions of NETWORK with their metrics and approval status."""
    config, spec = resolve(network, stage)
    aws = ShellAws(config.region)
    sagemaker = aws.client("sagemaker")
    group = require_group(sagemaker, config, spec.name)
    versions = model_versions(sagemaker, group)
    if not versions:
        console.print(
            f"{group} holds no model yet: a pipeline run registers one when it passes the "
            f"quality gate ({spec.quality_gate.metric} {spec.quality_gate.comparison} "
            f"{spec.quality_gate.threshold})",
            highlight=False,
        )
        return
    s3 = aws.client("s3")
    table = Table(
        title=f"{group} ({spec.quality_gate.metric} {spec.quality_gate.comparison} "
        f"{spec.quality_gate.threshold} to register)"
    )
    for column in (
        "version",
        "approval",
        "created",
        spec.quality_gate.metric,
        "champion then",
        "other metrics",
        "explanations (top)",
    ):
        table.add_column(column, overflow="fold")
    for version in versions[:limit]:
        package = sagemaker.describe_model_package(ModelPackageName=version.arn)
        report, note = registered_report(s3, package, "ModelQuality", "Statistics")
        metrics = _metrics(report) if report else {}
        if report and not metrics:
            note = "the evaluation report holds no metrics"
        gate_value = metrics.pop(spec.quality_gate.metric, None)
        if gate_value is None:
            gate_value = package.get("CustomerMetadataProperties", {}).get("quality_value")
        others = ", ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items())) or note
        explained, why_not = registered_report(s3, package, "Explainability", "Report")
        table.add_row(
            str(version.version),
            version.status,
            clock(package.get("CreationTime")),
            _number(gate_value),
            _champion_then(report),
            escape(others),
            escape(explanation_summary(explained) if explained else why_not),
        )
    console.print(table)


def require_group(sagemaker: Any, config: StageConfig, network: str) -> str:
    group = naming.model_package_group_name(config.prefix(), network)
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if error_code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(
                f"model package group {group} does not exist in region {config.region} of this "
                f"account; {_deploy_hint(config)}"
            ) from None
        raise RunFailed(f"cannot read model package group {group}: {error}") from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach SageMaker in {config.region}: {error}") from None
    return group


def registered_report(s3: Any, package: dict[str, Any], kind: str, field: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON report the version registered as ModelMetrics.<kind>.<field> (ModelQuality.Statistics:
    evaluation.json; Explainability.Report: explanations.json), or None and why there is none."""
    uri = package.get("ModelMetrics", {}).get(kind, {}).get(field, {}).get("S3Uri")
    if not uri:
        return None, f"no {kind} report registered"
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (BotoCoreError, ClientError) as error:
        return None, f"report {uri} unreadable ({error_code(error) if isinstance(error, ClientError) else error})"
    except ValueError:
        return None, f"report {uri} is not JSON"
    return (report, "") if isinstance(report, dict) else (None, f"report {uri} is not a JSON object")


def _metrics(report: dict[str, Any]) -> dict[str, float]:
    """evaluation.json's `{"metrics": {name: {"value": ...}}}`, as numbers; what does not fit is left out."""
    metrics = report.get("metrics")
    found = {}
    for name, entry in metrics.items() if isinstance(metrics, dict) else []:
        try:
            found[name] = float(entry["value"])
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _champion_then(report: dict[str, Any] | None) -> str:
    """The approved champion the candidate was compared with when it was registered."""
    block = (report or {}).get("champion_challenger")
    if not isinstance(block, dict):
        return "-"
    champion = block.get("champion")
    if not isinstance(champion, dict):
        return "none"
    return f"v{champion.get('version')} {_number(champion.get('value'))}"


def explanation_summary(report: dict[str, Any], top: int = 3) -> str:
    """The first entries of each ranking of explanations.json's `summary`, one line each."""
    lines = []
    for ranking in report.get("summary") or []:
        try:
            entries = ", ".join(f"{entry['name']} {float(entry['value']):.3g}" for entry in ranking["top"][:top])
            lines.append(f"{ranking['title']}: {entries}")
        except (KeyError, TypeError, ValueError):
            continue
    return "\n".join(lines) or "the report holds no summary"


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
    sagemaker = ShellAws(config.region).client("sagemaker")
    group = require_group(sagemaker, config, spec.name)
    versions = model_versions(sagemaker, group)
    if not versions:
        raise UsageError(f"{group} holds no model version to set {status}")
    chosen = versions[0] if version is None else next((v for v in versions if v.version == version), None)
    if chosen is None:
        raise UsageError(f"{group} has no version {version} (it has {', '.join(str(v.version) for v in versions)})")
    set_approval(sagemaker, chosen, status)
    console.print(f"{group} version {chosen.version}: {chosen.status} -> {status}", highlight=False)


def _deploy_hint(config: StageConfig) -> str:
    return f"deploy stack {naming.stack_name(config.prefix(), naming.PIPELINES_STACK_SUFFIX)} first"


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return "-"
