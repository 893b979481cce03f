"""The drift monitor pipeline of one network, as plain data in the pipeline definition schema.

    Monitor (Processing): training/processing/monitor.py on a window of the endpoint's captured traffic,
                          against the served model version's baseline -> drift.json, drift.png,
                          CloudWatch DriftScore

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

MONITOR_STEP = "Monitor"
MONITOR_MODULE = "processing.monitor"
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


def monitor_command(config: StageConfig, network: Network) -> str:
    """The Monitor container's shell command: unpack the code and the served model, monitor."""
    model, baseline, output = (f"{PROCESSING_ROOT}/{name}" for name in ("model", "baseline", DRIFT_OUTPUT))
    # Run-time values come through the environment ($NAME, never ${NAME}: Fn::Sub would take it).
    return bundle_command(
        f"python3 -m {MONITOR_MODULE} --network {network.name} --model-dir {model} "
        f'--model-uri "$MODEL_DATA_URL" --baseline {baseline}/baseline.json --capture-uri "$CAPTURE_URI" '
        f'--window-start "$WINDOW_START" --window-end "$WINDOW_END" --window-minutes "$WINDOW_MINUTES" '
        f"--output-dir {output} --metric-namespace {naming.drift_metric_namespace(config.prefix())} "
        f"--alpha {config.monitor.alpha}",
        before=f"tar -xzf {model}/model.tar.gz -C {model}; ",
    )


def monitor_definition(config: StageConfig, network_name: str) -> dict[str, Any]:
    network = get_network(network_name)
    report_uri = join(s3_uri(ARTIFACTS_BUCKET, reports_key_prefix(network.name)), EXECUTION_ID)
    arguments: dict[str, Any] = {
        "AppSpecification": {
            # The training image, as for Evaluate: TensorFlow (the model's signatures), SciPy, Pillow.
            "ImageUri": placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", monitor_command(config, network)],
        },
        "Environment": {
            "MODEL_DATA_URL": parameter(MODEL_DATA_URL),
            "CAPTURE_URI": s3_uri(ARTIFACTS_BUCKET, capture_key_prefix(config, network.name)),
            "WINDOW_START": parameter(WINDOW_START),
            "WINDOW_END": parameter(WINDOW_END),
            "WINDOW_MINUTES": join(parameter(WINDOW_MINUTES)),
        },
        "ProcessingInputs": [
            processing_input("model", parameter(MODEL_DATA_URL), f"{PROCESSING_ROOT}/model"),
            processing_input("baseline", parameter(BASELINE_URI), f"{PROCESSING_ROOT}/baseline"),
            code_input(),
        ],
        "ProcessingOutputConfig": processing_outputs(DRIFT_OUTPUT, report_uri, f"{PROCESSING_ROOT}/{DRIFT_OUTPUT}"),
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=config.training.max_run_seconds
        ),
    }
    return {
        "Version": SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": [parameter.to_definition() for parameter in monitor_parameters(config)],
        "Steps": [
            {
                "Name": MONITOR_STEP,
                "Type": "Processing",
                "Arguments": arguments,
                "PropertyFiles": [
                    {"PropertyFileName": DRIFT_REPORT, "OutputName": DRIFT_OUTPUT, "FilePath": DRIFT_FILE}
                ],
                "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
            }
        ],
    }


def monitor_definition_body(config: StageConfig, network_name: str) -> str:
    return json.dumps(monitor_definition(config, network_name), sort_keys=True, separators=(",", ":"))


def drift_report_uri() -> dict[str, Any]:
    output = f"Steps.{MONITOR_STEP}.ProcessingOutputConfig.Outputs['{DRIFT_OUTPUT}'].S3Output.S3Uri"
    return join(get(output), DRIFT_FILE, on="/")
