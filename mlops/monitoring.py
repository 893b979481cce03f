"""A network's drift monitor as the CLI sees it: which version it watches, its runs, its reports.

    parameters = monitored_version_parameters(sagemaker, model_arn)   # what `mlops deploy` passes the endpoint stack
    model, baseline = monitored_version(cloudformation, config, "cnn") # what the deployed stack watches
    reports = drift_reports(s3, bucket, "cnn")                          # newest first

The served version's model and baseline are the endpoint stack's parameters
(infra/constructs/drift_monitor.py): set from the model package at deploy time, read back from
CloudFormation, so the CLI and the schedule always name the same version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra import naming
from infra.config import StageConfig
from infra.definitions import monitor_pipeline
from mlops.errors import RunFailed, UsageError

ARTIFACTS_OUTPUT = "ArtifactsBucketName"
MODEL_PARAMETER = monitor_pipeline.MONITORED_MODEL_PARAMETER
BASELINE_PARAMETER = monitor_pipeline.MONITORED_BASELINE_PARAMETER


@dataclass(frozen=True)
class DriftReport:
    uri: str
    written: datetime
    report: dict[str, Any]


def monitored_version_parameters(sagemaker: Any, model_arn: str) -> dict[str, str]:
    """The endpoint stack's monitor parameters for the version `model_arn`: its model.tar.gz and the
    baseline registered as its DriftCheckBaselines (empty for a version registered without one)."""
    try:
        package = sagemaker.describe_model_package(ModelPackageName=model_arn)
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot read {model_arn}: {error}") from None
    baselines = package.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).get("Statistics", {})
    return {
        MODEL_PARAMETER: package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
        BASELINE_PARAMETER: baselines.get("S3Uri", ""),
    }


def stack_values(cloudformation: Any, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """(parameters, outputs) of a deployed stack; UsageError if it is not deployed."""
    try:
        (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise UsageError(
            f"stack {stack} is not deployed in this account and region ({error.response['Error'].get('Message', '')})"
        ) from None
    except BotoCoreError as error:
        raise RunFailed(f"cannot reach CloudFormation: {error}") from None
    return (
        {item["ParameterKey"]: item.get("ParameterValue", "") for item in described.get("Parameters", [])},
        {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])},
    )


def monitored_version(cloudformation: Any, config: StageConfig, network: str) -> tuple[str, str]:
    """(model.tar.gz, baseline.json) of the version the network's endpoint serves."""
    stack = naming.endpoint_stack_name(config.prefix(), network)
    parameters, _ = stack_values(cloudformation, stack)
    model, baseline = parameters.get(MODEL_PARAMETER, ""), parameters.get(BASELINE_PARAMETER, "")
    if not model:
        raise UsageError(
            f"stack {stack} has no drift monitor (stage {config.name} captures no traffic) "
            "or was deployed without mlops deploy"
        )
    if not baseline:
        raise UsageError(
            f"the version {stack} serves has no drift baseline (registered before the Evaluate "
            "step wrote one): train and deploy a new version"
        )
    return model, baseline


def artifacts_bucket(cloudformation: Any, config: StageConfig) -> str:
    _, outputs = stack_values(cloudformation, naming.stack_name(config.prefix(), naming.STORAGE_STACK_SUFFIX))
    return outputs[ARTIFACTS_OUTPUT]


def monitor_parameters(
    model: str, baseline: str, window_start: str = "", window_end: str = "", window_minutes: int | None = None
) -> dict[str, str]:
    """StartPipelineExecution's parameters of a monitor run (empty window values: the pipeline's defaults)."""
    values = {
        monitor_pipeline.MODEL_DATA_URL: model,
        monitor_pipeline.BASELINE_URI: baseline,
        monitor_pipeline.WINDOW_START: window_start,
        monitor_pipeline.WINDOW_END: window_end,
    }
    if window_minutes is not None:
        values[monitor_pipeline.WINDOW_MINUTES] = str(window_minutes)
    return {
        name: value
        for name, value in values.items()
        if value or name in (monitor_pipeline.MODEL_DATA_URL, monitor_pipeline.BASELINE_URI)
    }


def drift_reports(s3: Any, bucket: str, network: str, limit: int = 10) -> list[DriftReport]:
    """The newest `limit` drift.json reports of the network's monitor runs, newest first."""
    prefix = monitor_pipeline.reports_key_prefix(network)
    try:
        found = [
            item
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if item["Key"].endswith("/" + monitor_pipeline.DRIFT_FILE)
        ]
        found = sorted(found, key=lambda item: item["LastModified"], reverse=True)[:limit]
        return [
            DriftReport(
                f"s3://{bucket}/{item['Key']}",
                item["LastModified"],
                json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()),
            )
            for item in found
        ]
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot read the drift reports under s3://{bucket}/{prefix}: {error}") from None
