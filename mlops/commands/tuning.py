"""`mlops tune` and `mlops trials`: a network's tuning pipelines and the trials of its tuning jobs,
in the AWS this shell points at (a real account, or a moto server through AWS_ENDPOINT_URL).

`mlops tune` starts `<prefix>-<network>-tuning`, or with `--warm-start JOB` the warm-start
pipeline, after checking the parent as SageMaker will (it exists, it has finished, it optimized the
same metric over the same hyperparameter names). `mlops trials` lists the trials of the network's
newest tuning job (or the one named): ListTrainingJobsForHyperParameterTuningJob, or where the
endpoint lacks it (moto does), ListTrainingJobs and each trial's DescribeTrainingJob, whose
TuningJobArn names the tuning job that launched it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from rich.markup import escape
from rich.table import Table

from infra import naming
from infra.definitions.tuning_pipeline import tuning_parameters
from infra.definitions.tuning_step import tuning_step
from mlops.aws import ShellAws
from mlops.commands import NetworkArgument
from mlops.commands.training import (
    DEFAULT_POLL_SECONDS,
    PollSecondsOption,
    StageOption,
    WaitOption,
    console,
    follow_execution,
    resolve,
)
from mlops.errors import RunFailed, UsageError
from mlops.local.tuning_search import warm_start_problem
from mlops.param_option import parse_parameters
from mlops.pipeline_executions import clock, error_code
from training.networks import Network

app = typer.Typer()


@app.command()
def tune(
    network: NetworkArgument,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="a static hyperparameter (epochs=1) or pipeline parameter (MaxTrainingJobs=8); repeatable",
            show_default=False,
        ),
    ] = None,
    warm_start: Annotated[
        str | None,
        typer.Option(help="search from this finished tuning job's trials (its hyperparameter names must match)"),
    ] = None,
    wait: WaitOption = False,
    stage: StageOption = None,
    poll_seconds: PollSecondsOption = DEFAULT_POLL_SECONDS,
) -> None:
    """Start NETWORK's tuning pipeline: a tuning job, then its best trial through the quality gate."""
    config, spec = resolve(network, stage)
    warm = warm_start is not None
    parameters = tuning_parameters(config, spec.name, warm_start=warm)
    values = parse_parameters(config, spec.name, param or [], parameters)
    aws = ShellAws(config.region)
    sagemaker = aws.client("sagemaker")
    pipeline = (naming.warm_start_pipeline_name if warm else naming.tuning_pipeline_name)(config.prefix(), spec.name)
    if warm_start is not None:
        _check_parent(sagemaker, tuning_step(config, spec, parameters, warm_start=True)["Arguments"], warm_start)
        values["WarmStartTuningJob"] = warm_start
    try:
        sagemaker.describe_pipeline(PipelineName=pipeline)
        started = sagemaker.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDescription="started by mlops tune",
            PipelineParameters=[{"Name": name, "Value": str(value)} for name, value in values.items()],
        )
    except ClientError as error:
        if error_code(error) in ("ResourceNotFound", "ValidationException") and "does not exist" in str(error):
            raise UsageError(f"pipeline {pipeline} does not exist in region {config.region} of this account") from None
        raise RunFailed(f"cannot start pipeline {pipeline}: {error}") from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach SageMaker in {config.region}: {error}") from None
    given = ", ".join(f"{name}={value}" for name, value in values.items()) or "stage defaults"
    console.print(f"started {pipeline} ({given})\n  {started['PipelineExecutionArn']}", highlight=False, soft_wrap=True)
    if wait:
        follow_execution(aws, started["PipelineExecutionArn"], poll_seconds)


def _check_parent(sagemaker: Any, request: dict[str, Any], parent: str) -> None:
    try:
        described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=parent)
    except ClientError as error:
        raise UsageError(
            f"--warm-start {parent}: {error.response['Error'].get('Message', error_code(error))}"
        ) from None
    problem = warm_start_problem(request, described)
    if problem:
        raise UsageError(f"--warm-start {parent}: {problem}")


@app.command()
def trials(
    network: NetworkArgument,
    tuning_job: Annotated[
        str | None, typer.Option(help="the tuning job (default: the network's newest)", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of a table")] = False,
    stage: StageOption = None,
) -> None:
    """List the trials of NETWORK's tuning job: their hyperparameters, status and objective."""
    config, spec = resolve(network, stage)
    aws = ShellAws(config.region)
    sagemaker = aws.client("sagemaker")
    described = _tuning_job(sagemaker, spec, tuning_job)
    rows = _trials(aws, described)
    best = (described.get("BestTrainingJob") or {}).get("TrainingJobName")
    objective = described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    rows.sort(
        key=lambda row: (
            row["objective"] is None,
            -(row["objective"] or 0) if objective["Type"] == "Maximize" else row["objective"] or 0,
        )
    )
    if as_json:
        document = {
            "tuning_job": described["HyperParameterTuningJobName"],
            "status": described["HyperParameterTuningJobStatus"],
            "objective": {"metric": objective["MetricName"], "type": objective["Type"]},
            "best_trial": best,
            "trials": rows,
        }
        typer.echo(json.dumps(document, indent=2, default=str))
        return
    table = Table(
        title=f"{described['HyperParameterTuningJobName']} ({described['HyperParameterTuningJobStatus']}): "
        f"{objective['Type'].lower()} {objective['MetricName']}"
    )
    for column in ("trial", "status", objective["MetricName"], "hyperparameters", "started", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            ("★ " if row["name"] == best else "") + row["name"],
            row["status"],
            "-" if row["objective"] is None else f"{row['objective']:.4g}",
            escape(" ".join(f"{name}={value}" for name, value in row["hyperparameters"].items())),
            clock(row["started"]),
            escape(row["failure_reason"] or ""),
        )
    console.print(table)


def _tuning_job(sagemaker: Any, network: Network, name: str | None) -> dict[str, Any]:
    """The named tuning job, or the newest whose trials write the network's models."""
    try:
        if name is not None:
            return sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        pages = sagemaker.get_paginator("list_hyper_parameter_tuning_jobs").paginate(
            SortBy="CreationTime", SortOrder="Descending"
        )
        for page in pages:
            for summary in page["HyperParameterTuningJobSummaries"]:
                described = sagemaker.describe_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName=summary["HyperParameterTuningJobName"]
                )
                output = (described.get("TrainingJobDefinition") or {}).get("OutputDataConfig", {})
                if output.get("S3OutputPath", "").endswith(f"/models/{network.name}/"):
                    return described
    except ClientError as error:
        if error_code(error) in ("ResourceNotFound", "ValidationException"):
            raise UsageError(f"tuning job {name}: {error.response['Error'].get('Message', '')}") from None
        raise RunFailed(f"cannot read tuning jobs: {error}") from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach SageMaker: {error}") from None
    raise UsageError(f"no tuning job of {network.name} in this account and region yet: mlops tune {network.name}")


def _trials(aws: ShellAws, described: dict[str, Any]) -> list[dict[str, Any]]:
    """Each trial: name, status, tuned values, objective, start and failure reason."""
    name = described["HyperParameterTuningJobName"]
    metric = described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    once = aws.client("sagemaker", config=Config(retries={"total_max_attempts": 1}))
    try:
        pages = once.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name
        )
        return [_summary_row(summary) for page in pages for summary in page["TrainingJobSummaries"]]
    except ClientError as error:
        # moto answers an action it lacks with an error page, which botocore reports as code "500".
        if not (error_code(error).isdigit() or error_code(error).startswith("NotImplemented")):
            raise RunFailed(f"cannot list the trials of {name}: {error}") from None
    sagemaker = aws.client("sagemaker")
    ranges = described["HyperParameterTuningJobConfig"].get("ParameterRanges", {})
    tuned = {item["Name"] for kind in ranges.values() for item in kind}
    rows = []
    for page in sagemaker.get_paginator("list_training_jobs").paginate(NameContains=name):
        for summary in page["TrainingJobSummaries"]:
            job = sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            if job.get("TuningJobArn") != described["HyperParameterTuningJobArn"]:
                continue
            values = {item["MetricName"]: item["Value"] for item in job.get("FinalMetricDataList", [])}
            rows.append(
                {
                    "name": job["TrainingJobName"],
                    "status": job["TrainingJobStatus"],
                    "objective": values.get(metric),
                    "hyperparameters": {k: v for k, v in job.get("HyperParameters", {}).items() if k in tuned},
                    "started": job.get("TrainingStartTime"),
                    "failure_reason": job.get("FailureReason"),
                }
            )
    return rows


def _summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return {
        "name": summary["TrainingJobName"],
        "status": summary["TrainingJobStatus"],
        "objective": objective.get("Value"),
        "hyperparameters": summary.get("TunedHyperParameters", {}),
        "started": summary.get("TrainingStartTime"),
        "failure_reason": summary.get("FailureReason"),
    }
