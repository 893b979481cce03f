"""Records in the embedded moto server of what a local pipeline run really did.

moto's SageMaker records pipeline executions and training, processing and tuning jobs through the
real API, but marks each one finished ("Succeeded", "Completed") the moment it is created, with
canned metrics (and, for a tuning job, a made-up best training job). A local run creates its
records through the API (so `mlops runs`, boto3 and the AWS CLI see them), then corrects their
status, times, failure reason, metrics and a tuning job's trials and best one in moto's state,
which this process shares with the server (`ThreadedMotoServer` runs in a thread here). A trial
is recorded with the TuningJobArn DescribeTrainingJob gives it; moto has no
ListTrainingJobsForHyperParameterTuningJob, so `trials` finds them by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from moto.backends import get_backend

from mlops.local.moto import LocalAws


class MotoRecords:
    def __init__(self, aws: LocalAws) -> None:
        self._aws = aws
        self._sagemaker = aws.client("sagemaker")

    @property
    def _backend(self) -> Any:
        return get_backend("sagemaker")[self._aws.account][self._aws.region]

    # ------------------------------------------------------------------------------ executions

    def start_execution(self, pipeline: str, parameters: Mapping[str, str], description: str) -> str:
        """StartPipelineExecution; returns the execution ARN, the execution left Executing."""
        arn = self._sagemaker.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDescription=description,
            PipelineParameters=[{"Name": name, "Value": value} for name, value in parameters.items()],
        )["PipelineExecutionArn"]
        self._execution(pipeline, arn).pipeline_execution_status = "Executing"
        return arn

    def end_execution(self, pipeline: str, arn: str, status: str, reason: str | None = None) -> None:
        execution = self._execution(pipeline, arn)
        execution.pipeline_execution_status = status
        execution.pipeline_execution_failure_reason = reason
        execution.last_modified_time = _now()

    def _execution(self, pipeline: str, arn: str) -> Any:
        return self._backend.pipelines[pipeline].pipeline_executions[arn]

    # ------------------------------------------------------------------------------ jobs

    def start_training_job(
        self, name: str, request: Mapping[str, Any], *, tuning_job_arn: str | None = None
    ) -> dict[str, Any]:
        """CreateTrainingJob with the step's request (or a tuning job's trial, recorded as launched
        by `tuning_job_arn`, as DescribeTrainingJob's TuningJobArn says); returns
        DescribeTrainingJob, InProgress."""
        self._sagemaker.create_training_job(TrainingJobName=name, **request)
        job = self._backend.training_jobs[name]
        job.tuning_job_arn = tuning_job_arn
        # moto replaces the definitions with canned ones; keep what the job was given.
        job.algorithm_specification = dict(request["AlgorithmSpecification"])
        job.training_job_status, job.secondary_status = "InProgress", "Training"
        job.final_metric_data_list = []
        job.training_start_time = _now()
        job.training_end_time = None
        return self._sagemaker.describe_training_job(TrainingJobName=name)

    def end_training_job(
        self, name: str, status: str, failure_reason: str | None, *, final_metrics: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Completed, Failed or Stopped, with the metrics the log gave; returns DescribeTrainingJob."""
        job = self._backend.training_jobs[name]
        job.training_job_status = job.secondary_status = status
        job.failure_reason = failure_reason
        job.final_metric_data_list = [dict(metric) for metric in final_metrics]
        job.training_end_time = job.last_modified_time = _now()
        seconds = int((job.training_end_time - job.training_start_time).total_seconds())
        job.training_time_in_seconds = job.billable_time_in_seconds = max(seconds, 1)
        return self._sagemaker.describe_training_job(TrainingJobName=name)

    def start_tuning_job(self, name: str, request: Mapping[str, Any]) -> str:
        """CreateHyperParameterTuningJob with the step's request; the job left InProgress with no
        trial yet (moto reports it Completed at once, with a made-up best training job)."""
        arn = self._sagemaker.create_hyper_parameter_tuning_job(HyperParameterTuningJobName=name, **request)[
            "HyperParameterTuningJobArn"
        ]
        job = self._backend.hyper_parameter_tuning_jobs[name]
        job.hyper_parameter_tuning_job_status = "InProgress"
        job.hyper_parameter_tuning_end_time = None
        job.best_training_job = job.OverallBestTrainingJob = None
        job.tuning_job_completion_details = None
        job.failure_reason = None
        self.update_tuning_job(name, training_job_counts={}, objective_counts={}, seconds=0)
        return arn

    def update_tuning_job(
        self,
        name: str,
        *,
        training_job_counts: Mapping[str, int],
        objective_counts: Mapping[str, int],
        seconds: int,
        best: Mapping[str, Any] | None = None,
        overall_best: Mapping[str, Any] | None = None,
    ) -> None:
        """Its trials' counts, the best so far and the time they consumed, as they change."""
        job = self._backend.hyper_parameter_tuning_jobs[name]
        job.training_job_status_counters = {
            status: training_job_counts.get(status, 0)
            for status in ("Completed", "InProgress", "RetryableError", "NonRetryableError", "Stopped")
        }
        job.objective_status_counters = {
            status: objective_counts.get(status, 0) for status in ("Succeeded", "Pending", "Failed")
        }
        job.consumed_resources = {"RuntimeInSeconds": seconds}
        job.best_training_job = dict(best) if best else None
        job.OverallBestTrainingJob = dict(overall_best) if overall_best else None
        job.last_modified_time = _now()

    def end_tuning_job(self, name: str, status: str, failure_reason: str | None = None) -> dict[str, Any]:
        job = self._backend.hyper_parameter_tuning_jobs[name]
        job.hyper_parameter_tuning_job_status = status
        job.failure_reason = failure_reason
        job.hyper_parameter_tuning_end_time = job.last_modified_time = _now()
        return self._sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def tuning_job(self, name: str) -> dict[str, Any]:
        """DescribeHyperParameterTuningJob (ResourceNotFound as a ClientError)."""
        return self._sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def trials(self, tuning_job_arn: str) -> list[dict[str, Any]]:
        """DescribeTrainingJob of every training job `tuning_job_arn` launched, oldest first: what
        ListTrainingJobsForHyperParameterTuningJob lists, which moto does not implement."""
        names = [
            name
            for name, job in self._backend.training_jobs.items()
            if getattr(job, "tuning_job_arn", None) == tuning_job_arn
        ]
        return [self._sagemaker.describe_training_job(TrainingJobName=name) for name in names]

    def start_processing_job(self, name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        self._sagemaker.create_processing_job(ProcessingJobName=name, **request)
        job = self._backend.processing_jobs[name]
        job.processing_job_status = "InProgress"
        job.processing_start_time = _now()
        job.processing_end_time = None
        return self._sagemaker.describe_processing_job(ProcessingJobName=name)

    def end_processing_job(self, name: str, status: str, failure_reason: str | None) -> dict[str, Any]:
        job = self._backend.processing_jobs[name]
        job.processing_job_status = status
        job.failure_reason = failure_reason
        job.processing_end_time = job.last_modified_time = _now()
        return self._sagemaker.describe_processing_job(ProcessingJobName=name)


def _now() -> datetime:
    return datetime.now(UTC)
