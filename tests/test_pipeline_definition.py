"""The pipeline definition as data: every reference resolves, every parameter is used, every
field is one SageMaker's own API model knows, and the same inputs give the same bytes.

No CDK and no SDK here: the definition is plain data, checked against botocore's service model
(the request shapes of CreateTrainingJob, CreateProcessingJob, CreateModelPackage and the
response shapes the `Steps.<name>.<path>` references read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from infra.config import StageConfig, parse_stage_config
from infra.definitions import training_pipeline as definition
from training.networks import NETWORKS, get_network

# The stages that train: prod promotes from dev and has no training pipeline (docs/cicd.md).
STAGES = ("local", "dev")
# Read directly, not through synth_support: these tests need no CDK (and its 5 s import).
CDK_CONTEXT: dict[str, Any] = json.loads((Path(__file__).resolve().parent.parent / "cdk.json").read_text())["context"]
SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")

# Step type -> (the request its Arguments are, the response its properties are read from).
STEP_SHAPES = {
    "Training": ("CreateTrainingJobRequest", "DescribeTrainingJobResponse"),
    "Processing": ("CreateProcessingJobRequest", "DescribeProcessingJobResponse"),
    "RegisterModel": ("CreateModelPackageInput", "DescribeModelPackageOutput"),
}
# Required by the API but filled in by the pipeline service for every run.
FILLED_BY_PIPELINES = {"TrainingJobName", "ProcessingJobName", "HyperParameterTuningJobName"}
EXECUTION_VARIABLES = {
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
    "PipelineExecutionDisplayName",
}
EXPRESSIONS = ("Get", "Std:Join", "Std:JsonGet")
SAMPLE_VALUES = {
    definition.ARTIFACTS_BUCKET: "mlops-test-artifacts-123456789012-us-east-1",
    definition.DATA_BUCKET: "mlops-test-data-123456789012-us-east-1",
    definition.EXECUTION_ROLE_ARN: "arn:aws:iam::123456789012:role/execution",
    definition.KEY_ARN: "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    definition.SOURCE_BUNDLE_URI: "s3://cdk-hnb659fds-assets-123456789012-us-east-1/abc.gz",
    definition.SOURCE_BUNDLE_FILE: "abc.gz",
    definition.TRAINING_IMAGE_URI: "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.19-cpu-py312",
    definition.INFERENCE_IMAGE_URI: "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19-cpu",
}


def stage(name: str) -> StageConfig:
    return parse_stage_config(CDK_CONTEXT["stages"], name)


def isolated_stage() -> StageConfig:
    """A stage with every optional setting on: VPC, network isolation, several instances."""
    # Alone in its stages, it promotes from none of them.
    prod = {key: value for key, value in CDK_CONTEXT["stages"]["prod"].items() if key != "promote_from"}
    raw = {
        **prod,
        "training": {"use_spot": True, "instance_count": 2, "network_isolation": True},
        "vpc": {"subnet_ids": ["subnet-1", "subnet-2"], "security_group_ids": ["sg-1"]},
    }
    return parse_stage_config({"isolated": raw}, "isolated")


def all_definitions() -> Iterator[tuple[str, StageConfig, str]]:
    for config in [stage(name) for name in STAGES] + [isolated_stage()]:
        for network in config.networks:
            yield config.name, config, network


CASES = [pytest.param(config, network, id=f"{name}-{network}") for name, config, network in all_definitions()]


def steps_of(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every step, the Condition step's branches included, in definition order."""
    for step in steps:
        yield step
        if step["Type"] == "Condition":
            yield from steps_of(step["Arguments"]["IfSteps"])
            yield from steps_of(step["Arguments"]["ElseSteps"])


def expressions(value: Any, kind: str) -> Iterator[Any]:
    if isinstance(value, dict):
        if kind in value:
            yield value[kind]
        for item in value.values():
            yield from expressions(item, kind)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item, kind)


_SEGMENT = re.compile(r"^(?P<name>[A-Za-z0-9]+)(?:\['(?P<key>[^']+)'\]|\[(?P<index>\d+)\])?$")


def resolve_property(shape: Any, path: str) -> Any:
    """The botocore shape `path` (e.g. `ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri`)
    points at in `shape`, or AssertionError."""
    for segment in path.split("."):
        match = _SEGMENT.match(segment)
        assert match, f"unparsable property path segment {segment!r}"
        assert shape.type_name == "structure" and match["name"] in shape.members, (
            f"{shape.name} has no member {match['name']}"
        )
        shape = shape.members[match["name"]]
        if match["key"] is not None and shape.type_name == "map":
            shape = shape.value
        elif match["key"] is not None or match["index"] is not None:
            assert shape.type_name == "list", f"{match['name']} is not a list"
            shape = shape.member
    return shape


def check_against_shape(value: Any, shape: Any, where: str) -> None:
    """`value` fits the botocore `shape`: known members only, required ones present, scalar types and
    enums right. A pipeline expression stands for any scalar value."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSIONS:
        assert shape.type_name in ("string", "integer", "long", "float", "double", "boolean"), (
            f"{where}: an expression where a {shape.type_name} is expected"
        )
        return
    if shape.type_name == "structure":
        assert isinstance(value, dict), f"{where}: expected an object"
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{where}: {shape.name} has no member(s) {sorted(unknown)}"
        missing = set(shape.required_members) - set(value) - FILLED_BY_PIPELINES
        assert not missing, f"{where}: {shape.name} requires {sorted(missing)}"
        for key, item in value.items():
            check_against_shape(item, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        assert isinstance(value, list), f"{where}: expected a list"
        for index, item in enumerate(value):
            check_against_shape(item, shape.member, f"{where}[{index}]")
    elif shape.type_name == "map":
        assert isinstance(value, dict), f"{where}: expected a map"
        for key, item in value.items():
            check_against_shape(item, shape.value, f"{where}.{key}")
    elif shape.type_name == "string":
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
        if shape.enum:
            assert value in shape.enum, f"{where}: {value!r} not one of {shape.name}"
    elif shape.type_name in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer"
    elif shape.type_name == "boolean":
        assert isinstance(value, bool), f"{where}: expected a boolean"
    else:
        assert isinstance(value, (int, float)), f"{where}: expected a number"


@pytest.mark.parametrize(("config", "network"), CASES)
def test_definition_has_the_schema_shape(config: StageConfig, network: str) -> None:
    built = definition.pipeline_definition(config, network)
    assert set(built) == {"Version", "Metadata", "Parameters", "Steps"}
    assert built["Version"] == "2020-12-01"
    python_types = {"String": str, "Integer": int, "Float": float}
    for parameter in built["Parameters"]:
        assert set(parameter) <= {"Name", "Type", "DefaultValue", "EnumValues"}
        assert type(parameter["DefaultValue"]) is python_types[parameter["Type"]], parameter
        if "EnumValues" in parameter:
            assert parameter["DefaultValue"] in parameter["EnumValues"]
    for step in steps_of(built["Steps"]):
        assert set(step) <= {"Name", "Type", "Arguments", "PropertyFiles", "RetryPolicies"}, step["Name"]
    assert [(step["Name"], step["Type"]) for step in steps_of(built["Steps"])] == [
        ("Train", "Training"),
        ("Champion", "Processing"),
        ("Evaluate", "Processing"),
        ("QualityGate", "Condition"),
        ("Register", "RegisterModel"),
        ("Fail", "Fail"),
    ]


@pytest.mark.parametrize(("config", "network"), CASES)
def test_step_arguments_are_valid_sagemaker_requests(config: StageConfig, network: str) -> None:
    for step in steps_of(definition.pipeline_definition(config, network)["Steps"]):
        if step["Type"] in STEP_SHAPES:
            request = SAGEMAKER.shape_for(STEP_SHAPES[step["Type"]][0])
            check_against_shape(step["Arguments"], request, step["Name"])


@pytest.mark.parametrize(("config", "network"), CASES)
def test_every_reference_resolves_and_every_parameter_is_used(config: StageConfig, network: str) -> None:
    built = definition.pipeline_definition(config, network)
    parameters = {parameter["Name"] for parameter in built["Parameters"]}
    steps = list(steps_of(built["Steps"]))
    names = [step["Name"] for step in steps]
    assert len(names) == len(set(names)), "step names must be unique"
    by_name = {step["Name"]: step for step in steps}
    used: set[str] = set()
    for position, step in enumerate(steps):
        earlier = set(names[:position])
        for reference in expressions(step, "Get"):
            root, _, path = reference.partition(".")
            if root == "Parameters":
                assert path in parameters, f"{step['Name']}: unknown parameter {path}"
                used.add(path)
            elif root == "Execution":
                assert path in EXECUTION_VARIABLES, f"{step['Name']}: unknown execution variable {path}"
            else:
                assert root == "Steps", reference
                source, _, property_path = path.partition(".")
                assert source in earlier, f"{step['Name']} reads {source}, which does not run before it"
                target = by_name[source]
                if property_path.startswith("PropertyFiles."):
                    declared = {file["PropertyFileName"] for file in target.get("PropertyFiles", [])}
                    assert property_path.removeprefix("PropertyFiles.") in declared, reference
                    continue
                resolve_property(SAGEMAKER.shape_for(STEP_SHAPES[target["Type"]][1]), property_path)
                for output in re.findall(r"Outputs\['([^']+)'\]", property_path):
                    outputs = target["Arguments"]["ProcessingOutputConfig"]["Outputs"]
                    assert output in {o["OutputName"] for o in outputs}, reference
    assert used == parameters, f"unused parameters: {sorted(parameters - used)}"


@pytest.mark.parametrize(("config", "network"), CASES)
def test_quality_gate_reads_the_registry_metric_from_the_evaluation_report(config: StageConfig, network: str) -> None:
    spec = get_network(network)
    built = definition.pipeline_definition(config, network)
    evaluate = next(step for step in built["Steps"] if step["Name"] == "Evaluate")
    (report,) = evaluate["PropertyFiles"]
    assert report == {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    gate = next(step for step in built["Steps"] if step["Name"] == "QualityGate")
    threshold_condition, champion_condition = gate["Arguments"]["Conditions"]
    for condition in (threshold_condition, champion_condition):
        assert condition["Type"] == (
            "GreaterThanOrEqualTo" if spec.quality_gate.higher_is_better else "LessThanOrEqualTo"
        )
        assert condition["LeftValue"]["Std:JsonGet"]["Path"] == f"metrics.{spec.quality_gate.metric}.value"
    assert spec.quality_gate.metric in spec.metrics
    assert threshold_condition["RightValue"] == {"Get": "Parameters.QualityThreshold"}
    assert champion_condition["RightValue"]["Std:JsonGet"] == {
        "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
        "Path": "champion_challenger.bound",
    }
    threshold = next(p for p in built["Parameters"] if p["Name"] == "QualityThreshold")
    assert threshold["DefaultValue"] == spec.quality_gate.threshold
    tolerance = next(p for p in built["Parameters"] if p["Name"] == "ChampionTolerance")
    assert (tolerance["Type"], tolerance["DefaultValue"]) == ("Float", 0.0)
    assert evaluate["Arguments"]["Environment"] == {
        "CHAMPION_TOLERANCE": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.ChampionTolerance"}]}},
        "MODEL_DATA_URL": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"},
    }
    # The Fail step names the candidate's value, the threshold, and the champion's (its summary).
    message = json.dumps(gate["Arguments"]["ElseSteps"][0]["Arguments"]["ErrorMessage"])
    assert spec.quality_gate.metric in message and "Parameters.QualityThreshold" in message
    assert '"Path": "champion_challenger.summary"' in message


@pytest.mark.parametrize(("config", "network"), CASES)
def test_the_champion_step_reads_the_registry_beside_train_and_evaluate_scores_what_it_found(
    config: StageConfig, network: str
) -> None:
    steps = {step["Name"]: step for step in definition.pipeline_definition(config, network)["Steps"]}
    champion = steps["Champion"]["Arguments"]
    # Reads no other step: SageMaker runs it while Train runs.
    assert "Steps." not in json.dumps(champion)
    # The only job that calls AWS itself: never isolated, whatever the stage.
    assert champion["NetworkConfig"]["EnableNetworkIsolation"] is False
    command = champion["AppSpecification"]["ContainerEntrypoint"][-1]
    assert command.endswith(
        f"python3 -m processing.find_champion --group {config.prefix()}-{network} --region {config.region} "
        "--output-dir /opt/ml/processing/champion"
    )
    (output,) = champion["ProcessingOutputConfig"]["Outputs"]
    champion_input = next(
        item for item in steps["Evaluate"]["Arguments"]["ProcessingInputs"] if item["InputName"] == "champion"
    )
    assert champion_input["S3Input"]["S3Uri"] == {
        "Get": "Steps.Champion.ProcessingOutputConfig.Outputs['champion'].S3Output.S3Uri"
    }
    assert champion_input["S3Input"]["LocalPath"] == output["S3Output"]["LocalPath"] == "/opt/ml/processing/champion"


@pytest.mark.parametrize(("config", "network"), CASES)
def test_the_model_package_carries_the_explanations_and_the_champion_comparison(
    config: StageConfig, network: str
) -> None:
    steps = {step["Name"]: step for step in steps_of(definition.pipeline_definition(config, network)["Steps"])}
    register = steps["Register"]["Arguments"]
    report = register["ModelMetrics"]["Explainability"]["Report"]
    assert report["ContentType"] == "application/json"
    assert report["S3Uri"] == {
        "Std:Join": {
            "On": "/",
            "Values": [
                {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
                "explanations.json",
            ],
        }
    }
    assert register["CustomerMetadataProperties"]["champion"] == {
        "Std:Join": {
            "On": "",
            "Values": [
                {
                    "Std:JsonGet": {
                        "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                        "Path": "champion_challenger.summary",
                    }
                }
            ],
        }
    }


@pytest.mark.parametrize(("config", "network"), CASES)
def test_every_hyperparameter_is_a_typed_parameter_with_the_stage_default(config: StageConfig, network: str) -> None:
    spec = get_network(network)
    built = definition.pipeline_definition(config, network)
    parameters = {p["Name"]: p for p in built["Parameters"]}
    train = built["Steps"][0]["Arguments"]
    expected_types = {int: "Integer", float: "Float", str: "String"}
    for knob in spec.hyperparameters:
        parameter = parameters[definition.parameter_name(knob.name)]
        assert parameter["Type"] == expected_types[knob.type]
        assert parameter["DefaultValue"] == config.hyperparameters_for(network)[knob.name]
        feed = train["HyperParameters"][knob.name]
        reference = {"Get": f"Parameters.{parameter['Name']}"}
        assert feed == (reference if knob.type is str else {"Std:Join": {"On": "", "Values": [reference]}})
    assert train["HyperParameters"]["sagemaker_program"] == spec.entry_point
    assert all(isinstance(value, (str, dict)) for value in train["HyperParameters"].values())


@pytest.mark.parametrize(("config", "network"), CASES)
def test_the_train_step_fetches_its_code_from_s3_unless_isolated_then_from_its_code_channel(
    config: StageConfig, network: str
) -> None:
    """An isolated container reaches no S3: the bundle must come in as a channel, which SageMaker
    fills with the one object under its own name, and the toolkit unpacks it from there."""
    rendered = json.loads(
        definition.substitute_placeholders(definition.definition_body(config, network), SAMPLE_VALUES)
    )
    train = rendered["Steps"][0]["Arguments"]
    submit_directory = train["HyperParameters"]["sagemaker_submit_directory"]
    channels = {channel["ChannelName"]: channel["DataSource"]["S3DataSource"] for channel in train["InputDataConfig"]}
    bundle_uri = SAMPLE_VALUES[definition.SOURCE_BUNDLE_URI]
    if not config.training.network_isolation:
        assert submit_directory == bundle_uri and "code" not in channels
        return
    assert channels["code"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": bundle_uri,
        "S3DataDistributionType": "FullyReplicated",
    }
    assert submit_directory == "/opt/ml/input/data/code/" + bundle_uri.rsplit("/", 1)[-1]


def test_stage_overrides_become_parameter_defaults() -> None:
    raw = {**CDK_CONTEXT["stages"]["dev"], "hyperparameters": {"cnn": {"epochs": 3, "precision": "float32"}}}
    config = parse_stage_config({"dev": raw}, "dev")
    defaults = {p["Name"]: p["DefaultValue"] for p in definition.pipeline_definition(config, "cnn")["Parameters"]}
    assert defaults["Epochs"] == 3 and defaults["Precision"] == "float32"
    assert defaults["ModelApprovalStatus"] == "Approved"
    manual = parse_stage_config({"dev": {**raw, "model_approval_status": "PendingManualApproval"}}, "dev")
    assert {p["Name"]: p["DefaultValue"] for p in definition.pipeline_definition(manual, "cnn")["Parameters"]}[
        "ModelApprovalStatus"
    ] == "PendingManualApproval"


@pytest.mark.parametrize("name", STAGES)
def test_spot_is_baked_in_from_the_stage(name: str) -> None:
    config = stage(name)
    train = definition.pipeline_definition(config, "cnn")["Steps"][0]["Arguments"]
    assert train["EnableManagedSpotTraining"] is config.training.use_spot
    assert ("MaxWaitTimeInSeconds" in train["StoppingCondition"]) is config.training.use_spot
    assert train["StoppingCondition"]["MaxRuntimeInSeconds"] == config.training.max_run_seconds
    if config.training.use_spot:
        assert train["StoppingCondition"]["MaxWaitTimeInSeconds"] == config.training.max_wait_seconds


def test_train_step_encrypts_checkpoints_per_execution_and_retries() -> None:
    train = definition.pipeline_definition(stage("dev"), "rnn")["Steps"][0]
    arguments = train["Arguments"]
    assert arguments["OutputDataConfig"] == {
        "S3OutputPath": "s3://${ArtifactsBucket}/models/rnn/",
        "KmsKeyId": "${KeyArn}",
    }
    assert arguments["ResourceConfig"]["VolumeKmsKeyId"] == "${KeyArn}"
    assert arguments["CheckpointConfig"] == {
        "S3Uri": {
            "Std:Join": {
                "On": "",
                "Values": ["s3://${ArtifactsBucket}/checkpoints/rnn/", {"Get": "Execution.PipelineExecutionId"}],
            }
        },
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert arguments["HyperParameters"]["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert arguments["EnableInterContainerTrafficEncryption"] is True
    assert [policy["ExceptionType"] for policy in train["RetryPolicies"]] == [
        ["Step.SERVICE_FAULT", "Step.THROTTLING"],
        ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR"],
    ]


def test_isolation_and_vpc_come_from_the_stage_and_bring_the_optional_channel() -> None:
    config = isolated_stage()
    steps = {step["Name"]: step["Arguments"] for step in definition.pipeline_definition(config, "transfer")["Steps"]}
    train, evaluate, champion = steps["Train"], steps["Evaluate"], steps["Champion"]
    vpc = {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    assert train["EnableNetworkIsolation"] is True and train["VpcConfig"] == vpc
    assert evaluate["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert evaluate["NetworkConfig"]["VpcConfig"] == champion["NetworkConfig"]["VpcConfig"] == vpc
    assert [c["ChannelName"] for c in train["InputDataConfig"]] == ["train", "validation", "test", "pretrained", "code"]
    open_stage = definition.pipeline_definition(stage("dev"), "transfer")["Steps"][0]["Arguments"]
    assert [c["ChannelName"] for c in open_stage["InputDataConfig"]] == ["train", "validation", "test"]
    assert "VpcConfig" not in open_stage


@pytest.mark.parametrize(("config", "network"), CASES)
def test_body_is_deterministic_compact_and_fits_the_limits(config: StageConfig, network: str) -> None:
    body = definition.definition_body(config, network)
    assert body == definition.definition_body(config, network)
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    # CreatePipeline takes up to 1 MB; even escaped into a template it stays far below 51,200 bytes.
    assert len(json.dumps(body)) < 16_000


@pytest.mark.parametrize(("config", "network"), CASES)
def test_placeholders_are_exactly_the_declared_ones(config: StageConfig, network: str) -> None:
    body = definition.definition_body(config, network)
    assert set(re.findall(r"\$\{([^}]*)\}", body)) == set(definition.PLACEHOLDERS)
    rendered = definition.substitute_placeholders(body, SAMPLE_VALUES)
    assert "${" not in rendered
    json.loads(rendered)


def test_substitution_works_like_fn_sub() -> None:
    assert definition.substitute_placeholders("a ${X} ${!Literal} ${X}", {"X": "1"}) == "a 1 ${Literal} 1"
    with pytest.raises(KeyError, match="Y"):
        definition.substitute_placeholders("${X}${Y}", {"X": "1"})


def test_evaluation_command_runs_the_evaluation_script_on_the_unpacked_model() -> None:
    command = definition.evaluation_command(NETWORKS["autoencoder"])
    # The one placeholder is the bundle's name; everything known at run time comes as $NAME.
    assert re.findall(r"\$\{([^}]*)\}", command) == [definition.SOURCE_BUNDLE_FILE]
    assert command.startswith(
        "set -eu; mkdir -p /opt/ml/processing/code/bundle; "
        "tar -xzf /opt/ml/processing/code/${SourceBundleFile} -C /opt/ml/processing/code/bundle; "
    )
    assert command.endswith(
        "python3 -m processing.evaluate --network autoencoder --model-dir /opt/ml/processing/model "
        "--test-dir /opt/ml/processing/test --output-dir /opt/ml/processing/evaluation "
        '--champion-dir /opt/ml/processing/champion --tolerance "$CHAMPION_TOLERANCE" '
        '--baseline-dir /opt/ml/processing/validation --model-uri "$MODEL_DATA_URL"'
    )
    assert "tar -xzf /opt/ml/processing/model/model.tar.gz -C /opt/ml/processing/model" in command
    # The champion's model only where the Champion step found one.
    assert (
        "if [ -f /opt/ml/processing/champion/model.tar.gz ]; then mkdir -p /opt/ml/processing/champion/model; "
        "tar -xzf /opt/ml/processing/champion/model.tar.gz -C /opt/ml/processing/champion/model; fi" in command
    )


@pytest.mark.parametrize(("raw", "expected"), [("3", 3), ("3.0", 3), (" 7 ", 7)])
def test_integer_parameters_parse_integers(raw: str, expected: int) -> None:
    (count,) = [p for p in definition.pipeline_parameters(stage("local"), "cnn") if p.name == "TrainingInstanceCount"]
    assert count.parse(raw) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TrainingInstanceCount", "2.5"),
        ("TrainingInstanceCount", "two"),
        ("QualityThreshold", "nan"),
        ("ModelApprovalStatus", "Rejected"),
        ("Precision", "float64"),
        ("Epochs", "x"),
    ],
)
def test_bad_parameter_values_are_refused(name: str, raw: str) -> None:
    (parameter,) = [p for p in definition.pipeline_parameters(stage("local"), "cnn") if p.name == name]
    with pytest.raises(ValueError, match=name if parameter.hyperparameter is None else parameter.hyperparameter.name):
        parameter.parse(raw)
