"""The local pipeline executor's parts, without training anything: how it resolves references
(on the project's own definition), orders steps, refuses steps it cannot run, registers models
and fails executions in moto, reads metrics from a log; the upload order that starts a run; and
how held-out samples are chosen and the endpoint's answers set beside the truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.config import parse_stage_config
from infra.definitions import training_pipeline as definition
from mlops.datasets import upload_channels
from mlops.local.deployed_pipelines import TemplateValues
from mlops.local.moto import LocalAws, moto_server
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed, StepOutcome
from mlops.local.pipeline_graph import check_step_types, execution_order
from mlops.local.pipeline_jobs import final_metric_data
from mlops.local.pipeline_references import DefinitionError, ExecutionContext, parameter_values
from mlops.local.samples import EarlySamples, Sample, compare, held_out_samples, summary
from mlops.local.tuning_job import TrialRun
from training.networks import get_network, metric_regex

CDK_CONTEXT: dict[str, Any] = json.loads((Path(__file__).resolve().parent.parent / "cdk.json").read_text())["context"]
LOCAL = parse_stage_config(CDK_CONTEXT["stages"], "local")
VALUES = {name: f"<{name}>" for name in definition.PLACEHOLDERS} | {
    definition.ARTIFACTS_BUCKET: "artifacts",
    definition.DATA_BUCKET: "data",
}
EXECUTION = {
    "PipelineExecutionId": "abc123def456",
    "PipelineName": "mlops-local-cnn",
    "PipelineExecutionArn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/mlops-local-cnn/execution/abc",
}
REPORT_URI = "s3://artifacts/pipelines/cnn/abc123def456/evaluation/evaluation.json"
CHAMPION_URI = "s3://artifacts/pipelines/cnn/abc123def456/champion"


def cnn_definition() -> dict[str, Any]:
    """The project's cnn pipeline, its placeholders filled as Fn::Sub would."""
    return json.loads(definition.substitute_placeholders(definition.definition_body(LOCAL, "cnn"), VALUES))


def steps_by_name(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for step in steps:
        found[step["Name"]] = step
        found.update(
            steps_by_name([*step["Arguments"].get("IfSteps", []), *step["Arguments"].get("ElseSteps", [])])
            if step["Type"] == "Condition"
            else {}
        )
    return found


def context(overrides: dict[str, str] | None = None, documents: dict[str, Any] | None = None) -> ExecutionContext:
    pipeline = cnn_definition()
    return ExecutionContext(
        parameters=parameter_values(pipeline["Parameters"], overrides or {}),
        execution=EXECUTION,
        read_json=lambda uri: (documents or {})[uri],
    )


def finished_train_and_evaluate(run: ExecutionContext) -> None:
    """What DescribeTrainingJob / DescribeProcessingJob answered for the three job steps."""
    run.steps["Champion"] = {
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "champion", "S3Output": {"S3Uri": CHAMPION_URI}}]}
    }
    run.steps["Train"] = {
        "ModelArtifacts": {"S3ModelArtifacts": "s3://artifacts/models/cnn/job/output/model.tar.gz"},
        "FinalMetricDataList": [
            {"MetricName": "val_loss", "Value": 0.25},
            {"MetricName": "test_accuracy", "Value": 0.97},
        ],
    }
    run.steps["Evaluate"] = {
        "ProcessingOutputConfig": {
            "Outputs": [{"OutputName": "evaluation", "S3Output": {"S3Uri": REPORT_URI.rsplit("/", 1)[0]}}]
        }
    }
    run.property_files["Evaluate"] = {"EvaluationReport": REPORT_URI}


# --- parameters ------------------------------------------------------------------------------


def test_parameters_take_the_defaults_and_typed_overrides() -> None:
    values = context({"Epochs": "3", "QualityThreshold": "0.5", "Precision": "float32"}).parameters
    assert values["Epochs"] == 3 and values["QualityThreshold"] == 0.5 and values["Precision"] == "float32"
    # the stage's default, as the definition declares it
    assert values["BatchSize"] == LOCAL.hyperparameters_for("cnn")["batch_size"]
    assert values["InputDataUri"] == "s3://data/cnn/"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Epochs": "three"}, "parameter Epochs is Integer, got 'three'"),
        (
            {"ModelApprovalStatus": "Maybe"},
            "parameter ModelApprovalStatus must be one of Approved, PendingManualApproval",
        ),
        ({"Epocs": "3"}, "the pipeline has no parameter Epocs"),
    ],
)
def test_a_bad_parameter_is_named(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        context(overrides)


# --- references, on the project's own definition ---------------------------------------------


def test_train_step_arguments_resolve_as_sagemaker_resolves_them() -> None:
    run = context({"Epochs": "3", "LearningRate": "0.01"})
    train = run.resolve(steps_by_name(cnn_definition()["Steps"])["Train"]["Arguments"])
    assert train["HyperParameters"]["epochs"] == "3"  # Integer through Std:Join: text
    assert train["HyperParameters"]["learning_rate"] == "0.01"
    assert train["HyperParameters"]["precision"] == "auto"  # a String parameter, as it is
    assert train["ResourceConfig"]["InstanceCount"] == 1  # an Integer where the API wants one
    assert [channel["DataSource"]["S3DataSource"]["S3Uri"] for channel in train["InputDataConfig"]] == [
        "s3://data/cnn/train/",
        "s3://data/cnn/validation/",
        "s3://data/cnn/test/",
        "<SourceBundleUri>",  # the local stage isolates: the code comes in as a channel
    ]
    assert train["CheckpointConfig"]["S3Uri"] == "s3://artifacts/checkpoints/cnn/abc123def456"
    assert "Get" not in json.dumps(train) and "Std:" not in json.dumps(train)


def test_step_properties_are_read_from_finished_steps() -> None:
    run = context()
    finished_train_and_evaluate(run)
    steps = steps_by_name(cnn_definition()["Steps"])
    evaluate = run.resolve(steps["Evaluate"]["Arguments"])
    inputs = {item["InputName"]: item["S3Input"]["S3Uri"] for item in evaluate["ProcessingInputs"]}
    assert inputs["model"] == "s3://artifacts/models/cnn/job/output/model.tar.gz"
    assert inputs["champion"] == CHAMPION_URI
    assert evaluate["Environment"] == {
        "CHAMPION_TOLERANCE": "0.0",
        "MODEL_DATA_URL": "s3://artifacts/models/cnn/job/output/model.tar.gz",
    }
    assert run.resolve({"Get": "Steps.Train.FinalMetricDataList['test_accuracy'].Value"}) == 0.97
    assert run.resolve({"Get": "Steps.Train.FinalMetricDataList[0].MetricName"}) == "val_loss"
    assert evaluate["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == REPORT_URI.rsplit("/", 1)[0]


@pytest.mark.parametrize(
    ("accuracy", "threshold", "bound", "passes"),
    [
        (0.97, None, 0.97, True),
        (0.95, None, 0.95, True),
        (0.94, None, 0.94, False),
        (0.6, "0.5", 0.6, True),
        (0.97, None, 0.975, False),
        (0.97, None, 0.965, True),
    ],
)
def test_the_quality_gate_reads_the_evaluation_report(
    accuracy: float, threshold: str | None, bound: float, passes: bool
) -> None:
    """Both conditions hold, or the candidate fails: the threshold, and the champion's bound."""
    summary = f"champion mlops-local-cnn version 1 has test_accuracy = {bound:.4f}; ..."
    run = context(
        {"QualityThreshold": threshold} if threshold else {},
        {
            REPORT_URI: {
                "metrics": {"test_accuracy": {"value": accuracy}},
                "champion_challenger": {"bound": bound, "summary": summary},
            }
        },
    )
    finished_train_and_evaluate(run)
    steps = steps_by_name(cnn_definition()["Steps"])
    gate = run.resolve(steps["QualityGate"]["Arguments"]["Conditions"])
    assert all(run.holds(condition) for condition in steps["QualityGate"]["Arguments"]["Conditions"]) is passes
    assert [condition["LeftValue"] for condition in gate] == [accuracy, accuracy]
    assert [condition["RightValue"] for condition in gate] == [float(threshold or 0.95), bound]
    register = run.resolve(steps["Register"]["Arguments"])
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == REPORT_URI
    assert register["ModelMetrics"]["Explainability"]["Report"]["S3Uri"] == REPORT_URI.replace(
        "evaluation.json", "explanations.json"
    )
    assert register["CustomerMetadataProperties"]["quality_value"] == str(accuracy)
    assert register["CustomerMetadataProperties"]["champion"] == summary
    fail = run.resolve(steps["Fail"]["Arguments"])
    assert fail["ErrorMessage"] == (
        f"quality gate failed: test_accuracy = {accuracy} but must be >= "
        f"{float(threshold or 0.95)} (QualityThreshold); {summary}"
    )


def test_conditions_combine_and_compare_numbers() -> None:
    run = context({"Epochs": "40"})
    forty = {"Get": "Parameters.Epochs"}
    assert run.holds({"Type": "GreaterThan", "LeftValue": forty, "RightValue": 39.5})
    assert run.holds({"Type": "Not", "Expression": {"Type": "Equals", "LeftValue": forty, "RightValue": 41}})
    assert run.holds(
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "LessThan", "LeftValue": forty, "RightValue": 1},
                {"Type": "LessThanOrEqualTo", "LeftValue": forty, "RightValue": 40},
            ],
        }
    )
    assert not run.holds({"Type": "LessThan", "LeftValue": forty, "RightValue": 40})
    assert run.holds({"Type": "In", "QueryValue": {"Get": "Parameters.Precision"}, "Values": ["auto", "float32"]})
    with pytest.raises(DefinitionError, match="compares 'auto' with 1"):
        run.holds({"Type": "Equals", "LeftValue": {"Get": "Parameters.Precision"}, "RightValue": 1})
    with pytest.raises(DefinitionError, match="condition type 'Between' is not one"):
        run.holds({"Type": "Between", "LeftValue": 1, "RightValue": 2})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"Get": "Parameters.Epocs"}, "Parameters.Epocs: the pipeline has no parameter 'Epocs'"),
        ({"Get": "Execution.StartDateTime"}, "the local executor knows only Execution.PipelineExecutionId"),
        ({"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}, "step 'Train' has not run"),
        ({"Get": "Properties.Foo"}, "a Get must start with Parameters., Execution. or Steps."),
        ({"Std:Format": {"Value": "x"}}, "Std:Format is not a function the local executor resolves"),
        ({"Std:JsonGet": {"PropertyFile": "EvaluationReport", "Path": "a"}}, "PropertyFile must be a Get"),
        ({"Get": "Parameters.Epochs", "Default": 3}, "Get must be the only key of its object"),
    ],
)
def test_what_cannot_be_resolved_is_named(expression: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        context().resolve(expression)


def test_a_missing_property_names_the_path() -> None:
    run = context(documents={REPORT_URI: {"metrics": {}}})
    finished_train_and_evaluate(run)
    with pytest.raises(DefinitionError, match=r"'ModelArtifacts.S3Model' does not exist"):
        run.resolve({"Get": "Steps.Train.ModelArtifacts.S3Model"})
    with pytest.raises(DefinitionError, match=r"'metrics.test_accuracy' does not exist"):
        run.resolve(
            {
                "Std:JsonGet": {
                    "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                    "Path": "metrics.test_accuracy.value",
                }
            }
        )


# --- step order and step types ---------------------------------------------------------------


def step(name: str, kind: str = "Fail", depends_on: tuple[str, ...] = (), arguments: Any = None) -> dict[str, Any]:
    found: dict[str, Any] = {"Name": name, "Type": kind, "Arguments": arguments or {}}
    if depends_on:
        found["DependsOn"] = list(depends_on)
    return found


def test_steps_run_after_what_they_read_and_depend_on() -> None:
    steps = [
        step("Report", arguments={"ErrorMessage": {"Get": "Steps.Score.Outcome"}}),
        step(
            "Score",
            "Condition",
            depends_on=("Prepare",),
            arguments={
                "Conditions": [],
                "IfSteps": [
                    step("Inner", arguments={"ErrorMessage": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}})
                ],
            },
        ),
        step("Train"),
        step("Prepare"),
    ]
    assert [found["Name"] for found in execution_order(steps)] == ["Train", "Prepare", "Score", "Report"]
    assert [found["Name"] for found in execution_order(cnn_definition()["Steps"])] == [
        "Train",
        "Champion",
        "Evaluate",
        "QualityGate",
    ]


def test_a_dependency_cycle_or_an_unknown_step_is_named() -> None:
    with pytest.raises(DefinitionError, match="steps A, B depend on each other in a cycle"):
        execution_order([step("A", depends_on=("B",)), step("B", depends_on=("A",))])
    with pytest.raises(DefinitionError, match="step 'A' depends on Ghost"):
        execution_order([step("A", depends_on=("Ghost",))])


@pytest.mark.parametrize(
    "steps",
    [
        [step("Train", "Training"), step("Notify", "Lambda")],
        [step("Gate", "Condition", arguments={"IfSteps": [step("Notify", "Lambda")], "ElseSteps": []})],
    ],
)
def test_a_step_type_it_cannot_run_is_refused_naming_step_and_type(steps: list[dict[str, Any]]) -> None:
    with pytest.raises(
        DefinitionError,
        match="step 'Notify' has type 'Lambda', which the local executor does not "
        "run \\(it runs Training, Tuning, Processing, Condition, RegisterModel, Fail, Model, Transform\\)",
    ):
        check_step_types(steps)
    check_step_types(cnn_definition()["Steps"])


# --- runs against moto: registering, failing, refusing ---------------------------------------


class RecordingReporter:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
        self.events.append(("started", step, step_type))

    def step_log(self, step: str, line: str) -> None:
        self.events.append(("log", step, line))

    def step_ended(self, outcome: StepOutcome) -> None:
        self.events.append(("ended", outcome.step, outcome.status, outcome.detail))

    def trial_update(self, step: str, trial: TrialRun) -> None:
        self.events.append(("trial", step, trial.name, trial.status))


GROUP = "mlops-local-gate"
GATE = {
    "Name": "Gate",
    "Type": "Condition",
    "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": {"Get": "Parameters.Score"}, "RightValue": 0.5}],
        "IfSteps": [
            {
                "Name": "Register",
                "Type": "RegisterModel",
                "Arguments": {
                    "ModelPackageGroupName": GROUP,
                    "ModelApprovalStatus": {"Get": "Parameters.Approval"},
                    "InferenceSpecification": {
                        "Containers": [
                            {
                                "Image": "image",
                                "ModelDataUrl": {
                                    "Std:Join": {
                                        "On": "/",
                                        "Values": [
                                            "s3://artifacts/models",
                                            {"Get": "Execution.PipelineExecutionId"},
                                            "model.tar.gz",
                                        ],
                                    }
                                },
                            }
                        ],
                        "SupportedContentTypes": ["application/json"],
                        "SupportedResponseMIMETypes": ["application/json"],
                    },
                    "CustomerMetadataProperties": {
                        "score": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Score"}]}}
                    },
                },
            }
        ],
        "ElseSteps": [
            {
                "Name": "Fail",
                "Type": "Fail",
                "Arguments": {
                    "ErrorMessage": {
                        "Std:Join": {"On": " ", "Values": ["score", {"Get": "Parameters.Score"}, "is below 0.5"]}
                    }
                },
            }
        ],
    },
}


def create_pipeline(aws: LocalAws, steps: list[dict[str, Any]]) -> str:
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    sagemaker.create_pipeline(
        PipelineName="gate",
        RoleArn="arn:aws:iam::123456789012:role/pipeline",
        PipelineDefinition=json.dumps(
            {
                "Version": "2020-12-01",
                "Steps": steps,
                "Parameters": [
                    {"Name": "Score", "Type": "Float", "DefaultValue": 0.9},
                    {"Name": "Approval", "Type": "String", "DefaultValue": "PendingManualApproval"},
                ],
            }
        ),
    )
    return "gate"


def test_a_passing_condition_registers_the_model_with_the_resolved_arguments(tmp_path: Path) -> None:
    with moto_server() as aws:
        reporter = RecordingReporter()
        executor = LocalPipelineExecutor(aws, tmp_path, reporter)
        run = executor.execute(executor.start(create_pipeline(aws, [GATE]), {"Approval": "Approved"}))
        sagemaker = aws.client("sagemaker")
        package = sagemaker.describe_model_package(ModelPackageName=run.registered_model_arn)
        (execution,) = sagemaker.list_pipeline_executions(PipelineName="gate")["PipelineExecutionSummaries"]
    assert run.status == "Succeeded" and execution["PipelineExecutionStatus"] == "Succeeded"
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == (
        f"s3://artifacts/models/{run.execution_id}/model.tar.gz"
    )
    assert package["CustomerMetadataProperties"] == {"score": "0.9"}
    assert [event[:3] for event in reporter.events] == [
        ("started", "Gate", "Condition"),
        ("ended", "Gate", "Succeeded"),
        ("started", "Register", "RegisterModel"),
        ("ended", "Register", "Succeeded"),
    ]


def test_a_fail_step_fails_the_execution_with_its_message(tmp_path: Path) -> None:
    with moto_server() as aws:
        executor = LocalPipelineExecutor(aws, tmp_path, RecordingReporter())
        run = executor.start(create_pipeline(aws, [GATE]), {"Score": "0.25"})
        with pytest.raises(StepFailed) as failed:
            executor.execute(run)
        sagemaker = aws.client("sagemaker")
        (execution,) = sagemaker.list_pipeline_executions(PipelineName="gate")["PipelineExecutionSummaries"]
        packages = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert (failed.value.step, failed.value.step_type, failed.value.reason) == (
        "Fail",
        "Fail",
        "score 0.25 is below 0.5",
    )
    assert run.status == "Failed" and [outcome.status for outcome in run.outcomes] == ["Succeeded", "Failed"]
    assert execution["PipelineExecutionStatus"] == "Failed"
    assert "score 0.25 is below 0.5" in execution["PipelineExecutionFailureReason"]
    assert packages == []


def test_a_pipeline_with_a_step_it_cannot_run_is_refused_before_an_execution_starts(tmp_path: Path) -> None:
    with moto_server() as aws:
        executor = LocalPipelineExecutor(aws, tmp_path, RecordingReporter())
        pipeline = create_pipeline(aws, [GATE, {"Name": "Notify", "Type": "Lambda", "Arguments": {}}])
        with pytest.raises(DefinitionError, match="step 'Notify' has type 'Lambda'"):
            executor.start(pipeline, {})
        executions = aws.client("sagemaker").list_pipeline_executions(PipelineName=pipeline)
    assert executions["PipelineExecutionSummaries"] == []


# --- metrics, template values, upload order --------------------------------------------------


def test_final_metrics_are_the_last_value_each_definition_captured() -> None:
    network = get_network("cnn")
    log = "\n".join(
        [
            "[metrics] epoch=1 train_loss=0.9 val_loss=0.8",
            "noise val_loss=not-a-number",
            "[metrics] epoch=2 train_loss=0.5 val_loss=0.45",
            "[metrics] test_loss=0.4 test_accuracy=0.97",
        ]
    )
    found = {metric["MetricName"]: metric["Value"] for metric in final_metric_data(network.metric_definitions, log)}
    assert found == {"train_loss": 0.5, "val_loss": 0.45, "test_loss": 0.4, "test_accuracy": 0.97}
    assert final_metric_data([{"Name": "x", "Regex": metric_regex("x")}], log) == []


def test_template_values_fill_sub_like_cloudformation() -> None:
    values = TemplateValues(LocalAws(port=1), "mlops-local-pipelines", {})
    body = {
        "Fn::Sub": [
            "s3://${Bucket}/${AWS::Region}/${!Literal}/${AWS::AccountId}",
            {"Bucket": {"Fn::Join": ["-", ["a", {"Ref": "AWS::Partition"}]]}},
        ]
    }
    assert values.resolve(body) == "s3://a-aws/us-east-1/${Literal}/123456789012"
    with pytest.raises(DefinitionError, match="Fn::Select in stack mlops-local-pipelines is not a function"):
        values.resolve({"Fn::Select": [0, ["a"]]})


def test_the_train_channel_spec_is_uploaded_last(tmp_path: Path) -> None:
    """Its arrival starts a retraining run: the whole dataset must be there before it."""
    channels = {}
    for channel in ("train", "validation", "test"):
        channels[channel] = tmp_path / channel
        channels[channel].mkdir()
        for name in ("spec.json", "part-00000.tfrecord", "part-00001.tfrecord"):
            (channels[channel] / name).write_text(name)

    class RecordingS3:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def upload_file(self, path: str, bucket: str, key: str) -> None:
            self.keys.append(key)

    s3 = RecordingS3()
    upload_channels(channels, bucket="data", network="cnn", s3_client=s3)
    assert s3.keys[-1] == "cnn/train/spec.json"
    assert len(s3.keys) == 9
    for channel in channels:
        mine = [key for key in s3.keys if key.startswith(f"cnn/{channel}/")]
        assert mine[-1] == f"cnn/{channel}/spec.json"


# --- held-out samples and the endpoint's answers ---------------------------------------------


def test_held_out_samples_spread_over_the_test_channel(tmp_path: Path) -> None:
    from mlops.datasets import prepare

    # The breast cancer test channel starts with a run of malignant (anomalous) examples.
    channels = prepare("autoencoder", tmp_path)
    samples, class_names = held_out_samples(channels["test"], get_network("autoencoder"), 10)
    assert [sample.index for sample in samples] == [0, 33, 67, 100, 133, 167, 200, 233, 267, 300]
    assert {class_names[sample.target] for sample in samples} == {"normal", "anomaly"}
    assert all(len(sample.input) == 30 for sample in samples)
    assert len(held_out_samples(channels["test"], get_network("autoencoder"), 1000)[0]) == 301


@pytest.mark.slow
def test_early_samples_are_read_in_a_child_process_or_stopped_unread(tmp_path: Path) -> None:
    from mlops.datasets import prepare

    channels = prepare("autoencoder", tmp_path)
    network = get_network("autoencoder")
    early = EarlySamples(channels["test"], network, 10)
    assert early.result() == held_out_samples(channels["test"], network, 10)
    assert early._child.poll() is not None

    unread = EarlySamples(channels["test"], network, 10)
    unread.stop()
    assert unread._child.poll() is not None, "stop() waits for the child to end"

    missing = EarlySamples(tmp_path / "no-such-channel", network, 10)
    with pytest.raises(Exception, match="no-such-channel"):
        missing.result()


def test_answers_are_set_beside_the_truth_per_task() -> None:
    images = [Sample(0, [[0]], 1), Sample(1, [[0]], 0)]
    answers = [
        {"label": "b", "probabilities": {"a": 0.2, "b": 0.8}},
        {"label": "b", "probabilities": {"a": 0.4, "b": 0.6}},
    ]
    rows = compare(get_network("cnn"), ("a", "b"), images, answers)
    assert [(row.truth, row.prediction, row.correct) for row in rows] == [
        ("b", "b (p=0.80)", True),
        ("a", "b (p=0.60)", False),
    ]
    assert summary(rows) == "1 of 2 samples predicted right"

    windows = [Sample(0, [[1.0]], [10.0, 12.0])]
    rows = compare(get_network("rnn"), (), windows, [{"forecast": [11.0, 11.0]}])
    assert (rows[0].truth, rows[0].prediction, rows[0].error, rows[0].correct) == ("10, 12", "11, 11", 1.0, None)
    assert summary(rows) == "mean absolute error 1 over 1 samples"

    rows = compare(
        get_network("autoencoder"),
        ("normal", "anomaly"),
        [Sample(4, [0.5], 1)],
        [{"reconstruction_error": 2.0, "threshold": 0.5, "is_anomaly": True, "embedding": [0.1]}],
    )
    assert (rows[0].truth, rows[0].prediction, rows[0].correct) == ("anomaly", "anomaly (error 2, threshold 0.5)", True)
    with pytest.raises(ValueError, match="answered 1 predictions for 2 instances"):
        compare(get_network("cnn"), ("a", "b"), images, answers[:1])
