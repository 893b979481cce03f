"""`mlops models`, `approve`, `reject`: a network's model registry group, in the AWS this shell points at.

`approve` and `reject` change what may be served: they say which version and what changes, and ask
first (`--yes` skips the question).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra import naming
from infra.config import StageConfig
from mlops.aws import ShellAws
from mlops.cli_output import JsonOption, YesOption, confirm, print_json
from mlops.commands import NetworkArgument
from mlops.commands.training import StageOption, deploy_hint, resolve
from mlops.errors import RunFailed, UsageError
from mlops.pipeline_executions import clock, error_code
from mlops.registry import model_versions, set_approval

app = typer.Typer()
console = Console()

VersionOption = Annotated[
    int | None, typer.Option(help="model package version (default: the newest)", show_default=False)
]


@app.command()
def models(
    network: NetworkArgument,
    stage: StageOption = None,
    limit: Annotated[int, typer.Option(help="newest versions shown", min=1)] = 10,
    as_json: JsonOption = False,
) -> None:
    """List the registered versions of NETWORK with their metrics and approval status."""
    config, spec = resolve(network, stage)
    aws = ShellAws(config.region)
    sagemaker = aws.client("sagemaker")
    group = require_group(sagemaker, config, spec.name)
    gate = spec.quality_gate
    s3 = aws.client("s3")
    rows = [
        _version_row(sagemaker, s3, version.arn, gate.metric) for version in model_versions(sagemaker, group)[:limit]
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(
            f"{group} holds no model yet: a pipeline run registers one when it passes the "
            f"quality gate ({gate.metric} {gate.comparison} {gate.threshold})",
            highlight=False,
        )
        return
    table = Table(title=f"{group} ({gate.metric} {gate.comparison} {gate.threshold} to register)")
    for column in (
        "version",
        "approval",
        "created",
        gate.metric,
        "champion then",
        "other metrics",
        "explanations (top)",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        champion = row["champion_then"]
        others = ", ".join(f"{name}={value:.4g}" for name, value in sorted(row["metrics"].items()))
        table.add_row(
            str(row["version"]),
            row["approval"],
            clock(row["created"]),
            _number(row["quality_value"]),
            "-" if champion is None else champion.get("summary", "none"),
            escape(others or row["note"]),
            escape(row["explanations"]),
        )
    console.print(table)


def _version_row(sagemaker: Any, s3: Any, arn: str, gate_metric: str) -> dict[str, Any]:
    """One version as `models` shows it (and `--json` prints it)."""
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    report, note = registered_report(s3, package, "ModelQuality", "Statistics")
    metrics = _metrics(report) if report else {}
    if report and not metrics:
        note = "the evaluation report holds no metrics"
    gate_value = metrics.pop(gate_metric, None)
    if gate_value is None:
        gate_value = package.get("CustomerMetadataProperties", {}).get("quality_value")
    explained, why_not = registered_report(s3, package, "Explainability", "Report")
    return {
        "version": package.get("ModelPackageVersion"),
        "arn": arn,
        "approval": package.get("ModelApprovalStatus"),
        "created": package.get("CreationTime"),
        "quality_metric": gate_metric,
        "quality_value": gate_value,
        "champion_then": _champion_then(report),
        "metrics": metrics,
        "note": note,
        "explanations": explanation_summary(explained) if explained else why_not,
    }


def require_group(sagemaker: Any, config: StageConfig, network: str) -> str:
    group = naming.model_package_group_name(config.prefix(), network)
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if error_code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(
                f"model package group {group} does not exist in region {config.region} of this "
                f"account; {deploy_hint(config)}"
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


def _champion_then(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The approved champion the candidate was compared with when it was registered: its version
    and value (`summary` as the table shows it), {} for none, None when the report does not say."""
    block = (report or {}).get("champion_challenger")
    if not isinstance(block, dict):
        return None
    champion = block.get("champion")
    if not isinstance(champion, dict):
        return {"summary": "none"}
    version, value = champion.get("version"), champion.get("value")
    return {"version": version, "value": value, "summary": f"v{version} {_number(value)}"}


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
def approve(
    network: NetworkArgument, version: VersionOption = None, stage: StageOption = None, yes: YesOption = False
) -> None:
    """Approve a registered version of NETWORK (default: the newest) for deployment."""
    _set_approval(network, version, stage, "Approved", yes)


@app.command()
def reject(
    network: NetworkArgument, version: VersionOption = None, stage: StageOption = None, yes: YesOption = False
) -> None:
    """Reject a registered version of NETWORK (default: the newest)."""
    _set_approval(network, version, stage, "Rejected", yes)


def _set_approval(network: str, version: int | None, stage: str | None, status: str, yes: bool) -> None:
    config, spec = resolve(network, stage)
    sagemaker = ShellAws(config.region).client("sagemaker")
    group = require_group(sagemaker, config, spec.name)
    versions = model_versions(sagemaker, group)
    if not versions:
        raise UsageError(f"{group} holds no model version to set {status}")
    chosen = versions[0] if version is None else next((v for v in versions if v.version == version), None)
    if chosen is None:
        raise UsageError(f"{group} has no version {version} (it has {', '.join(str(v.version) for v in versions)})")
    if chosen.status == status:
        console.print(f"{group} version {chosen.version} is {status} already: nothing changed", highlight=False)
        return
    confirm(f"set {group} version {chosen.version} {status} (it is {chosen.status})", yes)
    set_approval(sagemaker, chosen, status)
    console.print(f"{group} version {chosen.version}: {chosen.status} -> {status}", highlight=False)


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return "-"
