"""Records in the embedded moto server of what a local pipeline run really did.

moto's SageMaker records pipeline executions and training, processing and transform jobs through
the real API, but marks each one finished ("Succeeded", "Completed") the moment it is created, with
canned metrics. A local run creates its records through the API (so `mlops runs`, boto3 and the
AWS CLI see them), then corrects their status, times, failure reason and metrics in moto's
state, which this process shares with the server (`ThreadedMotoServer` runs in a thread here).
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

    def start_training_job(self, name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """CreateTrainingJob with the step's request; returns DescribeTrainingJob, InProgress."""
        self._sagemaker.create_training_job(TrainingJobName=name, **request)
        job = self._backend.training_jobs[name]
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

    def keep_network_isolation(self, model: str, isolated: bool) -> None:
        """CreateModel's EnableNetworkIsolation, which moto drops (it records False)."""
        self._backend._models[model].enable_network_isolation = isolated

    def start_transform_job(self, name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """CreateTransformJob with the step's request; returns DescribeTransformJob, InProgress."""
        self._sagemaker.create_transform_job(TransformJobName=name, **request)
        job = self._backend.transform_jobs[name]
        job.transform_job_status = "InProgress"
        job.transform_start_time = _now()
        job.transform_end_time = None
        return self._sagemaker.describe_transform_job(TransformJobName=name)

    def end_transform_job(self, name: str, status: str, failure_reason: str | None) -> dict[str, Any]:
        job = self._backend.transform_jobs[name]
        job.transform_job_status = status
        job.failure_reason = failure_reason
        job.transform_end_time = job.last_modified_time = _now()
        return self._sagemaker.describe_transform_job(TransformJobName=name)


def _now() -> datetime:
    return datetime.now(UTC)
