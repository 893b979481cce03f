"""The expressions of a SageMaker Pipeline definition, as plain data: step property and parameter
references, `Std:Join`, deploy-time `${Placeholder}`s, and the request parts every job step repeats.

Shared by the training pipeline (infra/pipeline_definition.py) and the drift monitor pipeline
(infra/monitor_definition.py).
"""

from __future__ import annotations

from typing import Any

from infra.config import StageConfig


def get(path: str) -> dict[str, str]:
    return {"Get": path}


def parameter(name: str) -> dict[str, str]:
    return get(f"Parameters.{name}")


def join(*values: Any, on: str = "") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def placeholder(name: str) -> str:
    return "${" + name + "}"


def s3_uri(bucket_placeholder: str, key: str) -> str:
    return f"s3://{placeholder(bucket_placeholder)}/{key}"


def network_config(config: StageConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "EnableNetworkIsolation": config.training.network_isolation,
        # TrainingInstanceCount can be raised at run time, so traffic between instances is
        # always encrypted; with one instance it costs nothing.
        "EnableInterContainerTrafficEncryption": True,
    }
    if config.vpc:
        settings["VpcConfig"] = {"Subnets": list(config.vpc.subnet_ids),
                                 "SecurityGroupIds": list(config.vpc.security_group_ids)}
    return settings


def processing_input(name: str, source: Any, local_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {"S3Uri": source, "LocalPath": local_path, "S3DataType": "S3Prefix",
                    "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
                    "S3CompressionType": "None"},
    }
