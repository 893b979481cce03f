"""`mlops train | runs | models | approve | reject` against a moto server on 127.0.0.1.

moto records pipelines and executions but runs nothing (and CloudFormation skips pipelines), so
each test creates the stage's pipeline from the real definition and the model registry group
with boto3, runs the CLI through `mlops.cli.main` exactly as the console script does, and reads
back what moto recorded. Failure paths edit moto's backend state, which this process shares with
the threaded server.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from moto.backends import get_backend
from test_pipeline_definition import CDK_CONTEXT, SAMPLE_VALUES

from infra import naming
from infra.config import parse_stage_config
from infra.definitions import training_pipeline as definition
from mlops import cli
from mlops.costs import PRICES_FILE
from mlops.job_costs import processing_job_cost, training_job_cost
from mlops.local.moto import ACCOUNT, REGION, LocalAws, moto_server

LOCAL = parse_stage_config(CDK_CONTEXT["stages"], "local")
PIPELINE = naming.pipeline_name(LOCAL.prefix(), "cnn")
GROUP = naming.model_package_group_name(LOCAL.prefix(), "cnn")
REPORTS_BUCKET = "reports"


class Local:
    """The moto server, with one client per service (creating a boto3 client takes ~0.2 s)."""

    def __init__(self, server: LocalAws) -> None:
        self.server = server
        self.sagemaker = server.client("sagemaker")
        self.s3 = server.client("s3")


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    with moto_server() as server:
        yield Local(server)


@pytest.fixture
def aws(local: Local, monkeypatch: pytest.MonkeyPatch) -> Local:
    """An empty local AWS holding the local stage's cnn pipeline and model group (not rnn's)."""
    requests.post(f"{local.server.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in local.server.env.items():
        monkeypatch.setenv(name, value)
    # Tables as wide as a terminal would show them, not folded at 80 columns.
    monkeypatch.setenv("COLUMNS", "200")
    local.sagemaker.create_pipeline(
        PipelineName=PIPELINE,
        RoleArn=SAMPLE_VALUES[definition.EXECUTION_ROLE_ARN],
        PipelineDefinition=definition.substitute_placeholders(definition.definition_body(LOCAL, "cnn"), SAMPLE_VALUES),
    )
    local.sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    return local


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`mlops ARGS...` in this process: (exit code, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["mlops", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def executions(aws: Local, pipeline: str = PIPELINE) -> list[dict[str, Any]]:
    return aws.sagemaker.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]


def recorded_parameters(aws: Local) -> list[dict[str, str]]:
    (execution,) = executions(aws)
    return aws.sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution["PipelineExecutionArn"])[
        "PipelineParameters"
    ]


def test_train_starts_the_stage_pipeline_with_typed_parameters(aws: Local, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        "train",
        "cnn",
        "--param",
        "epochs=3",
        "--param",
        "LearningRate=1e-2",
        "--param",
        "TrainingInstanceCount=2.0",
        "--param",
        "precision=float32",
        capsys=capsys,
    )
    assert (code, err) == (0, "")
    assert recorded_parameters(aws) == [
        {"Name": "Epochs", "Value": "3"},
        {"Name": "LearningRate", "Value": "0.01"},
        {"Name": "TrainingInstanceCount", "Value": "2"},
        {"Name": "Precision", "Value": "float32"},
    ]
    assert PIPELINE in out and executions(aws)[0]["PipelineExecutionArn"] in out


def test_train_without_parameters_uses_the_pipeline_defaults(aws: Local, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("train", "cnn", "--stage", "local", capsys=capsys)
    assert code == 0 and "stage defaults" in out
    assert recorded_parameters(aws) == []


def test_wait_reports_success_and_says_moto_cannot_list_steps(aws: Local, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("train", "cnn", "--wait", "--poll-seconds", "0", capsys=capsys)
    assert code == 0
    assert "execution Succeeded" in out
    assert "does not implement ListPipelineExecutionSteps" in out


def test_a_failed_run_exits_1_with_its_reason(
    aws: Local, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = get_backend("sagemaker")[ACCOUNT][REGION]
    start = backend.start_pipeline_execution

    def start_and_fail(*args: Any, **kwargs: Any) -> dict[str, str]:
        started = start(*args, **kwargs)
        execution = backend.pipelines[PIPELINE].pipeline_executions[started["PipelineExecutionArn"]]
        execution.pipeline_execution_status = "Failed"
        execution.pipeline_execution_failure_reason = "Step failure: One or multiple steps failed."  # type: ignore[assignment]  # moto's None until set
        return started

    monkeypatch.setattr(backend, "start_pipeline_execution", start_and_fail)
    code, out, err = run("train", "cnn", "--wait", "--poll-seconds", "0", capsys=capsys)
    assert code == 1
    assert "execution Failed" in out
    execution = executions(aws)[0]["PipelineExecutionArn"].rsplit("/", 1)[-1]
    assert err == f"failed: execution {execution} ended Failed: Step failure: One or multiple steps failed.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "cnnn"), "unknown network 'cnnn'"),
        (("train", "cnn", "--param", "epoch=3"), "--param epoch: cnn has no such parameter"),
        (("train", "cnn", "--param", "epochs=three"), "epochs must be an integer, got 'three'"),
        (("train", "cnn", "--param", "epochs=2.5"), "epochs must be an integer, got '2.5'"),
        (("train", "cnn", "--param", "dropout=lots"), "dropout must be a number"),
        (("train", "cnn", "--param", "precision=float64"), "precision must be one of auto, float32"),
        (("train", "cnn", "--param", "ModelApprovalStatus=Rejected"), "ModelApprovalStatus must be one of"),
        (("train", "cnn", "--param", "epochs"), "expected NAME=VALUE"),
        (("train", "cnn", "--param", "epochs=3", "--param", "Epochs=4"), "--param Epochs: given twice"),
        (("train", "cnn", "--param", "TrainingInstanceCount=0"), "must be at least 1"),
        (("train", "cnn", "--param", "TrainingInstanceType=ml.m7i.huge"), "not a SageMaker training instance type"),
        (("train", "cnn", "--param", "TrainingInstanceType=ml.g5.xlarge"), "needs a different training image"),
        (
            ("train", "cnn", "--param", "TrainingInstanceType=ml.p2.xlarge"),
            "no tensorflow 2.19 training image for 'ml.p2.xlarge'",
        ),
        (("train", "cnn", "--param", "InputDataUri=/data/cnn"), "must be an S3 prefix ending in '/'"),
        (("train", "rnn"), f"pipeline {LOCAL.prefix()}-rnn does not exist"),
        (("train", "cnn", "--stage", "qa"), "unknown stage 'qa'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_starts_nothing(
    aws: Local, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(*args, capsys=capsys)
    assert code == 2
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert out == ""
    assert executions(aws) == []


def test_runs_lists_executions_with_status_and_failure(aws: Local, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("train", "cnn", "--param", "epochs=1", capsys=capsys)[0] == 0
    assert run("train", "cnn", capsys=capsys)[0] == 0
    backend = get_backend("sagemaker")[ACCOUNT][REGION]
    failed = next(iter(backend.pipelines[PIPELINE].pipeline_executions.values()))
    failed.pipeline_execution_status = "Failed"
    failed.pipeline_execution_failure_reason = "ClientError: capacity"  # type: ignore[assignment]  # moto's None until set
    code, out, _ = run("runs", "cnn", capsys=capsys)
    assert code == 0
    assert out.count("Succeeded") == 1 and out.count("Failed") == 1
    assert "ClientError: capacity" in out


def register_version(aws: Local, accuracy: float, champion: dict | None = None) -> str:
    """A version as the pipeline registers it: its evaluation report (compared with `champion`,
    {"version", "value"}) and its explanations."""
    s3 = aws.s3
    s3.create_bucket(Bucket=REPORTS_BUCKET)
    key = f"pipelines/cnn/{accuracy}/evaluation/evaluation.json"
    report = {
        "network": "cnn",
        "metrics": {"test_accuracy": {"value": accuracy}, "test_loss": {"value": 0.125}},
        "champion_challenger": {"champion": champion},
    }
    s3.put_object(Bucket=REPORTS_BUCKET, Key=key, Body=json.dumps(report).encode())
    explanations = {
        "summary": [
            {
                "title": "classes by mean |integrated gradients|",
                "top": [{"name": "seven", "value": 0.25}, {"name": "one", "value": 0.125}],
            }
        ]
    }
    s3.put_object(
        Bucket=REPORTS_BUCKET,
        Key=key.replace("evaluation.json", "explanations.json"),
        Body=json.dumps(explanations).encode(),
    )
    return aws.sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [
                {
                    "Image": SAMPLE_VALUES[definition.INFERENCE_IMAGE_URI],
                    "ModelDataUrl": "s3://artifacts/models/cnn/model.tar.gz",
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{REPORTS_BUCKET}/{key}"}
            },
            "Explainability": {
                "Report": {
                    "ContentType": "application/json",
                    "S3Uri": f"s3://{REPORTS_BUCKET}/{key.replace('evaluation.json', 'explanations.json')}",
                }
            },
        },
        CustomerMetadataProperties={"network": "cnn", "quality_metric": "test_accuracy"},
    )["ModelPackageArn"]


def approval(aws: Local, arn: str) -> str:
    return aws.sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]


def test_models_shows_versions_with_metrics_from_the_evaluation_report(
    aws: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    register_version(aws, 0.9612)
    register_version(aws, 0.9734, champion={"version": 1, "value": 0.9612})
    code, out, _ = run("models", "cnn", capsys=capsys)
    assert code == 0
    assert "0.9734" in out and "0.9612" in out and "test_loss=0.125" in out
    assert out.count("PendingManualApproval") == 2
    assert out.index("0.9734") < out.index("0.9612"), "newest version first"
    # The champion each was compared with, and the top of its explanations.
    assert "v1 0.9612" in out and " none " in out
    assert out.count("classes by mean |integrated gradients|: seven 0.25, one 0.125") == 2


def test_approve_and_reject_update_the_registry(aws: Local, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = register_version(aws, 0.96), register_version(aws, 0.97)
    code, out, _ = run("approve", "cnn", "--yes", capsys=capsys)
    assert code == 0 and "version 2: PendingManualApproval -> Approved" in out
    assert (approval(aws, first), approval(aws, second)) == ("PendingManualApproval", "Approved")
    assert run("reject", "cnn", "--version", "1", "--yes", capsys=capsys)[0] == 0
    assert (approval(aws, first), approval(aws, second)) == ("Rejected", "Approved")
    approved = aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved")
    assert [p["ModelPackageVersion"] for p in approved["ModelPackageSummaryList"]] == [2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("approve", "cnn", "--version", "7"), f"{GROUP} has no version 7"),
        (("reject", "cnn"), f"{GROUP} holds no model version"),
        (("approve", "rnn"), f"model package group {LOCAL.prefix()}-rnn does not exist"),
        (("models", "transfers"), "unknown network 'transfers'"),
    ],
)
def test_registry_commands_refuse_bad_input_with_exit_2(
    aws: Local, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    if "--version" in args:
        register_version(aws, 0.96)
    code, _, err = run(*args, capsys=capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    "args",
    [
        ("train", "cnn"),
        ("train", "cnn", "--param", "epochs=1"),
        ("runs", "cnn"),
        ("models", "cnn"),
        ("approve", "cnn"),
        ("reject", "cnn", "--version", "1"),
    ],
)
def test_a_stage_that_promotes_from_another_says_it_trains_nothing_and_where_its_models_come_from(
    aws: Local, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """prod has no pipeline and no registry of its own (docs/cicd.md): one line naming dev's group."""
    dev = CDK_CONTEXT["stages"]["dev"]["account"]
    code, out, err = run(*args, "--stage", "prod", capsys=capsys)
    assert (code, out, err) == (
        2,
        "",
        "error: stage prod trains nothing: its endpoints serve the versions approved in dev's registry "
        f"(arn:aws:sagemaker:us-east-1:{dev}:model-package-group/mlops-dev-cnn): train, list and approve them "
        "with --stage dev\n",
    )
    assert executions(aws) == []


def test_training_cost_counts_billable_seconds_per_instance_and_the_spot_saving() -> None:
    table = {"per_instance_hour": {"ml.m7i.xlarge": 0.242}}
    job = {
        "ResourceConfig": {"InstanceType": "ml.m7i.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
        "TrainingTimeInSeconds": 1000,
        "BillableTimeInSeconds": 400,
        "EnableManagedSpotTraining": True,
    }
    cost = training_job_cost("Train", job, table)
    assert cost.cost == pytest.approx(400 * 2 * 0.242 / 3600)
    assert cost.spot_saving == pytest.approx(0.6)
    assert "spot saved 60%" in cost.line()
    on_demand = training_job_cost(
        "Train",
        {
            **job,
            "EnableManagedSpotTraining": False,
            "ResourceConfig": {"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1},
        },
        table,
    )
    assert on_demand.spot_saving is None and on_demand.cost is None
    assert "no price for ml.p5.48xlarge" in on_demand.line()


def test_processing_cost_bills_the_run_time() -> None:
    started = datetime(2026, 11, 1, tzinfo=UTC)
    job = {
        "ProcessingResources": {
            "ClusterConfig": {"InstanceType": "ml.m7i.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
        },
        "ProcessingStartTime": started,
        "ProcessingEndTime": started + timedelta(minutes=3),
    }
    cost = processing_job_cost("Evaluate", job, {"per_instance_hour": {"ml.m7i.xlarge": 0.242}})
    assert cost.billable_seconds == 180 and cost.cost == pytest.approx(180 * 0.242 / 3600)


def test_every_stage_training_instance_type_has_a_dated_price() -> None:
    table = json.loads(PRICES_FILE.read_text())["training_jobs"]
    assert table["retrieved"] and table["source"]
    for name in CDK_CONTEXT["stages"]:
        config = parse_stage_config(CDK_CONTEXT["stages"], name)
        for network in config.networks:
            assert config.training_instance_type(network) in table["per_instance_hour"], (name, network)


def test_approve_without_a_terminal_or_yes_is_refused_and_changes_nothing(
    aws: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = register_version(aws, 0.96)
    code, _, err = run("approve", "cnn", capsys=capsys)  # pytest's stdin is no terminal
    assert code == 2
    assert err.strip() == (
        f"error: set {GROUP} version 1 Approved (it is PendingManualApproval): no terminal to confirm it on; "
        "pass --yes to do it anyway"
    )
    assert approval(aws, arn) == "PendingManualApproval"


def test_runs_and_models_print_json(aws: Local, capsys: pytest.CaptureFixture[str]) -> None:
    run("train", "cnn", capsys=capsys)
    register_version(aws, 0.96)
    code, out, _ = run("runs", "cnn", "--json", capsys=capsys)
    assert code == 0
    (execution,) = json.loads(out)
    assert execution["status"] == "Succeeded" and execution["arn"] == executions(aws)[0]["PipelineExecutionArn"]
    code, out, _ = run("models", "cnn", "--json", capsys=capsys)
    assert code == 0
    (version,) = json.loads(out)
    assert (version["version"], version["approval"], version["quality_value"]) == (1, "PendingManualApproval", 0.96)
    assert version["champion_then"] == {"summary": "none"}
