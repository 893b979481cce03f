"""The drift monitor pipeline of one network, as plain data in the pipeline definition schema.

    CollectCaptures (Processing)  processing/collect_captures.py: the capture files of the window's
                                  hour folders and window.json -> capture-windows/<network>/<execution>
    Monitor (Processing)          processing/monitor.py on those captures, against the served model
                                  version's baseline -> drift.json, drift.png
    PublishMetrics (Processing)   processing/publish_drift.py: drift.json's numbers as CloudWatch
                                  metrics (DriftScore, ...) for the drift alarm

The Monitor runs the served model's handler and TensorFlow on traffic the endpoint was sent, so it
takes the stage's network isolation, as the Evaluate step does: it calls no AWS service, and
SageMaker moves its inputs and outputs. The two steps around it only list, copy and publish,
with a network whatever the stage's setting (in a VPC they need the S3 and CloudWatch endpoints).
A step between two jobs is needed on each side because an isolated job cannot list S3 and the
window's hour folders are known only when the run starts.

Like `infra.definitions.training_pipeline`: no SDK, sorted keys, `${Placeholder}`s filled in with `Fn::Sub`.
Which model version is served is known when it is deployed, not here: its model and baseline
arrive as the parameters `ModelDataUrl` and `BaselineUri`, which the endpoint stack's schedule
passes (infra/constructs/drift_monitor.py) and `mlops monitor` reads from that stack.
"""

from __future__ import annotations

import json
from typing import Any

from infra import naming
from infra.config import StageConfig
from infra.definitions.parameters import PipelineParameter
from infra.definitions.parts import (
    bundle_command,
    code_input,
    get,
    join,
    parameter,
    placeholder,
    processing_input,
    processing_job,
    processing_outputs,
)
from infra.definitions.parts import s3 as s3_uri
from infra.definitions.training_pipeline import (
    ARTIFACTS_BUCKET,
    EXECUTION_ID,
    JOB_RETRY,
    PROCESSING_ROOT,
    SCHEMA_VERSION,
    SERVICE_RETRY,
    TRAINING_IMAGE_URI,
)
from training.networks import Network, get_network

COLLECT_STEP = "CollectCaptures"
MONITOR_STEP = "Monitor"
PUBLISH_STEP = "PublishMetrics"
COLLECT_MODULE = "processing.collect_captures"
MONITOR_MODULE = "processing.monitor"
PUBLISH_MODULE = "processing.publish_drift"
CAPTURES_OUTPUT = "captures"
DRIFT_OUTPUT = "drift"
DRIFT_REPORT = "DriftReport"
DRIFT_FILE = "drift.json"
MODEL_DATA_URL = "ModelDataUrl"
BASELINE_URI = "BaselineUri"
WINDOW_START = "WindowStart"
WINDOW_END = "WindowEnd"
WINDOW_MINUTES = "WindowMinutes"
# The endpoint stack's parameters: the served version's model and baseline (`mlops deploy` sets them).
MONITORED_MODEL_PARAMETER = "MonitoredModelDataUrl"
MONITORED_BASELINE_PARAMETER = "MonitoredBaselineUri"
# The monitor's reports: s3://<artifacts>/<REPORTS_PREFIX><network>/<execution id>/drift.json
REPORTS_PREFIX = "pipelines/"
REPORTS_FOLDER = "monitor"
# Each run's copy of its window's captures: s3://<artifacts>/<CAPTURE_WINDOWS_PREFIX><network>/<execution id>/,
# needed only while the run lasts (the artifacts bucket expires it).
CAPTURE_WINDOWS_PREFIX = "capture-windows/"
PUBLISH_MAX_SECONDS = 1800


def capture_key_prefix(config: StageConfig, network: str) -> str:
    """The artifacts bucket prefix of the network endpoint's capture files (SageMaker appends
    `<endpoint>/<variant>/` to the endpoint config's destination, `data-capture/<network>/`)."""
    return f"data-capture/{network}/{naming.endpoint_name(config.prefix(), network)}/{naming.VARIANT_NAME}/"


def reports_key_prefix(network: str) -> str:
    return f"{REPORTS_PREFIX}{network}/{REPORTS_FOLDER}/"


def monitor_parameters(config: StageConfig) -> tuple[PipelineParameter, ...]:
    return (
        PipelineParameter(MODEL_DATA_URL, "String", ""),
        PipelineParameter(BASELINE_URI, "String", ""),
        # Empty: the window ends when the job starts and lasts WindowMinutes.
        PipelineParameter(WINDOW_START, "String", ""),
        PipelineParameter(WINDOW_END, "String", ""),
        PipelineParameter(WINDOW_MINUTES, "Integer", config.monitor.window_minutes),
    )


def collect_command(config: StageConfig) -> str:
    """The CollectCaptures container's shell command: copy the window's capture files."""
    # Run-time values come through the environment ($NAME, never ${NAME}: Fn::Sub would take it).
    return bundle_command(
        f'python3 -m {COLLECT_MODULE} --region {config.region} --capture-uri "$CAPTURE_URI" '
        f'--window-start "$WINDOW_START" --window-end "$WINDOW_END" --window-minutes "$WINDOW_MINUTES" '
        f"--output-dir {PROCESSING_ROOT}/{CAPTURES_OUTPUT}"
    )


def monitor_command(config: StageConfig, network: Network) -> str:
    """The Monitor container's shell command: unpack the code and the served model, monitor."""
    model, baseline, captures, output = (
        f"{PROCESSING_ROOT}/{name}" for name in ("model", "baseline", CAPTURES_OUTPUT, DRIFT_OUTPUT)
    )
    return bundle_command(
        f"python3 -m {MONITOR_MODULE} --network {network.name} --model-dir {model} "
        f'--model-uri "$MODEL_DATA_URL" --baseline {baseline}/baseline.json --captures-dir {captures} '
        f"--output-dir {output} --alpha {config.monitor.alpha}",
        before=f"tar -xzf {model}/model.tar.gz -C {model}; ",
    )


def publish_command(config: StageConfig) -> str:
    """The PublishMetrics container's shell command: the Monitor's report as CloudWatch metrics."""
    return bundle_command(
        f"python3 -m {PUBLISH_MODULE} --region {config.region} "
        f"--report {PROCESSING_ROOT}/{DRIFT_OUTPUT}/{DRIFT_FILE} "
        f"--metric-namespace {naming.drift_metric_namespace(config.prefix())}"
    )


def monitor_definition(config: StageConfig, network_name: str) -> dict[str, Any]:
    network = get_network(network_name)
    return {
        "Version": SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": [parameter.to_definition() for parameter in monitor_parameters(config)],
        "Steps": [_collect_step(config, network), _monitor_step(config, network), _publish_step(config, network)],
    }


def monitor_definition_body(config: StageConfig, network_name: str) -> str:
    return json.dumps(monitor_definition(config, network_name), sort_keys=True, separators=(",", ":"))


def _collect_step(config: StageConfig, network: Network) -> dict[str, Any]:
    copy_uri = join(s3_uri(ARTIFACTS_BUCKET, f"{CAPTURE_WINDOWS_PREFIX}{network.name}/"), EXECUTION_ID)
    arguments: dict[str, Any] = {
        "AppSpecification": {
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", collect_command(config)],
        },
        "Environment": {
            "CAPTURE_URI": s3_uri(ARTIFACTS_BUCKET, capture_key_prefix(config, network.name)),
            "WINDOW_START": parameter(WINDOW_START),
            "WINDOW_END": parameter(WINDOW_END),
            "WINDOW_MINUTES": join(parameter(WINDOW_MINUTES)),
        },
        "ProcessingInputs": [code_input()],
        "ProcessingOutputConfig": processing_outputs(CAPTURES_OUTPUT, copy_uri, f"{PROCESSING_ROOT}/{CAPTURES_OUTPUT}"),
        # It lists and copies S3 objects: never isolated.
        **processing_job(
            config,
            config.training_instance_type(network.name),
            max_seconds=config.training.max_run_seconds,
            isolated=False,
        ),
    }
    return _step(COLLECT_STEP, arguments)


def _monitor_step(config: StageConfig, network: Network) -> dict[str, Any]:
    report_uri = join(s3_uri(ARTIFACTS_BUCKET, reports_key_prefix(network.name)), EXECUTION_ID)
    arguments: dict[str, Any] = {
        "AppSpecification": {
            # The training image, as for Evaluate: TensorFlow (the model's signatures), SciPy, Pillow.
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", monitor_command(config, network)],
        },
        "Environment": {"MODEL_DATA_URL": parameter(MODEL_DATA_URL)},
        "ProcessingInputs": [
            processing_input("model", parameter(MODEL_DATA_URL), f"{PROCESSING_ROOT}/model"),
            processing_input("baseline", parameter(BASELINE_URI), f"{PROCESSING_ROOT}/baseline"),
            processing_input(
                CAPTURES_OUTPUT, _output_uri(COLLECT_STEP, CAPTURES_OUTPUT), f"{PROCESSING_ROOT}/{CAPTURES_OUTPUT}"
            ),
            code_input(),
        ],
        "ProcessingOutputConfig": processing_outputs(DRIFT_OUTPUT, report_uri, f"{PROCESSING_ROOT}/{DRIFT_OUTPUT}"),
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=config.training.max_run_seconds
        ),
    }
    return {
        **_step(MONITOR_STEP, arguments),
        "PropertyFiles": [{"PropertyFileName": DRIFT_REPORT, "OutputName": DRIFT_OUTPUT, "FilePath": DRIFT_FILE}],
    }


def _publish_step(config: StageConfig, network: Network) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "AppSpecification": {
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", publish_command(config)],
        },
        "ProcessingInputs": [
            processing_input(
                DRIFT_OUTPUT, _output_uri(MONITOR_STEP, DRIFT_OUTPUT), f"{PROCESSING_ROOT}/{DRIFT_OUTPUT}"
            ),
            code_input(),
        ],
        # It calls CloudWatch: never isolated. One report to send: minutes would mean something is wrong.
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=PUBLISH_MAX_SECONDS, isolated=False
        ),
    }
    return _step(PUBLISH_STEP, arguments)


def _step(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"Name": name, "Type": "Processing", "Arguments": arguments, "RetryPolicies": [SERVICE_RETRY, JOB_RETRY]}


def _output_uri(step: str, output: str) -> dict[str, str]:
    return get(f"Steps.{step}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri")
