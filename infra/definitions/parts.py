"""What the steps of a pipeline definition are built from, shared by the modules that build them
(`infra.definitions.training_pipeline`, `infra.definitions.champion_step`,
`infra.definitions.monitor_pipeline`): the deploy-time placeholders, the definition language's
expressions (Get, Std:Join), S3 URIs, a processing job's input, output and settings, the jobs'
network settings and retry policies. Plain data, no SDK: see `infra.definitions.training_pipeline`.
"""

from __future__ import annotations

from typing import Any

from infra.config import StageConfig

# Deploy-time values, filled in by `Fn::Sub` (construct) or `substitute_placeholders` (local runs).
ARTIFACTS_BUCKET = "ArtifactsBucket"
DATA_BUCKET = "DataBucket"
EXECUTION_ROLE_ARN = "ExecutionRoleArn"
KEY_ARN = "KeyArn"
SOURCE_BUNDLE_URI = "SourceBundleUri"
TRAINING_IMAGE_URI = "TrainingImageUri"
INFERENCE_IMAGE_URI = "InferenceImageUri"
PLACEHOLDERS = (
    ARTIFACTS_BUCKET,
    DATA_BUCKET,
    EXECUTION_ROLE_ARN,
    KEY_ARN,
    SOURCE_BUNDLE_URI,
    TRAINING_IMAGE_URI,
    INFERENCE_IMAGE_URI,
)

PROCESSING_ROOT = "/opt/ml/processing"

# Execution-wide values the pipeline service resolves at run time.
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}

# Retried by the pipeline service: its own transient faults, and SageMaker jobs that could
# not get capacity or died of an internal error (spot capacity included).
SERVICE_RETRY = {
    "ExceptionType": ["Step.SERVICE_FAULT", "Step.THROTTLING"],
    "IntervalSeconds": 10,
    "BackoffRate": 2.0,
    "MaxAttempts": 5,
}
JOB_RETRY = {
    "ExceptionType": ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR"],
    "IntervalSeconds": 60,
    "BackoffRate": 2.0,
    "MaxAttempts": 3,
}


def get(path: str) -> dict[str, str]:
    return {"Get": path}


def parameter(name: str) -> dict[str, str]:
    return get(f"Parameters.{name}")


def join(*values: Any, on: str = "") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def placeholder(name: str) -> str:
    return "${" + name + "}"


def s3(bucket_placeholder: str, key: str) -> str:
    return f"s3://{placeholder(bucket_placeholder)}/{key}"


def processing_input(name: str, source: Any, local_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {
            "S3Uri": source,
            "LocalPath": local_path,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
            "S3CompressionType": "None",
        },
    }


def network_config(config: StageConfig, *, isolated: bool | None = None) -> dict[str, Any]:
    """A job's network settings: the stage's isolation unless `isolated` says otherwise."""
    settings: dict[str, Any] = {
        "EnableNetworkIsolation": config.training.network_isolation if isolated is None else isolated,
        # TrainingInstanceCount can be raised at run time, so traffic between instances is
        # always encrypted; with one instance it costs nothing.
        "EnableInterContainerTrafficEncryption": True,
    }
    if config.vpc:
        settings["VpcConfig"] = {
            "Subnets": list(config.vpc.subnet_ids),
            "SecurityGroupIds": list(config.vpc.security_group_ids),
        }
    return settings


def processing_outputs(name: str, s3_uri: Any, local_path: str) -> dict[str, Any]:
    """A processing job's ProcessingOutputConfig: one output, uploaded when the job ends, encrypted
    with the project key."""
    return {
        "Outputs": [
            {
                "OutputName": name,
                "AppManaged": False,
                "S3Output": {"S3Uri": s3_uri, "LocalPath": local_path, "S3UploadMode": "EndOfJob"},
            }
        ],
        "KmsKeyId": placeholder(KEY_ARN),
    }


def processing_job(
    config: StageConfig, instance_type: str, *, max_seconds: int, isolated: bool | None = None
) -> dict[str, Any]:
    """What every processing job of the project runs with: one `instance_type` instance whose volume
    the project key encrypts, a time limit, the execution role, and the stage's network settings
    (its isolation unless `isolated` says otherwise)."""
    return {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceType": instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": config.training.volume_size_gb,
                "VolumeKmsKeyId": placeholder(KEY_ARN),
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_seconds},
        "RoleArn": placeholder(EXECUTION_ROLE_ARN),
        "NetworkConfig": network_config(config, isolated=isolated),
    }
