"""The SageMaker Pipeline of one network, as plain data in the pipeline definition schema.

    Train (Training) ---------> Evaluate (Processing) -> QualityGate (Condition)
    Champion (Processing) ----'                            |-- passes: Register (RegisterModel)
                                                           '-- fails:  Fail (Fail)

The Train step is built in infra/definitions/train_step.py, the Champion step in
infra/definitions/champion_step.py; the gate registers a candidate that reaches QualityThreshold
and is not worse than the approved champion by more than ChampionTolerance.

No SageMaker SDK, no CDK, no AWS calls: the definition is a dict built from the stage
configuration and the network registry, serialized with sorted keys, so every synth
produces the same bytes. Values known only at deploy time are `${Placeholder}`s (see
`PLACEHOLDERS`), which the construct fills in with `Fn::Sub`, and a local runner with
`substitute_placeholders`. `tests/test_pipeline_sdk_parity.py` builds the same pipeline
with SageMaker SDK v3 and compares the two, so the field names stay honest.

The CLI imports this module to validate `--param` values, so it must stay cheap to import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from infra.config import StageConfig
from infra.definitions.champion_step import CHAMPION_OUTPUT, champion_input, champion_step
from infra.definitions.parameters import (
    APPROVAL_STATUSES,
    CHAMPION_TOLERANCE,
    INPUT_DATA_URI,
    MODEL_APPROVAL_STATUS,
    PARAMETER_TYPES,
    QUALITY_THRESHOLD,
    TRAINING_INSTANCE_COUNT,
    TRAINING_INSTANCE_TYPE,
    PipelineParameter,
    parameter_name,
)

# The placeholders are named here too: the construct and local runs fill them in by these names.
from infra.definitions.parts import (
    ARTIFACTS_BUCKET,
    DATA_BUCKET,
    EXECUTION_ID,
    EXECUTION_ROLE_ARN,  # noqa: F401 - read as definition.EXECUTION_ROLE_ARN
    INFERENCE_IMAGE_URI,
    JOB_RETRY,
    KEY_ARN,  # noqa: F401 - read as definition.KEY_ARN
    PLACEHOLDERS,  # noqa: F401 - read as definition.PLACEHOLDERS
    PROCESSING_ROOT,
    SERVICE_RETRY,
    SOURCE_BUNDLE_FILE,  # noqa: F401 - read as definition.SOURCE_BUNDLE_FILE
    SOURCE_BUNDLE_URI,  # noqa: F401 - read as definition.SOURCE_BUNDLE_URI
    TRAINING_IMAGE_URI,
    bundle_command,
    code_input,
    processing_job,
    processing_outputs,
)
from infra.definitions.parts import get as _get
from infra.definitions.parts import join as _join
from infra.definitions.parts import parameter as _parameter
from infra.definitions.parts import placeholder as _placeholder
from infra.definitions.parts import processing_input as _processing_input
from infra.definitions.parts import s3 as _s3
from infra.definitions.train_step import TRAIN_STEP, model_artifacts, train_step  # noqa: F401 - TRAIN_STEP too
from infra.naming import model_package_group_name
from training import champion_comparison
from training.networks import Network, get_network

SCHEMA_VERSION = "2020-12-01"

EVALUATE_STEP = "Evaluate"
QUALITY_GATE_STEP = "QualityGate"
REGISTER_STEP = "Register"
FAIL_STEP = "Fail"

EVALUATION_OUTPUT = "evaluation"
EVALUATION_REPORT = "EvaluationReport"
EVALUATION_FILE = "evaluation.json"
EXPLANATIONS_FILE = "explanations.json"
BASELINE_FILE, BASELINE_CHANNEL = "baseline.json", "validation"  # training/baseline.py: the drift baseline
# How the Evaluate container learns where the model it judges is stored (named in the baseline).
MODEL_URI_VARIABLE = "MODEL_DATA_URL"
EVALUATION_MODULE = "processing.evaluate"
REPORT_CONTENT_TYPE = "application/json"
RESPONSE_CONTENT_TYPE = "application/json"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def pipeline_parameters(config: StageConfig, network_name: str) -> tuple[PipelineParameter, ...]:
    """Every parameter of the network's pipeline, with this stage's defaults."""
    network = get_network(network_name)
    values = config.hyperparameters_for(network.name)
    data_uri = _s3(DATA_BUCKET, f"{network.name}/")
    return (
        PipelineParameter(TRAINING_INSTANCE_TYPE, "String", config.training_instance_type(network.name)),
        PipelineParameter(TRAINING_INSTANCE_COUNT, "Integer", config.training.instance_count),
        *(
            PipelineParameter(
                parameter_name(knob.name),
                PARAMETER_TYPES[knob.type],
                values[knob.name],
                enum_values=knob.choices,
                hyperparameter=knob,
            )
            for knob in network.hyperparameters
        ),
        PipelineParameter(INPUT_DATA_URI, "String", data_uri),
        PipelineParameter(MODEL_APPROVAL_STATUS, "String", config.model_approval_status, enum_values=APPROVAL_STATUSES),
        PipelineParameter(QUALITY_THRESHOLD, "Float", float(network.quality_gate.threshold)),
        # How much worse than the approved champion a candidate may be; negative demands a gain.
        PipelineParameter(CHAMPION_TOLERANCE, "Float", 0.0),
    )


def pipeline_definition(config: StageConfig, network_name: str) -> dict[str, Any]:
    """The pipeline definition of `network_name` in stage `config`, with `${Placeholders}`."""
    network = get_network(network_name)
    parameters = pipeline_parameters(config, network.name)
    return {
        "Version": SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": [parameter.to_definition() for parameter in parameters],
        "Steps": [
            train_step(config, network, parameters),
            champion_step(config, network),
            evaluate_step(config, network, model_artifacts()),
            quality_gate_step(config, network, model_artifacts()),
        ],
    }


def definition_body(config: StageConfig, network_name: str) -> str:
    """The definition as the exact text CloudFormation receives (before `Fn::Sub`)."""
    return json.dumps(pipeline_definition(config, network_name), sort_keys=True, separators=(",", ":"))


def substitute_placeholders(body: str, values: Mapping[str, str]) -> str:
    """What `Fn::Sub` does to `body`: fills every `${Name}`, and turns `${!` into `${`."""
    missing = sorted(set(_PLACEHOLDER.findall(body)) - set(values))
    if missing:
        raise KeyError(f"no value for placeholder(s) {', '.join(missing)}")
    filled = _PLACEHOLDER.sub(lambda match: values[match.group(1)], body)
    return filled.replace("${!", "${")


def _report_value(path: str) -> dict[str, Any]:
    """A value of the Evaluate step's `evaluation.json`."""
    return {
        "Std:JsonGet": {"PropertyFile": _get(f"Steps.{EVALUATE_STEP}.PropertyFiles.{EVALUATION_REPORT}"), "Path": path}
    }


def _quality_value(network: Network) -> dict[str, Any]:
    """The gate metric's value, read from the Evaluate step's `evaluation.json`."""
    return _report_value(f"metrics.{network.quality_gate.metric}.value")


def evaluation_command(network: Network) -> str:
    """The shell command of the Evaluate container: unpack the code, the model and the champion's
    model if there is one, evaluate, and draw the drift baseline from the validation channel."""
    model, test, validation, output, champion = (
        f"{PROCESSING_ROOT}/{name}" for name in ("model", "test", BASELINE_CHANNEL, EVALUATION_OUTPUT, CHAMPION_OUTPUT)
    )
    # Run-time values come through the environment ($NAME, never ${NAME}: Fn::Sub would take it).
    return bundle_command(
        f"python3 -m {EVALUATION_MODULE} --network {network.name} --model-dir {model} "
        f"--test-dir {test} --output-dir {output} --champion-dir {champion} "
        f'--tolerance "$CHAMPION_TOLERANCE" '
        f'--baseline-dir {validation} --model-uri "${MODEL_URI_VARIABLE}"',
        before=(
            f"tar -xzf {model}/model.tar.gz -C {model}; "
            f"if [ -f {champion}/model.tar.gz ]; then mkdir -p {champion}/model; "
            f"tar -xzf {champion}/model.tar.gz -C {champion}/model; fi; "
        ),
    )


def evaluate_step(config: StageConfig, network: Network, model: dict[str, Any]) -> dict[str, Any]:
    """Scores the candidate `model` (an expression of its model.tar.gz's S3 URI) on the test channel."""
    evaluation_uri = _join(_s3(ARTIFACTS_BUCKET, f"pipelines/{network.name}/"), EXECUTION_ID, f"/{EVALUATION_OUTPUT}")
    arguments: dict[str, Any] = {
        "AppSpecification": {
            # The training image: it has TensorFlow and Python, which processing/evaluate.py needs.
            "ImageUri": _placeholder(TRAINING_IMAGE_URI),
            "ContainerEntrypoint": ["/bin/bash", "-c", evaluation_command(network)],
        },
        "ProcessingInputs": [
            _processing_input("model", model, f"{PROCESSING_ROOT}/model"),
            _processing_input("test", _join(_parameter(INPUT_DATA_URI), "test/"), f"{PROCESSING_ROOT}/test"),
            _processing_input(
                BASELINE_CHANNEL,
                _join(_parameter(INPUT_DATA_URI), f"{BASELINE_CHANNEL}/"),
                f"{PROCESSING_ROOT}/{BASELINE_CHANNEL}",
            ),
            code_input(),
            champion_input(),
        ],
        "Environment": {
            "CHAMPION_TOLERANCE": _join(_parameter(CHAMPION_TOLERANCE)),
            MODEL_URI_VARIABLE: model,
        },
        "ProcessingOutputConfig": processing_outputs(
            EVALUATION_OUTPUT, evaluation_uri, f"{PROCESSING_ROOT}/{EVALUATION_OUTPUT}"
        ),
        # The stage's training instance type (not the parameter): evaluation needs the same kind of
        # machine whatever the training run was given.
        **processing_job(
            config, config.training_instance_type(network.name), max_seconds=config.training.max_run_seconds
        ),
    }
    return {
        "Name": EVALUATE_STEP,
        "Type": "Processing",
        "Arguments": arguments,
        "PropertyFiles": [
            {"PropertyFileName": EVALUATION_REPORT, "OutputName": EVALUATION_OUTPUT, "FilePath": EVALUATION_FILE}
        ],
        "RetryPolicies": [SERVICE_RETRY, JOB_RETRY],
    }


def quality_gate_step(
    config: StageConfig, network: Network, model: dict[str, Any], metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Registers the candidate `model` if it passes, with `metadata` added to what every version records."""
    comparison = "GreaterThanOrEqualTo" if network.quality_gate.higher_is_better else "LessThanOrEqualTo"
    return {
        "Name": QUALITY_GATE_STEP,
        "Type": "Condition",
        "Arguments": {
            # Both must hold: the threshold, and the champion's value give or take the tolerance.
            "Conditions": [
                {"Type": comparison, "LeftValue": _quality_value(network), "RightValue": bound}
                for bound in (_parameter(QUALITY_THRESHOLD), _report_value(champion_comparison.BOUND))
            ],
            "IfSteps": [_register_step(config, network, model, metadata or {})],
            "ElseSteps": [_fail_step(network)],
        },
    }


def evaluation_report_uri(file: str = EVALUATION_FILE) -> dict[str, Any]:
    """Where the Evaluate step wrote `file`: `evaluation.json` (the registry's model quality
    report), `explanations.json` (its explainability report) or `baseline.json` (its drift check
    baseline)."""
    output = f"Steps.{EVALUATE_STEP}.ProcessingOutputConfig.Outputs['{EVALUATION_OUTPUT}'].S3Output.S3Uri"
    return _join(_get(output), file, on="/")


def _register_step(
    config: StageConfig, network: Network, model: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, Any]:
    gate = network.quality_gate
    arguments = {
        "ModelPackageGroupName": model_package_group_name(config.prefix(), network.name),
        "ModelPackageDescription": f"{network.name}: {network.summary}",
        "ModelApprovalStatus": _parameter(MODEL_APPROVAL_STATUS),
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": _placeholder(INFERENCE_IMAGE_URI),
                    "ModelDataUrl": model,
                }
            ],
            "SupportedContentTypes": list(network.request_content_types),
            "SupportedResponseMIMETypes": [RESPONSE_CONTENT_TYPE],
            "SupportedRealtimeInferenceInstanceTypes": [config.endpoint_instance_type(network.name)],
        },
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": REPORT_CONTENT_TYPE, "S3Uri": evaluation_report_uri()}},
            # Where SageMaker Clarify would put its report: the Evaluate step's explanations.
            "Explainability": {
                "Report": {"ContentType": REPORT_CONTENT_TYPE, "S3Uri": evaluation_report_uri(EXPLANATIONS_FILE)}
            },
        },
        # SageMaker's field for what a monitor compares served data with (training/processing/monitor.py).
        "DriftCheckBaselines": {
            "ModelDataQuality": {
                "Statistics": {"ContentType": REPORT_CONTENT_TYPE, "S3Uri": evaluation_report_uri(BASELINE_FILE)}
            }
        },
        "CustomerMetadataProperties": {
            "network": network.name,
            "quality_metric": gate.metric,
            "quality_value": _join(_quality_value(network)),
            "quality_threshold": _join(_parameter(QUALITY_THRESHOLD)),
            "champion": _join(_report_value(champion_comparison.SUMMARY)),
            **metadata,
        },
    }
    # SageMaker job retry policies do not apply to registering a model.
    return {"Name": REGISTER_STEP, "Type": "RegisterModel", "Arguments": arguments, "RetryPolicies": [SERVICE_RETRY]}


def _fail_step(network: Network) -> dict[str, Any]:
    gate = network.quality_gate
    return {
        "Name": FAIL_STEP,
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": _join(
                f"quality gate failed: {gate.metric} =",
                _quality_value(network),
                f"but must be {gate.comparison}",
                _parameter(QUALITY_THRESHOLD),
                f"({QUALITY_THRESHOLD});",
                _report_value(champion_comparison.SUMMARY),
                on=" ",
            )
        },
    }
