"""The tuning pipelines' definitions as data: the Tune step is a CreateHyperParameterTuningJob request
that botocore's model accepts, every reference resolves against the responses the pipeline service
joins into its properties, the best trial's model goes through the training pipeline's very gate,
and the stage's tuning settings reach the request.

No CDK and no SDK (tests/test_pipeline_sdk_parity.py builds the same pipelines with the SDK).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from test_pipeline_definition import (
    CDK_CONTEXT,
    EXECUTION_VARIABLES,
    SAGEMAKER,
    SAMPLE_VALUES,
    STAGES,
    STEP_SHAPES,
    check_against_shape,
    expressions,
    isolated_stage,
    resolve_property,
    stage,
    steps_of,
)

from infra.config import StageConfig, parse_stage_config
from infra.definitions import training_pipeline
from infra.definitions.tuning_pipeline import (
    tuning_definition_body,
    tuning_parameters,
    tuning_pipeline_definition,
)
from training.networks import NETWORKS, get_network

TUNING_SHAPES = ("DescribeHyperParameterTuningJobResponse", "ListTrainingJobsForHyperParameterTuningJobResponse")
CASES = [
    pytest.param(config, network, warm, id=f"{config.name}-{network}{'-warm' if warm else ''}")
    for config in [stage(name) for name in STAGES] + [isolated_stage()]
    for network in config.networks
    for warm in (False, True)
]


def stage_with_tuning(tuning: dict[str, Any], base: str = "dev") -> StageConfig:
    raw = {key: value for key, value in CDK_CONTEXT["stages"][base].items() if key != "promote_from"}
    return parse_stage_config({base: {**raw, "tuning": tuning}}, base)


def steps(config: StageConfig, network: str, *, warm: bool = False) -> dict[str, dict[str, Any]]:
    return {
        step["Name"]: step for step in steps_of(tuning_pipeline_definition(config, network, warm_start=warm)["Steps"])
    }


def rendered(config: StageConfig, network: str, *, warm: bool = False) -> dict[str, Any]:
    body = training_pipeline.substitute_placeholders(
        tuning_definition_body(config, network, warm_start=warm), SAMPLE_VALUES
    )
    return json.loads(body)


@pytest.mark.parametrize(("config", "network", "warm"), CASES)
def test_every_step_is_a_valid_sagemaker_request(config: StageConfig, network: str, warm: bool) -> None:
    built = tuning_pipeline_definition(config, network, warm_start=warm)
    assert [(step["Name"], step["Type"]) for step in steps_of(built["Steps"])] == [
        ("Tune", "Tuning"),
        ("Champion", "Processing"),
        ("Evaluate", "Processing"),
        ("QualityGate", "Condition"),
        ("Register", "RegisterModel"),
        ("Fail", "Fail"),
    ]
    for step in steps_of(built["Steps"]):
        if step["Type"] == "Tuning":
            check_against_shape(
                step["Arguments"], SAGEMAKER.shape_for("CreateHyperParameterTuningJobRequest"), step["Name"]
            )
        elif step["Type"] in STEP_SHAPES:
            check_against_shape(step["Arguments"], SAGEMAKER.shape_for(STEP_SHAPES[step["Type"]][0]), step["Name"])


@pytest.mark.parametrize(("config", "network", "warm"), CASES)
def test_every_reference_resolves_and_every_parameter_is_used(config: StageConfig, network: str, warm: bool) -> None:
    built = tuning_pipeline_definition(config, network, warm_start=warm)
    parameters = {parameter["Name"] for parameter in built["Parameters"]}
    ordered = list(steps_of(built["Steps"]))
    names = [step["Name"] for step in ordered]
    by_name = dict(zip(names, ordered, strict=True))
    used: set[str] = set()
    for position, step in enumerate(ordered):
        for reference in expressions(step, "Get"):
            root, _, path = reference.partition(".")
            if root == "Parameters":
                assert path in parameters, f"{step['Name']}: unknown parameter {path}"
                used.add(path)
                continue
            if root == "Execution":
                assert path in EXECUTION_VARIABLES
                continue
            source, _, property_path = path.partition(".")
            assert source in names[:position], f"{step['Name']} reads {source}, which does not run before it"
            if property_path.startswith("PropertyFiles."):
                continue  # checked for the same steps by test_pipeline_definition.py
            kind = by_name[source]["Type"]
            if kind == "Tuning":
                # The pipeline service joins both responses into the step's properties.
                found = []
                for shape in TUNING_SHAPES:
                    try:
                        found.append(resolve_property(SAGEMAKER.shape_for(shape), property_path))
                    except AssertionError:
                        continue
                assert found, f"{reference} is in neither {' nor '.join(TUNING_SHAPES)}"
            else:
                resolve_property(SAGEMAKER.shape_for(STEP_SHAPES[kind][1]), property_path)
    assert used == parameters, f"unused parameters: {sorted(parameters - used)}"


@pytest.mark.parametrize(("config", "network", "warm"), CASES)
def test_tuned_knobs_are_ranges_and_every_other_knob_is_a_static_parameter(
    config: StageConfig, network: str, warm: bool
) -> None:
    spec = get_network(network)
    tune = steps(config, network, warm=warm)["Tune"]["Arguments"]
    job = tune["HyperParameterTuningJobConfig"]
    ranged = {item["Name"] for kind in job["ParameterRanges"].values() for item in kind}
    assert ranged == {name for name, _ in config.tuning.ranges_for(network)}
    static = tune["TrainingJobDefinition"]["StaticHyperParameters"]
    parameters = {parameter.name: parameter for parameter in tuning_parameters(config, network, warm_start=warm)}
    for knob in spec.hyperparameters:
        fed = [parameter for parameter in parameters.values() if parameter.hyperparameter == knob]
        if knob.name in ranged:
            assert knob.name not in static and not fed, f"{knob.name} is tuned and static"
        else:
            assert fed and json.dumps(static[knob.name]).count(f"Parameters.{fed[0].name}") == 1
    assert job["HyperParameterTuningJobObjective"] == {
        "Type": spec.tuning.objective.type,
        "MetricName": spec.tuning.objective.metric,
    }
    metrics = tune["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    assert spec.tuning.objective.metric in {metric["Name"] for metric in metrics}
    assert spec.tuning.objective.metric.startswith("val_"), "the test channel is the gate's: tuning on it leaks"


@pytest.mark.parametrize("network", list(NETWORKS))
def test_the_candidate_is_the_best_trial_s_model_where_its_training_job_wrote_it(network: str) -> None:
    config = stage("prod")
    built = rendered(config, network)
    named = {step["Name"]: step for step in steps_of(built["Steps"])}
    definition = named["Tune"]["Arguments"]["TrainingJobDefinition"]
    best = "Steps.Tune.BestTrainingJob.TrainingJobName"
    model = {
        "Std:Join": {
            "On": "/",
            "Values": [
                "s3:/",
                SAMPLE_VALUES["ArtifactsBucket"],
                f"models/{network}",
                {"Get": best},
                "output/model.tar.gz",
            ],
        }
    }
    joined = "/".join(v if isinstance(v, str) else "JOB" for v in model["Std:Join"]["Values"])
    assert joined == f"{definition['OutputDataConfig']['S3OutputPath']}JOB/output/model.tar.gz"
    evaluate = named["Evaluate"]["Arguments"]
    model_input = next(item for item in evaluate["ProcessingInputs"] if item["InputName"] == "model")
    assert model_input["S3Input"]["S3Uri"] == evaluate["Environment"]["MODEL_DATA_URL"] == model
    register = named["Register"]["Arguments"]
    assert register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == model
    # The gate is the training pipeline's: the same Champion and Fail, the same Register but for
    # the model and what the version records of the tuning run.
    trained = training_pipeline.substitute_placeholders(
        training_pipeline.definition_body(config, network), SAMPLE_VALUES
    )
    training = {step["Name"]: step for step in steps_of(json.loads(trained)["Steps"])}
    assert named["Champion"] == training["Champion"] and named["Fail"] == training["Fail"]
    as_trained = json.loads(json.dumps(register))
    as_trained["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = {
        "Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"
    }
    trained_metadata = training["Register"]["Arguments"]["CustomerMetadataProperties"]
    as_trained["CustomerMetadataProperties"] = {
        key: value for key, value in as_trained["CustomerMetadataProperties"].items() if key in trained_metadata
    }
    assert as_trained == training["Register"]["Arguments"]
    metadata = register["CustomerMetadataProperties"]
    assert metadata["trial"] == {"Get": best}
    assert metadata["tuning_job"] == {"Get": "Steps.Tune.HyperParameterTuningJobName"}
    for name, _ in config.tuning.ranges_for(network):
        assert metadata[f"tuned_{name}"] == {"Get": f"Steps.Tune.BestTrainingJob.TunedHyperParameters['{name}']"}
    assert len(metadata) <= SAGEMAKER.shape_for("CustomerMetadataMap").metadata["max"]


def test_the_evaluate_step_is_the_training_pipeline_s_but_for_the_model() -> None:
    config = stage("local")
    tuned = steps(config, "cnn")["Evaluate"]
    trained = {step["Name"]: step for step in training_pipeline.pipeline_definition(config, "cnn")["Steps"]}["Evaluate"]
    model = json.dumps(tuned["Arguments"]["Environment"]["MODEL_DATA_URL"])
    assert json.dumps(tuned).replace(model, '{"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}') == json.dumps(
        trained
    )


def test_strategy_early_stopping_and_limits_come_from_the_stage() -> None:
    default = steps(stage("dev"), "cnn")["Tune"]["Arguments"]["HyperParameterTuningJobConfig"]
    assert (default["Strategy"], default["TrainingJobEarlyStoppingType"]) == ("Bayesian", "Auto")
    assert "StrategyConfig" not in default
    assert default["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": {"Get": "Parameters.MaxTrainingJobs"},
        "MaxParallelTrainingJobs": {"Get": "Parameters.MaxParallelTrainingJobs"},
    }
    quiet = stage_with_tuning({"strategy": "Random", "early_stopping": False, "max_runtime_seconds": 7200})
    job = steps(quiet, "cnn")["Tune"]["Arguments"]["HyperParameterTuningJobConfig"]
    assert (job["Strategy"], job["TrainingJobEarlyStoppingType"]) == ("Random", "Off")
    assert job["ResourceLimits"]["MaxRuntimeInSeconds"] == 7200
    hyperband = stage_with_tuning({"strategy": "Hyperband", "hyperband_min_epochs": 2, "random_seed": None})
    job = steps(hyperband, "rnn")["Tune"]["Arguments"]["HyperParameterTuningJobConfig"]
    # SageMaker requires early stopping off with Hyperband, which stops trials itself at its rungs.
    assert (job["Strategy"], job["TrainingJobEarlyStoppingType"]) == ("Hyperband", "Off")
    # MaxResource left to SageMaker, which takes the static `epochs`: the Epochs of the run.
    assert job["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 2}}
    static = steps(hyperband, "rnn")["Tune"]["Arguments"]["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["epochs"] == {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Epochs"}]}}
    assert "RandomSeed" not in job


def test_a_stage_narrows_the_registry_ranges() -> None:
    config = stage_with_tuning(
        {"ranges": {"cnn": {"learning_rate": {"min": 0.001, "scaling": "Linear"}, "dense_units": None}}}
    )
    tune = steps(config, "cnn")["Tune"]["Arguments"]
    assert tune["HyperParameterTuningJobConfig"]["ParameterRanges"] == {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Linear"},
            {"Name": "dropout", "MinValue": "0.0", "MaxValue": "0.5", "ScalingType": "Linear"},
        ]
    }
    # Left out of the search, dense_units is a static hyperparameter fed by its parameter again.
    assert tune["TrainingJobDefinition"]["StaticHyperParameters"]["dense_units"] == {
        "Std:Join": {"On": "", "Values": [{"Get": "Parameters.DenseUnits"}]}
    }


def test_a_warm_start_names_its_parent_by_a_parameter_that_must_be_given() -> None:
    config = stage("local")
    cold = tuning_pipeline_definition(config, "cnn", warm_start=False)
    warm = tuning_pipeline_definition(config, "cnn", warm_start=True)
    assert "WarmStartConfig" not in cold["Steps"][0]["Arguments"]
    assert warm["Steps"][0]["Arguments"]["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": {"Get": "Parameters.WarmStartTuningJob"}}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    (parent,) = [p for p in warm["Parameters"] if p["Name"] == "WarmStartTuningJob"]
    assert parent == {"Name": "WarmStartTuningJob", "Type": "String"}, "no default: a run must name its parent"
    assert [p["Name"] for p in warm["Parameters"] if p["Name"] != "WarmStartTuningJob"] == [
        p["Name"] for p in cold["Parameters"]
    ]


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_trial_limits_below_one_or_not_integers_are_refused(raw: str) -> None:
    limits = [p for p in tuning_parameters(stage("local"), "cnn", warm_start=False) if p.name.startswith("Max")]
    assert [p.name for p in limits] == ["MaxTrainingJobs", "MaxParallelTrainingJobs"]
    for parameter in limits:
        with pytest.raises(ValueError, match=parameter.name):
            parameter.parse(raw)


@pytest.mark.parametrize(("config", "network", "warm"), CASES)
def test_body_is_deterministic_and_fits(config: StageConfig, network: str, warm: bool) -> None:
    body = tuning_definition_body(config, network, warm_start=warm)
    assert body == tuning_definition_body(config, network, warm_start=warm)
    assert set(re.findall(r"\$\{([^}]*)\}", body)) == set(training_pipeline.PLACEHOLDERS)
    assert len(json.dumps(body)) < 24_000
