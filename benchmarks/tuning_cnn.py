"""The CNN tuned through its tuning pipeline on this machine, against its training pipeline with the
stage's hyperparameters on the same data: the best trial's validation accuracy beside the default's,
each trial's, and the wall time of both runs (docs/benchmarks.md, "Tuning the CNN").

Both pipelines run from their real definitions in an embedded moto server (tests/tuning_support.py),
each job under SageMaker's training toolkit, with the local stage's network isolation.

    .venv/bin/python benchmarks/tuning_cnn.py [--limit 2000] [--trials 8] [--parallel 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "training"), str(REPO_ROOT / "tests")]

from tuning_support import LocalPipelines  # noqa: E402

from mlops.datasets import prepare  # noqa: E402


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000, help="examples per channel")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--gate", type=float, default=0.5, help="QualityThreshold of both runs")
    arguments = parser.parse_args()
    print(f"CPU: {cpu()}, {os.cpu_count()} cores; load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="tuning-cnn-") as folder:
        work = Path(folder)
        channels = prepare("cnn", work / "data", limit=arguments.limit)
        with LocalPipelines("cnn", channels, work) as pipelines:
            started = time.perf_counter()
            # The gate lowered: what is compared is the validation accuracy, on a slice of the data.
            gate = {"QualityThreshold": str(arguments.gate)}
            trained = pipelines.run(pipelines.training, {"Epochs": str(arguments.epochs), **gate})
            trained_seconds = time.perf_counter() - started
            default = {m["MetricName"]: m["Value"] for m in trained.properties["Train"]["FinalMetricDataList"]}
            started = time.perf_counter()
            tuned = pipelines.run(
                pipelines.tuning,
                {
                    "Epochs": str(arguments.epochs),
                    "MaxTrainingJobs": str(arguments.trials),
                    "MaxParallelTrainingJobs": str(arguments.parallel),
                    **gate,
                },
            )
            tuned_seconds = time.perf_counter() - started
            tune = tuned.properties["Tune"]
            best = tune["BestTrainingJob"]
            print(
                f"default hyperparameters: val_accuracy {default['val_accuracy']:.4f}; pipeline {trained_seconds:.1f} s"
            )
            for trial in sorted(pipelines.reporter.trials.values(), key=lambda trial: trial.number):
                objective = "-" if trial.objective is None else f"{trial.objective:.4f}"
                print(
                    f"  trial {trial.number} {trial.status:9} {trial.epochs} epoch(s) val_accuracy {objective} "
                    + " ".join(f"{name}={value}" for name, value in trial.tuned.items())
                )
            value = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            print(f"best trial {best['TrainingJobName']}: val_accuracy {value:.4f}; pipeline {tuned_seconds:.1f} s")
            registered = tuned.registered_model_arn
            print(f"registered: {registered}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
