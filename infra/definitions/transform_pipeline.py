"""The batch transform pipeline of one network, as plain data in the pipeline definition schema.

    ResolveModel (Processing)  processing/find_model_version.py: the approved model version to use
                               (ModelVersion, or the newest Approved when 0) -> model.json
    CreateModel (Model)        CreateModel from that version's model package, network-isolated
    RecordFormat (Condition)   ContentType is text/csv ?
      |-- TransformCsv (Transform)        CreateTransformJob of the CSV record format
      '-- TransformJsonLines (Transform)  CreateTransformJob of the JSON Lines record format
    MonitorBatchInput (Processing)   with `batch.monitor_drift`: processing/monitor.py on the batch's
    PublishBatchDrift (Processing)   inputs against the version's baseline; its numbers as metrics

The version is resolved when a run starts, never at synth: a newly approved version needs no
deploy. Records and their id: training/batch_formats.py (the Transform step's DataProcessing). The
input is an S3 prefix that must end with `/`, or SageMaker also reads the keys beside it
(`batch/test` matches `batch/test_small/...`): the parameter's default does, and `mlops transform`
refuses one that does not. Outputs go to `<OutputDataUri><execution id>/<object>.out`.

Like `infra.definitions.training_pipeline`: no SDK, sorted keys, `${Placeholder}`s filled by `Fn::Sub`.
"""

from __future__ import annotations

import json
from typing import Any

from infra.config import StageConfig
from infra.definitions.monitor_pipeline import DRIFT_OUTPUT, MONITOR_MODULE, publish_command
from infra.definitions.parameters import PipelineParameter
from infra.definitions.parts import (
    ARTIFACTS_BUCKET,
    DATA_BUCKET,
    EXECUTION_ID,
    EXECUTION_ROLE_ARN,
    JOB_RETRY,
    KEY_ARN,
    PROCESSING_ROOT,
    SERVICE_RETRY,
    TRAINING_IMAGE_URI,
    bundle_command,
    code_input,
    get,
    join,
    parameter,
    placeholder,
    processing_input,
    processing_job,
    processing_outputs,
    s3,
)
from infra.definitions.training_pipeline import SCHEMA_VERSION
from training.batch_formats import CSV, JSON_LINES, RECORD_FORMATS, RecordFormat
from training.networks import Network, get_network

RESOLVE_STEP = "ResolveModel"
MODEL_STEP = "CreateModel"
FORMAT_STEP = "RecordFormat"
TRANSFORM_STEPS = {CSV: "TransformCsv", JSON_LINES: "TransformJsonLines"}
MONITOR_STEP = "MonitorBatchInput"
PUBLISH_STEP = "PublishBatchDrift"

MODEL_VERSION = "ModelVersion"
INPUT_DATA_URI = "InputDataUri"
OUTPUT_DATA_URI = "OutputDataUri"
CONTENT_TYPE = "ContentType"
INSTANCE_TYPE = "TransformInstanceType"
INSTANCE_COUNT = "TransformInstanceCount"

RESOLVE_MODULE = "processing.find_model_version"
MODEL_OUTPUT = "model"
MODEL_FILE = "model.json"
MODEL_REPORT = "ModelVersion"
# Where a run's records are read from unless it is given others (`mlops transform` uploads to runs/).
INPUT_FOLDER = "batch/input/"
RUNS_FOLDER = "batch/runs/"
OUTPUT_PREFIX = "batch-transform/"
RESOLVE_MAX_SECONDS = 1800
# How long the container may take for one mini-batch, and how often SageMaker retries it.
INVOCATION_TIMEOUT_SECONDS = 600
INVOCATION_RETRIES = 1


def input_prefix(network: str) -> str:
    return f"{network}/{INPUT_FOLDER}"


def runs_prefix(network: str) -> str:
    return f"{network}/{RUNS_FOLDER}"


def output_prefix(network: str) -> str:
    return f"{OUTPUT_PREFIX}{network}/"


def work_prefix(network: str) -> str:
    """Where a run's own files (model.json, the drift report) go: under the pipelines prefix."""
    return f"pipelines/{network}/transform/"


def transform_parameters(config: StageConfig, network: str) -> tuple[PipelineParameter, ...]:
    return (
        # 0: the newest Approved version when the run starts.
        PipelineParameter(MODEL_VERSION, "Integer", 0),
        PipelineParameter(INPUT_DATA_URI, "String", s3(DATA_BUCKET, input_prefix(network))),
        PipelineParameter(OUTPUT_DATA_URI, "String", s3(ARTIFACTS_BUCKET, output_prefix(network))),
        PipelineParameter(CONTENT_TYPE, "String", JSON_LINES, enum_values=tuple(RECORD_FORMATS)),
        PipelineParameter(INSTANCE_TYPE, "String", config.transform_instance_type(network)),
        PipelineParameter(INSTANCE_COUNT, "Integer", config.batch.instance_count),
    )


def transform_definition(config: StageConfig, network_name: str) -> dict[str, Any]:
    network = get_network(network_name)
    steps = [
        _resolve_step(config, network),
        _model_step(config),
        {
            "Name": FORMAT_STEP,
            "Type": "Condition",
            "Arguments": {
                "Conditions": [{"Type": "Equals", "LeftValue": parameter(CONTENT_TYPE), "RightValue": CSV}],
                "IfSteps": [_transform_step(config, RECORD_FORMATS[CSV])],
                "ElseSteps": [_transform_step(config, RECORD_FORMATS[JSON_LINES])],
            },
        },
    ]
    if config.batch.monitor_drift:
        steps += [_monitor_step(config, network), _publish_step(config, network)]
    return {
        "Version": SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": [item.to_definition() for item in transform_parameters(config, network.name)],
        "Steps": steps,
    }


def transform_definition_body(config: StageConfig, network_name: str) -> str:
    return json.dumps(transform_definition(config, network_name), sort_keys=True, separators=(",", ":"))


def model_value(path: str) -> dict[str, Any]:
    """A value of the ResolveModel step's model.json."""
    return {"Std:JsonGet": {"PropertyFile": get(f"Steps.{RESOLVE_STEP}.PropertyFiles.{MODEL_REPORT}"), "Path": path}}


def resolve_command(config: StageConfig, network: Network) -> str:
    # Run-time values come through the environment ($NAME, never ${NAME}: Fn::Sub would take it).
    return bundle_command(
        f"python3 -m {RESOLVE_MODULE} --group {config.served_model_package_group(network.name)} "
        f'--region {config.region} --version "$MODEL_VERSION" --output-dir {PROCESSING_ROOT}/{MODEL_OUTPUT}'
    )


def _resolve_step(config: StageConfig, network: Network) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "AppSpecification": {
            # The training image: Python and boto3, which processing/find_model_version.py needs.
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", resolve_command(config, network)],
        },
        "Environment": {"MODEL_VERSION": join(parameter(MODEL_VERSION))},
        "ProcessingInputs": [code_input()],
        "ProcessingOutputConfig": processing_outputs(
            MODEL_OUTPUT,
            join(s3(ARTIFACTS_BUCKET, work_prefix(network.name)), EXECUTION_ID, f"/{MODEL_OUTPUT}"),
            f"{PROCESSING_ROOT}/{MODEL_OUTPUT}",
        ),
        # It calls the model registry: never isolated (in a VPC it needs the SageMaker API endpoint).
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=RESOLVE_MAX_SECONDS, isolated=False
        ),
    }
    return {
        "Name": RESOLVE_STEP,
        "Type": "Processing",
        "Arguments": arguments,
        "PropertyFiles": [{"PropertyFileName": MODEL_REPORT, "OutputName": MODEL_OUTPUT, "FilePath": MODEL_FILE}],
        "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
    }


def _model_step(config: StageConfig) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "ExecutionRoleArn": placeholder(EXECUTION_ROLE_ARN),
        # The registered package names its image and model: the version is served as registered.
        "PrimaryContainer": {"ModelPackageName": model_value("model_package_arn")},
        # The container reaches no network, not even S3: SageMaker hands it the model and the
        # records; code/lib holds what the handlers import (docs/serving.md).
        "EnableNetworkIsolation": True,
    }
    if config.vpc:
        arguments["VpcConfig"] = {
            "Subnets": list(config.vpc.subnet_ids),
            "SecurityGroupIds": list(config.vpc.security_group_ids),
        }
    # SageMaker job retry policies do not apply to creating a model.
    return {"Name": MODEL_STEP, "Type": "Model", "Arguments": arguments, "RetryPolicies": [SERVICE_RETRY]}


def _transform_step(config: StageConfig, record_format: RecordFormat) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "ModelName": get(f"Steps.{MODEL_STEP}.ModelName"),
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": config.batch.max_payload_mb,
        "MaxConcurrentTransforms": config.batch.max_concurrent_transforms,
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_SECONDS,
            "InvocationsMaxRetries": INVOCATION_RETRIES,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": parameter(INPUT_DATA_URI)}},
            "ContentType": record_format.content_type,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": join(parameter(OUTPUT_DATA_URI), EXECUTION_ID, "/"),
            "Accept": record_format.accept,
            "AssembleWith": "Line",
            "KmsKeyId": placeholder(KEY_ARN),
        },
        "TransformResources": {
            "InstanceType": parameter(INSTANCE_TYPE),
            "InstanceCount": parameter(INSTANCE_COUNT),
            "VolumeKmsKeyId": placeholder(KEY_ARN),
        },
        "DataProcessing": record_format.data_processing(),
    }
    return {
        "Name": TRANSFORM_STEPS[record_format.content_type],
        "Type": "Transform",
        "Arguments": arguments,
        "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
    }


def monitor_command(config: StageConfig, network: Network) -> str:
    model, baseline, batch, output = (
        f"{PROCESSING_ROOT}/{name}" for name in ("model", "baseline", "batch", DRIFT_OUTPUT)
    )
    return bundle_command(
        f"python3 -m {MONITOR_MODULE} --network {network.name} --model-dir {model} "
        f'--model-uri "$MODEL_DATA_URL" --baseline {baseline}/baseline.json --batch-dir {batch} '
        f'--content-type "$CONTENT_TYPE" --output-dir {output} --alpha {config.monitor.alpha}',
        before=f"tar -xzf {model}/model.tar.gz -C {model}; ",
    )


def _monitor_step(config: StageConfig, network: Network) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "AppSpecification": {
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", monitor_command(config, network)],
        },
        "Environment": {"MODEL_DATA_URL": model_value("model_data_url"), "CONTENT_TYPE": parameter(CONTENT_TYPE)},
        "ProcessingInputs": [
            processing_input("model", model_value("model_data_url"), f"{PROCESSING_ROOT}/model"),
            processing_input("baseline", model_value("baseline_uri"), f"{PROCESSING_ROOT}/baseline"),
            processing_input("batch", parameter(INPUT_DATA_URI), f"{PROCESSING_ROOT}/batch"),
            code_input(),
        ],
        "ProcessingOutputConfig": processing_outputs(
            DRIFT_OUTPUT,
            join(s3(ARTIFACTS_BUCKET, work_prefix(network.name)), EXECUTION_ID, f"/{DRIFT_OUTPUT}"),
            f"{PROCESSING_ROOT}/{DRIFT_OUTPUT}",
        ),
        # It runs the served handler and TensorFlow on the batch's records: the stage's isolation.
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=config.training.max_run_seconds
        ),
    }
    return {
        "Name": MONITOR_STEP,
        "Type": "Processing",
        "Arguments": arguments,
        "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
    }


def _publish_step(config: StageConfig, network: Network) -> dict[str, Any]:
    report = get(f"Steps.{MONITOR_STEP}.ProcessingOutputConfig.Outputs['{DRIFT_OUTPUT}'].S3Output.S3Uri")
    arguments: dict[str, Any] = {
        "AppSpecification": {
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            # The monitor pipeline's PublishMetrics command: the same report, the same metrics.
            "ContainerEntrypoint": ["/bin/bash", "-c", publish_command(config)],
        },
        "ProcessingInputs": [
            processing_input(DRIFT_OUTPUT, report, f"{PROCESSING_ROOT}/{DRIFT_OUTPUT}"),
            code_input(),
        ],
        # It calls CloudWatch: never isolated.
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=RESOLVE_MAX_SECONDS, isolated=False
        ),
    }
    return {
        "Name": PUBLISH_STEP,
        "Type": "Processing",
        "Arguments": arguments,
        "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
    }
