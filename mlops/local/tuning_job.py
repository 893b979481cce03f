"""A pipeline's Tuning step, run on this machine as SageMaker runs a hyperparameter tuning job.

moto records a tuning job as Completed the moment it is created, with a made-up best training
job, and runs nothing. Here each trial is a real training job: the TrainingJobDefinition with the
trial's hyperparameters (plus `_tuning_objective_metric`, which SageMaker adds to every trial's and
SageMaker's TensorFlow toolkit reads), run through `pipeline_jobs.run_training_step` (SageMaker's
toolkit, the channels, the network isolation, the checkpoints), named `<tuning job>-<NNN>-<hex>`
as SageMaker names trials, and recorded in moto with the TuningJobArn DescribeTrainingJob gives it.

    as many at once as MaxParallelTrainingJobs and this machine's cores allow, MaxNumberOfTrainingJobs in all
    the objective read from each trial's log through its MetricDefinitions (`[metrics] epoch=N ...`
      lines each report one epoch's value; the trial's objective is the metric's last value)
    early stopping (TrainingJobEarlyStoppingType Auto, or Hyperband's rungs) acted on: the trial is
      stopped as StopTrainingJob stops a job, and recorded Stopped, not Failed
    the search: Optuna standing in for SageMaker's strategy (mlops/local/tuning_search.py)

The tuning job ends Completed with its BestTrainingJob (the trial that completed with the best
objective) or Failed if none completed; moto's record is corrected to say so, with its counters.
The step's properties are that DescribeHyperParameterTuningJob response and the
TrainingJobSummaries ListTrainingJobsForHyperParameterTuningJob would give, best first.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import optuna

from mlops.local.pipeline_jobs import JobFailed, JobRuntime, Trial, run_training_step
from mlops.local.tuning_search import Search, warm_start_problem

OBJECTIVE_HYPERPARAMETER = "_tuning_objective_metric"
TUNING_JOB_NAME_LENGTH = 32  # HyperParameterTuningJobName's limit
MAX_SUMMARIES = 50  # the Tuning step keeps the top 50 training jobs (SageMaker SDK, TuningStep)
_EPOCH = re.compile(r"\bepoch=(\d+)\b")
_POLL_SECONDS = 0.5


@dataclass
class TrialRun:
    """One trial: its number, name, hyperparameters and, as it goes, what it has reported."""

    number: int
    name: str
    metric: str
    """The objective metric."""
    tuned: dict[str, str]
    job: Trial
    optuna_trial: optuna.trial.Trial
    epochs: int = 0
    status: str = "InProgress"
    objective: float | None = None
    failure_reason: str | None = None
    described: dict[str, Any] = field(default_factory=dict)
    pruned_at: int | None = None


TrialListener = Callable[[TrialRun], None]


def run_tuning_step(
    step: str,
    job_name: str,
    request: Mapping[str, Any],
    runtime: JobRuntime,
    on_trial: TrialListener = lambda trial: None,
) -> dict[str, Any]:
    """Runs the tuning job; returns the step's properties. JobFailed when SageMaker would refuse the
    request or no trial completes."""
    try:
        search = Search.from_request(request)
    except (KeyError, ValueError) as error:
        raise JobFailed(f"ValidationException: {error}") from None
    parents = _parents(request, runtime)
    arn = runtime.records.start_tuning_job(job_name, request)
    tuning = _TuningJob(step, job_name, arn, request, runtime, search, on_trial)
    try:
        tuning.run(search.study(job_name, parents))
    except BaseException as error:
        tuning.stop_all()
        runtime.records.end_tuning_job(
            job_name, "Stopped" if isinstance(error, KeyboardInterrupt) else "Failed", str(error)
        )
        raise
    return tuning.finish()


def _parents(request: Mapping[str, Any], runtime: JobRuntime) -> list[tuple[dict[str, str], float]]:
    """The warm start's parents' trials as (TunedHyperParameters, objective), after SageMaker's checks."""
    warm = request.get("WarmStartConfig")
    if not warm:
        return []
    found = []
    for parent in warm["ParentHyperParameterTuningJobs"]:
        name = parent["HyperParameterTuningJobName"]
        try:
            described = runtime.records.tuning_job(name)
        except Exception:  # a ClientError from the API: ResourceNotFound
            raise JobFailed(f"ValidationException: parent tuning job {name!r} does not exist") from None
        problem = warm_start_problem(request, described)
        if problem:
            raise JobFailed(f"ValidationException: {problem}")
        metric = described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
        ranged = _tuned_names(described)
        for trial in runtime.records.trials(described["HyperParameterTuningJobArn"]):
            values = {item["MetricName"]: item["Value"] for item in trial.get("FinalMetricDataList", [])}
            if metric in values:
                tuned = {key: value for key, value in trial.get("HyperParameters", {}).items() if key in ranged}
                found.append((tuned, values[metric]))
    return found


class _TuningJob:
    def __init__(
        self,
        step: str,
        name: str,
        arn: str,
        request: Mapping[str, Any],
        runtime: JobRuntime,
        search: Search,
        on_trial: TrialListener,
    ) -> None:
        self.step, self.name, self.arn, self.request, self.runtime = step, name, arn, request, runtime
        self.search, self.on_trial = search, on_trial
        config = request["HyperParameterTuningJobConfig"]
        limits = config["ResourceLimits"]
        self.limit = int(limits.get("MaxNumberOfTrainingJobs", 1))
        # Each trial gets an instance of its own in AWS; here they share this machine's cores.
        self.parallel = max(1, min(int(limits["MaxParallelTrainingJobs"]), os.cpu_count() or 1))
        runtime_limit = limits.get("MaxRuntimeInSeconds")
        self.started = time.monotonic()
        self.deadline = None if runtime_limit is None else self.started + int(runtime_limit)
        self.trials: list[TrialRun] = []
        self.events: queue.Queue[tuple[str, TrialRun, Any]] = queue.Queue()
        self.threads: list[threading.Thread] = []

    def run(self, study: optuna.Study) -> None:
        running: set[int] = set()
        while len(self.trials) < self.limit or running:
            out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
            if out_of_time:
                self.stop_all()
            while not out_of_time and len(self.trials) < self.limit and len(running) < self.parallel:
                running.add(self._start(study).number)
            try:
                kind, trial, payload = self.events.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if kind == "epoch":
                self._reported(trial, *payload)
            else:
                running.discard(trial.number)
                self._ended(study, trial, payload)
            if out_of_time and not running:
                break

    def _start(self, study: optuna.Study) -> TrialRun:
        optuna_trial = study.ask(self.search.distributions)
        number = len(self.trials) + 1
        name = f"{self.name}-{number:03d}-{secrets.token_hex(4)}"
        trial = TrialRun(
            number=number,
            name=name,
            metric=self.search.objective_metric,
            tuned=self.search.hyperparameters(optuna_trial),
            job=Trial(self.arn, folder=f"{self.step}/{name}", label=f"{self.step} #{number}"),
            optuna_trial=optuna_trial,
        )
        self.trials.append(trial)
        self._record()
        self.on_trial(trial)
        definition = dict(self.request["TrainingJobDefinition"])
        request = {
            **{key: value for key, value in definition.items() if key != "StaticHyperParameters"},
            "HyperParameters": {
                **definition.get("StaticHyperParameters", {}),
                **trial.tuned,
                OBJECTIVE_HYPERPARAMETER: self.search.objective_metric,
            },
        }
        runtime = dataclasses.replace(self.runtime, on_line=self._line_listener(trial))
        thread = threading.Thread(target=self._run_trial, args=(trial, request, runtime), daemon=True)
        self.threads.append(thread)
        thread.start()
        return trial

    def _line_listener(self, trial: TrialRun) -> Callable[[str, str], None]:
        definitions = self.request["TrainingJobDefinition"]["AlgorithmSpecification"].get("MetricDefinitions", [])
        (regex,) = [item["Regex"] for item in definitions if item["Name"] == self.search.objective_metric]

        def listen(label: str, line: str) -> None:
            self.runtime.on_line(label, line)
            epoch, value = _EPOCH.search(line), re.search(regex, line)
            if epoch and value:
                found = value.group(1) if value.groups() else value.group(0)
                self.events.put(("epoch", trial, (int(epoch.group(1)), float(found))))

        return listen

    def _run_trial(self, trial: TrialRun, request: dict[str, Any], runtime: JobRuntime) -> None:
        try:
            described = run_training_step(self.step, trial.name, request, runtime, trial=trial.job)
            self.events.put(("ended", trial, described))
        except JobFailed as failure:
            self.events.put(("ended", trial, failure))
        except Exception as error:
            self.events.put(("ended", trial, JobFailed(f"InternalServerError: {type(error).__name__}: {error}")))

    def _reported(self, trial: TrialRun, epoch: int, value: float) -> None:
        if trial.status != "InProgress" or trial.job.stop.is_set():
            return
        trial.epochs, trial.objective = epoch, value
        trial.optuna_trial.report(value, epoch)
        if trial.optuna_trial.should_prune():
            trial.pruned_at = epoch
            trial.job.stop.set()
        self.on_trial(trial)

    def _ended(self, study: optuna.Study, trial: TrialRun, outcome: Any) -> None:
        if isinstance(outcome, JobFailed):
            trial.status, trial.failure_reason = "Failed", outcome.reason
            study.tell(trial.optuna_trial, state=optuna.trial.TrialState.FAIL)
        else:
            trial.described = outcome
            trial.status = outcome["TrainingJobStatus"]
            values = {item["MetricName"]: item["Value"] for item in outcome.get("FinalMetricDataList", [])}
            trial.objective = values.get(self.search.objective_metric)
            if trial.status == "Stopped":
                study.tell(trial.optuna_trial, state=optuna.trial.TrialState.PRUNED)
            elif trial.objective is None:
                study.tell(trial.optuna_trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial.optuna_trial, trial.objective)
        self._record()
        self.on_trial(trial)

    def stop_all(self) -> None:
        for trial in self.trials:
            trial.job.stop.set()
        for thread in self.threads:
            thread.join()

    def best(self) -> TrialRun | None:
        """The trial that completed with the best objective (BestTrainingJob)."""
        best: TrialRun | None = None
        for trial in self.trials:
            if trial.status != "Completed" or trial.objective is None:
                continue
            if best is None or best.objective is None or self.search.better(trial.objective, best.objective):
                best = trial
        return best

    def _record(self, overall_best: Mapping[str, Any] | None = None) -> None:
        counts: dict[str, int] = {}
        objectives: dict[str, int] = {}
        for trial in self.trials:
            status = "NonRetryableError" if trial.status == "Failed" else trial.status
            counts[status] = counts.get(status, 0) + 1
            objective = _objective_status(trial)
            objectives[objective] = objectives.get(objective, 0) + 1
        best = self.best()
        self.runtime.records.update_tuning_job(
            self.name,
            training_job_counts=counts,
            objective_counts=objectives,
            seconds=int(time.monotonic() - self.started),
            best=self.summary(best) if best else None,
            overall_best=overall_best,
        )

    def summary(self, trial: TrialRun) -> dict[str, Any]:
        """Its HyperParameterTrainingJobSummary."""
        described = trial.described
        summary: dict[str, Any] = {
            "TrainingJobName": trial.name,
            "TrainingJobArn": described.get(
                "TrainingJobArn", f"{self.arn.split(':hyper-parameter')[0]}:training-job/{trial.name}"
            ),
            "TuningJobName": self.name,
            "CreationTime": described.get("CreationTime", datetime.now(UTC)),
            "TrainingJobStatus": trial.status,
            "TunedHyperParameters": dict(trial.tuned),
            "ObjectiveStatus": _objective_status(trial),
        }
        for key in ("TrainingStartTime", "TrainingEndTime"):
            if described.get(key):
                summary[key] = described[key]
        if trial.failure_reason:
            summary["FailureReason"] = trial.failure_reason
        if trial.objective is not None and trial.status != "InProgress":
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": "Maximize" if self.search.maximize else "Minimize",
                "MetricName": self.search.objective_metric,
                "Value": trial.objective,
            }
        return summary

    def finish(self) -> dict[str, Any]:
        best = self.best()
        overall = self._overall_best(best)
        self._record(overall_best=overall)
        if best is None:
            reason = f"no training job completed with a value of the objective metric {self.search.objective_metric}"
            self.runtime.records.end_tuning_job(self.name, "Failed", reason)
            raise JobFailed(f"ClientError: {reason}", _failures(self.trials))
        described = self.runtime.records.end_tuning_job(self.name, "Completed")
        ranked = sorted(
            (trial for trial in self.trials if trial.objective is not None and trial.status != "InProgress"),
            key=lambda trial: trial.objective or 0.0,
            reverse=self.search.maximize,
        )
        return {**described, "TrainingJobSummaries": [self.summary(trial) for trial in ranked[:MAX_SUMMARIES]]}

    def _overall_best(self, best: TrialRun | None) -> dict[str, Any] | None:
        """With a warm start of identical data and algorithm: the best of this job's and its parents'."""
        warm = self.request.get("WarmStartConfig")
        if not warm or warm.get("WarmStartType") != "IdenticalDataAndAlgorithm":
            return None
        candidates = [self.summary(best)] if best else []
        for parent in warm["ParentHyperParameterTuningJobs"]:
            described = self.runtime.records.tuning_job(parent["HyperParameterTuningJobName"])
            if described.get("BestTrainingJob"):
                candidates.append(described["BestTrainingJob"])
        scored = [c for c in candidates if "FinalHyperParameterTuningJobObjectiveMetric" in c]
        if not scored:
            return None
        value = lambda c: c["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]  # noqa: E731
        return max(scored, key=value) if self.search.maximize else min(scored, key=value)


def tuning_summary(properties: Mapping[str, Any]) -> str:
    """The step's detail: the best trial and its objective, then what became of the trials."""
    best = properties["BestTrainingJob"]
    objective = best["FinalHyperParameterTuningJobObjectiveMetric"]
    counts = {status: count for status, count in properties["TrainingJobStatusCounters"].items() if count}
    ended = ", ".join(f"{count} {status}" for status, count in counts.items())
    return (
        f"best trial {best['TrainingJobName']} {objective['MetricName']}={objective['Value']:.4g}; "
        f"{sum(counts.values())} trials ({ended}); "
        + " ".join(f"{name}={value}" for name, value in best["TunedHyperParameters"].items())
    )


def _objective_status(trial: TrialRun) -> str:
    if trial.status == "InProgress":
        return "Pending"
    return "Succeeded" if trial.objective is not None else "Failed"


def _tuned_names(described: Mapping[str, Any]) -> set[str]:
    ranges = described["HyperParameterTuningJobConfig"].get("ParameterRanges", {})
    return {item["Name"] for kind in ranges.values() for item in kind}


def _failures(trials: list[TrialRun]) -> str:
    return "\n".join(f"{trial.name}: {trial.failure_reason}" for trial in trials if trial.failure_reason)
