"""The CNN tuned for real on this machine: its tuning pipeline (four trials of one epoch, two at a
time, each the real entry point under SageMaker's toolkit, network-isolated as the local stage
says) against its training pipeline with the stage's hyperparameters, on the same slice of MNIST.
The best trial is at least as good on the validation channel, passes the same gate, and the
version registered names it. The same run with eight trials, and its times: benchmarks/tuning_cnn.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tuning_support import ARTIFACTS, LocalPipelines

from mlops.datasets import prepare

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SETTINGS = {"Epochs": "1", "QualityThreshold": "0.5"}


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipelines]:
    work = tmp_path_factory.mktemp("tuning-cnn")
    channels = prepare("cnn", work / "data", limit=2000)
    with LocalPipelines("cnn", channels, work) as local:
        yield local


def test_the_best_trial_beats_the_defaults_passes_the_gate_and_is_the_version_registered(
    pipelines: LocalPipelines,
) -> None:
    trained = pipelines.run(pipelines.training, SETTINGS)
    default = {m["MetricName"]: m["Value"] for m in trained.properties["Train"]["FinalMetricDataList"]}
    before = len(pipelines.reporter.outcomes)
    tuned = pipelines.run(pipelines.tuning, {**SETTINGS, "MaxTrainingJobs": "4", "MaxParallelTrainingJobs": "2"})
    tune = tuned.properties["Tune"]
    best = tune["BestTrainingJob"]
    value = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert value >= default["val_accuracy"], (value, default)
    trials = pipelines.reporter.trials
    assert len(trials) == 4 and {trial.status for trial in trials.values()} <= {"Completed", "Stopped"}
    ran = {(outcome.step, outcome.status) for outcome in pipelines.reporter.outcomes[before:]}
    assert ran == {(step, "Succeeded") for step in ("Tune", "Champion", "Evaluate", "QualityGate", "Register")}
    package = pipelines.aws.client("sagemaker").describe_model_package(ModelPackageName=tuned.registered_model_arn)
    metadata = package["CustomerMetadataProperties"]
    assert metadata["trial"] == best["TrainingJobName"]
    assert metadata["tuning_job"] == tune["HyperParameterTuningJobName"]
    assert {name: metadata[f"tuned_{name}"] for name in best["TunedHyperParameters"]} == best["TunedHyperParameters"]
    assert float(metadata["objective_value"]) == pytest.approx(value)
    model = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model == f"s3://{ARTIFACTS}/models/cnn/{best['TrainingJobName']}/output/model.tar.gz"
    # Evaluated on the test channel like any candidate, after its search on the validation channel.
    assert float(metadata["quality_value"]) >= 0.5


def test_the_trials_are_on_record_as_sagemaker_keeps_them(pipelines: LocalPipelines) -> None:
    """What `mlops trials`, boto3 and the AWS CLI read (after the test above ran the pipeline)."""
    sagemaker = pipelines.aws.client("sagemaker")
    (summary,) = sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    described = sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=summary["HyperParameterTuningJobName"]
    )
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    counters = described["TrainingJobStatusCounters"]
    assert counters["Completed"] + counters["Stopped"] == 4 and counters["NonRetryableError"] == 0
    trial = sagemaker.describe_training_job(TrainingJobName=described["BestTrainingJob"]["TrainingJobName"])
    assert trial["TuningJobArn"] == described["HyperParameterTuningJobArn"]
    assert trial["EnableNetworkIsolation"] is True
    assert Path(trial["ModelArtifacts"]["S3ModelArtifacts"]).name == "model.tar.gz"
