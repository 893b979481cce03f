"""The local executor's tuning jobs (`mlops.local.tuning_job`), on a stand-in entry point that trains
nothing: its objective is a known function of its learning rate, printed once per epoch as the
project's entry points print theirs, so which trial is best and which ones early stopping must stop
are known. Each trial still runs as a training job under SageMaker's own toolkit, as a real one
does. The real CNN tuned through its pipeline is in test_local_tuning_cnn.py.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.local.moto import LocalAws, moto_server
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_jobs import JobFailed, JobRuntime
from mlops.local.tuning_job import TrialRun, run_tuning_step

pytestmark = pytest.mark.integration

BUCKET = "tuning-test"
ROLE = "arn:aws:iam::123456789012:role/execution"
BEST_RATE = 0.003
# val_accuracy climbs towards a ceiling set by how far the learning rate is from BEST_RATE.
ENTRY_POINT = textwrap.dedent(
    f"""
    import argparse, json, math, os, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning_rate", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--model_dir")
    parser.add_argument("--pause", type=float, default=0.5)
    arguments, _ = parser.parse_known_args()
    # As the project's entry points (training/job.py): SageMaker uploads SM_MODEL_DIR only.
    model_dir = os.environ["SM_MODEL_DIR"]
    ceiling = 1 - abs(math.log10(arguments.learning_rate / {BEST_RATE})) / 3
    for epoch in range(1, arguments.epochs + 1):
        time.sleep(arguments.pause)
        value = ceiling * epoch / arguments.epochs
        print(f"[metrics] epoch={{epoch}} train_loss=0.5 val_accuracy={{value:.6f}}", flush=True)
    with open(os.path.join(model_dir, "trial.json"), "w") as handle:
        json.dump({{"model_dir": arguments.model_dir, "job": os.environ.get("TRAINING_JOB_NAME")}}, handle)
    print(f"[metrics] val_accuracy={{ceiling:.6f}}", flush=True)
    """
)


def objective(rate: float) -> float:
    return 1 - abs(math.log10(rate / BEST_RATE)) / 3


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with moto_server() as server:
        s3 = server.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        bundle = io.BytesIO()
        with tarfile.open(fileobj=bundle, mode="w:gz") as archive:
            info = tarfile.TarInfo("trial.py")
            info.size = len(ENTRY_POINT.encode())
            archive.addfile(info, io.BytesIO(ENTRY_POINT.encode()))
        s3.put_object(Bucket=BUCKET, Key="code/bundle.tar.gz", Body=bundle.getvalue())
        s3.put_object(Bucket=BUCKET, Key="data/train/rows.csv", Body=b"1,2\n")
        yield server


def request(
    *, trials: int, parallel: int, epochs: int, early_stopping: str = "Off", seed: int = 7, **changes: Any
) -> dict[str, Any]:
    """A CreateHyperParameterTuningJob request less its name, as a Tuning step's arguments resolve."""
    config = {
        "Strategy": changes.pop("strategy", "Random"),
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "val_accuracy"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": {
            "ContinuousParameterRanges": [
                {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
            ]
        },
        "TrainingJobEarlyStoppingType": early_stopping,
        "RandomSeed": seed,
        **changes.pop("config", {}),
    }
    return {
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": {
            "StaticHyperParameters": {
                "sagemaker_program": "trial.py",
                "sagemaker_submit_directory": f"s3://{BUCKET}/code/bundle.tar.gz",
                "epochs": str(epochs),
                **changes.pop("static", {}),
            },
            "AlgorithmSpecification": {
                "TrainingImage": "image",
                "TrainingInputMode": "File",
                "MetricDefinitions": [
                    {"Name": "val_accuracy", "Regex": r"\bval_accuracy=([0-9.]+)"},
                    {"Name": "train_loss", "Regex": r"\btrain_loss=([0-9.]+)"},
                ],
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/train/"}},
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
            "RoleArn": ROLE,
        },
        **changes,
    }


def tune(aws: LocalAws, tmp_path: Path, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[TrialRun]]:
    seen: list[TrialRun] = []
    runtime = JobRuntime(
        s3=aws.client("s3"), records=MotoRecords(aws), env=aws.env, work_dir=tmp_path, on_line=lambda step, line: None
    )
    properties = run_tuning_step("Tune", name, arguments, runtime, on_trial=seen.append)
    trials = list({id(trial): trial for trial in seen}.values())
    return properties, trials


@pytest.mark.slow
def test_trials_are_training_jobs_of_the_tuning_job_two_at_a_time_and_the_best_one_is_chosen(
    aws: LocalAws, tmp_path: Path
) -> None:
    properties, trials = tune(aws, tmp_path, "parallel-tuning", request(trials=4, parallel=2, epochs=2))
    sagemaker = aws.client("sagemaker")
    described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="parallel-tuning")
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["TrainingJobStatusCounters"]["Completed"] == 4
    assert described["ObjectiveStatusCounters"]["Succeeded"] == 4
    rates = {trial.name: float(trial.tuned["learning_rate"]) for trial in trials}
    assert len(rates) == 4 and all(name.startswith("parallel-tuning-") for name in rates)
    best = max(rates, key=lambda name: objective(rates[name]))
    assert described["BestTrainingJob"]["TrainingJobName"] == best
    assert described["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        objective(rates[best]), abs=1e-5
    )
    assert properties["BestTrainingJob"]["TunedHyperParameters"] == {"learning_rate": str(rates[best])}
    ranked = [summary["TrainingJobName"] for summary in properties["TrainingJobSummaries"]]
    assert ranked == sorted(rates, key=lambda name: -objective(rates[name]))
    starts, ends = [], []
    for name in rates:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        assert job["TuningJobArn"] == described["HyperParameterTuningJobArn"]
        assert job["TrainingJobStatus"] == "Completed"
        # SageMaker adds the objective to every trial's hyperparameters (its TF toolkit reads it).
        assert job["HyperParameters"]["_tuning_objective_metric"] == "val_accuracy"
        starts.append(job["TrainingStartTime"])
        ends.append(job["TrainingEndTime"])
        model = aws.client("s3").get_object(Bucket=BUCKET, Key=f"models/{name}/output/model.tar.gz")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(model)) as archive:
            written = json.load(archive.extractfile("trial.json"))  # type: ignore[arg-type]
        # SageMaker's TF toolkit gives a trial `<model_dir>/<job>/model` (`None/...` with none given):
        # the model is where SageMaker uploads from only because the entry point writes SM_MODEL_DIR.
        assert written == {"model_dir": f"None/{name}/model", "job": name}
    # Two at a time: the third started only once one of the first two had ended.
    order = sorted(range(4), key=lambda index: starts[index])
    assert starts[order[2]] >= min(ends[order[0]], ends[order[1]])
    assert starts[order[1]] < ends[order[0]], "the first two ran at once"


@pytest.mark.slow
def test_early_stopping_stops_a_worse_trial_early_and_records_it_stopped_not_failed(
    aws: LocalAws, tmp_path: Path
) -> None:
    """SageMaker's median rule, by Optuna's MedianPruner: one at a time, every trial after the first
    whose value at an epoch is below the median of the earlier trials' is stopped there."""
    _, trials = tune(
        aws, tmp_path, "early-stopping", request(trials=4, parallel=1, epochs=5, early_stopping="Auto", seed=3)
    )
    stopped = [trial for trial in trials if trial.status == "Stopped"]
    completed = [trial for trial in trials if trial.status == "Completed"]
    assert stopped, "seed 3 samples learning rates worse than the first trial's"
    sagemaker = aws.client("sagemaker")
    for trial in stopped:
        job = sagemaker.describe_training_job(TrainingJobName=trial.name)
        assert job["TrainingJobStatus"] == "Stopped" and "FailureReason" not in job
        assert trial.pruned_at is not None and trial.epochs < 5
        log = (tmp_path / "Tune" / trial.name / "log.txt").read_text()
        assert "epoch=5" not in log, "a stopped trial costs fewer epochs"
    for trial in completed:
        assert "epoch=5" in (tmp_path / "Tune" / trial.name / "log.txt").read_text()
    described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="early-stopping")
    assert described["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    assert described["TrainingJobStatusCounters"]["NonRetryableError"] == 0
    assert described["BestTrainingJob"]["TrainingJobName"] in {trial.name for trial in completed}


@pytest.mark.slow
def test_hyperband_stops_trials_at_its_rungs(aws: LocalAws, tmp_path: Path) -> None:
    """Seeded, the fourth trial is pruned at its third epoch: slow epochs leave the stop time to act."""
    hyperband = request(
        trials=4,
        parallel=1,
        epochs=4,
        strategy="Hyperband",
        config={"StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": 1}}},
        static={"pause": "1"},
    )
    _, trials = tune(aws, tmp_path, "hyperband", hyperband)
    assert {trial.status for trial in trials} <= {"Completed", "Stopped"}
    assert any(trial.status == "Stopped" and trial.epochs < 4 for trial in trials)


def test_a_warm_start_whose_hyperparameter_names_changed_is_refused_naming_them(aws: LocalAws, tmp_path: Path) -> None:
    parent = request(trials=1, parallel=1, epochs=1, static={"units": "32"})
    aws.client("sagemaker").create_hyper_parameter_tuning_job(HyperParameterTuningJobName="parent-job", **parent)
    warm = request(
        trials=1,
        parallel=1,
        epochs=1,
        static={"dense_units": "64"},
        WarmStartConfig={
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "parent-job"}],
            "WarmStartType": "IdenticalDataAndAlgorithm",
        },
    )
    with pytest.raises(
        JobFailed,
        match="hyperparameter names differ from parent tuning job parent-job's: added dense_units; removed units",
    ):
        tune(aws, tmp_path, "warm-refused", warm)
    assert not (tmp_path / "Tune").exists(), "refused before any trial ran"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"static": {"learning_rate": "0.01"}}, "learning_rate are both static and tunable"),
        ({"strategy": "Hyperband", "early_stopping": "Auto"}, "must be Off with the Hyperband strategy"),
        ({"strategy": "Grid"}, "the local executor runs Bayesian, Random, Hyperband"),
        (
            {"config": {"HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "val_auc"}}},
            "val_auc has no MetricDefinition",
        ),
    ],
)
def test_a_request_sagemaker_refuses_fails_before_any_trial(
    aws: LocalAws, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(JobFailed, match=f"ValidationException: .*{message}"):
        tune(aws, tmp_path, "refused", request(trials=1, parallel=1, epochs=1, **changes))
