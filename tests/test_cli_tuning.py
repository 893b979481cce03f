"""`mlops tune` and `mlops trials` against a moto server on 127.0.0.1, the tuning pipelines created
from their real definitions, and a tuning job recorded as the local executor records one (its
trials with the TuningJobArn DescribeTrainingJob gives them), so `mlops trials` reads moto's
records through the API the way it reads AWS's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cli_support import run_mlops
from test_pipeline_definition import CDK_CONTEXT, SAMPLE_VALUES

from infra import naming
from infra.config import parse_stage_config
from infra.definitions import training_pipeline as definition
from infra.definitions.tuning_pipeline import tuning_definition_body
from mlops.local.moto import LocalAws, moto_server
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_references import ExecutionContext, parameter_values

LOCAL = parse_stage_config(CDK_CONTEXT["stages"], "local")
TUNING = naming.tuning_pipeline_name(LOCAL.prefix(), "cnn")
WARM = naming.warm_start_pipeline_name(LOCAL.prefix(), "cnn")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAws]:
    with moto_server() as aws:
        yield aws


@pytest.fixture
def aws(server: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    requests.post(f"{server.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")
    sagemaker = server.client("sagemaker")
    for name, warm in ((TUNING, False), (WARM, True)):
        body = tuning_definition_body(LOCAL, "cnn", warm_start=warm)
        sagemaker.create_pipeline(
            PipelineName=name,
            RoleArn="arn:aws:iam::123456789012:role/pipeline",
            PipelineDefinition=definition.substitute_placeholders(body, SAMPLE_VALUES),
        )
    return server


def tune_request() -> dict[str, Any]:
    """The local stage's Tune step arguments, resolved as the pipeline service resolves them."""
    body = definition.substitute_placeholders(tuning_definition_body(LOCAL, "cnn", warm_start=False), SAMPLE_VALUES)
    built = json.loads(body)
    context = ExecutionContext(
        parameters=parameter_values(built["Parameters"], {}),
        execution={"PipelineExecutionId": "abcdef123456"},
        read_json=lambda uri: {},
    )
    return context.resolve(built["Steps"][0]["Arguments"])


def record_tuning_job(aws: LocalAws, name: str, trials: list[tuple[str, str, float | None]]) -> None:
    """A finished tuning job as the local executor leaves it: (status, learning_rate, val_accuracy) per trial."""
    records = MotoRecords(aws)
    request = tune_request()
    arn = records.start_tuning_job(name, request)
    trial_request = {
        **{key: value for key, value in request["TrainingJobDefinition"].items() if key != "StaticHyperParameters"},
        "HyperParameters": request["TrainingJobDefinition"]["StaticHyperParameters"],
    }
    best = None
    for number, (status, rate, value) in enumerate(trials, start=1):
        trial = f"{name}-{number:03d}-0000000{number}"
        hyperparameters = {
            **trial_request["HyperParameters"],
            "learning_rate": rate,
            "dense_units": "64",
            "dropout": "0.2",
        }
        records.start_training_job(trial, {**trial_request, "HyperParameters": hyperparameters}, tuning_job_arn=arn)
        metrics = [] if value is None else [{"MetricName": "val_accuracy", "Value": value}]
        records.end_training_job(
            trial, status, "AlgorithmError: boom" if status == "Failed" else None, final_metrics=metrics
        )
        if status == "Completed" and value is not None and (best is None or value > best[1]):
            best = (trial, value)
    assert best is not None
    summary = {
        "TrainingJobName": best[0],
        "TrainingJobArn": f"{arn.split(':hyper')[0]}:training-job/{best[0]}",
        "CreationTime": "2026-12-07T00:00:00Z",
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"learning_rate": "x"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "val_accuracy", "Value": best[1]},
    }
    records.update_tuning_job(name, training_job_counts={}, objective_counts={}, seconds=60, best=summary)
    records.end_tuning_job(name, "Completed")


def test_tune_starts_the_tuning_pipeline_with_typed_parameters(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_mlops(monkeypatch, capsys, "tune", "cnn", "--param", "epochs=2", "--param", "MaxTrainingJobs=6")
    assert code == 0, out
    assert f"started {TUNING} (Epochs=2, MaxTrainingJobs=6)" in out
    (execution,) = aws.client("sagemaker").list_pipeline_executions(PipelineName=TUNING)["PipelineExecutionSummaries"]
    parameters = aws.client("sagemaker").list_pipeline_parameters_for_execution(
        PipelineExecutionArn=execution["PipelineExecutionArn"]
    )["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in parameters} == {"Epochs": "2", "MaxTrainingJobs": "6"}


def test_a_warm_start_from_a_finished_tuning_job_of_the_same_hyperparameters_starts_the_warm_pipeline(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record_tuning_job(aws, "parent-job", [("Completed", "0.001", 0.9)])
    code, out, _ = run_mlops(monkeypatch, capsys, "tune", "cnn", "--warm-start", "parent-job")
    assert code == 0, out
    assert f"started {WARM} (WarmStartTuningJob=parent-job)" in out


@pytest.mark.parametrize(
    ("parent_static", "message"),
    [
        ({"units": "32"}, "hyperparameter names differ from parent tuning job old-job's: removed units"),
        ({"dense_units": None}, "added dense_units"),
    ],
)
def test_a_warm_start_whose_hyperparameter_names_changed_is_refused_naming_them(
    aws: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    parent_static: dict[str, str | None],
    message: str,
) -> None:
    """The parent searched another network version's knobs: SageMaker would refuse the warm start."""
    parent = tune_request()
    static = parent["TrainingJobDefinition"]["StaticHyperParameters"]
    ranges = parent["HyperParameterTuningJobConfig"]["ParameterRanges"]
    for name, value in parent_static.items():
        if value is None:
            ranges["IntegerParameterRanges"] = [
                item for item in ranges["IntegerParameterRanges"] if item["Name"] != name
            ]
        else:
            static[name] = value
    aws.client("sagemaker").create_hyper_parameter_tuning_job(HyperParameterTuningJobName="old-job", **parent)
    code, _, err = run_mlops(monkeypatch, capsys, "tune", "cnn", "--warm-start", "old-job")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not aws.client("sagemaker").list_pipeline_executions(PipelineName=WARM)["PipelineExecutionSummaries"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--param", "learning_rate=0.1"), "--param learning_rate: tuned by this pipeline"),
        (("--param", "MaxTrainingJobs=0"), "MaxTrainingJobs must be at least 1"),
        (("--warm-start", "no-such-job"), "--warm-start no-such-job: Could not find"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_starts_nothing(
    aws: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: tuple[str, ...],
    message: str,
) -> None:
    code, _, err = run_mlops(monkeypatch, capsys, "tune", "cnn", *arguments)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_trials_lists_the_newest_tuning_job_s_trials_best_first(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record_tuning_job(aws, "older-job", [("Completed", "0.01", 0.5)])
    record_tuning_job(
        aws,
        "newer-job",
        [
            ("Completed", "0.001", 0.91),
            ("Stopped", "0.0001", 0.4),
            ("Completed", "0.003", 0.95),
            ("Failed", "0.05", None),
        ],
    )
    code, out, _ = run_mlops(monkeypatch, capsys, "trials", "cnn", "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["tuning_job"] == "newer-job" and document["best_trial"] == "newer-job-003-00000003"
    assert [(row["status"], row["objective"]) for row in document["trials"]] == [
        ("Completed", 0.95),
        ("Completed", 0.91),
        ("Stopped", 0.4),
        ("Failed", None),
    ]
    assert document["trials"][0]["hyperparameters"] == {"learning_rate": "0.003", "dense_units": "64", "dropout": "0.2"}
    code, out, _ = run_mlops(monkeypatch, capsys, "trials", "cnn", "--tuning-job", "older-job")
    assert code == 0 and "★ older-job-001-00000001" in out and "learning_rate=0.01" in out, out


def test_trials_without_any_tuning_job_says_how_to_start_one(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_mlops(monkeypatch, capsys, "trials", "cnn")
    assert code == 2 and "no tuning job of cnn" in err and "mlops tune cnn" in err
