"""Records in the embedded moto server of what a local pipeline run really did.

moto's SageMaker records pipeline executions and training, processing, tuning and transform
jobs through the real API, but marks each one finished ("Succeeded", "Completed") the moment it is created, with
canned metrics (and, for a tuning job, a made-up best training job). A local run creates its
records through the API (so `mlops runs`, boto3 and the AWS CLI see them), then corrects their
status, times, failure reason, metrics and a tuning job's trials and best one in moto's state,
which this process shares with the server (`ThreadedMotoServer` runs in a thread here). A trial
is recorded with the TuningJobArn DescribeTrainingJob gives it; moto has no
ListTrainingJobsForHyperParameterTuningJob, so `trials` finds them by it.

moto does not implement ListPipelineExecutionSteps; each execution's steps are recorded here in
that API's shape (`PipelineExecutionStep`, botocore's sagemaker model), and
`mlops.local.moto_service` answers the call from them.
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

    def execution_parameters(self, pipeline: str, arn: str) -> dict[str, str]:
        """The PipelineParameters the execution was started with (name -> text)."""
        given = self._execution(pipeline, arn).pipeline_parameters or []
        return {parameter["Name"]: parameter["Value"] for parameter in given}

    def _execution(self, pipeline: str, arn: str) -> Any:
        return self._backend.pipelines[pipeline].pipeline_executions[arn]

    # ------------------------------------------------------------------------------ steps

    def step_started(self, arn: str, step: str) -> None:
        steps = step_records(self._execution(_pipeline_of(arn), arn))
        steps.append({"StepName": step, "StartTime": _now(), "StepStatus": "Executing", "AttemptCount": 1})

    def step_job(self, arn: str, step: str, kind: str, job_name: str) -> None:
        """The job a Training (kind TrainingJob), Processing (ProcessingJob), Tuning (TuningJob) or
        Transform (TransformJob) step runs, or the model a Model step (Model) creates, in its
        Metadata as soon as it is named, as SageMaker shows it while the job runs."""
        resource = {
            "TrainingJob": "training-job",
            "ProcessingJob": "processing-job",
            "TuningJob": "hyper-parameter-tuning-job",
            "TransformJob": "transform-job",
            "Model": "model",
        }[kind]
        arn_of_job = f"arn:aws:sagemaker:{self._aws.region}:{self._aws.account}:{resource}/{job_name}"
        self._step(arn, step)["Metadata"] = {kind: {"Arn": arn_of_job}}

    def step_ended(
        self, arn: str, step: str, kind: str, status: str, reason: str | None, properties: Mapping[str, Any] | None
    ) -> None:
        record = self._step(arn, step)
        record.update(StepStatus=status, EndTime=_now())
        if reason:
            record["FailureReason"] = reason
        properties = properties or {}
        if kind == "Condition" and "Outcome" in properties:
            record["Metadata"] = {"Condition": {"Outcome": properties["Outcome"].capitalize()}}
        elif kind == "RegisterModel" and "ModelPackageArn" in properties:
            record["Metadata"] = {"RegisterModel": {"Arn": properties["ModelPackageArn"]}}
        elif kind == "Fail":
            record["Metadata"] = {"Fail": {"ErrorMessage": reason or ""}}

    def _step(self, arn: str, step: str) -> dict[str, Any]:
        return next(
            record
            for record in reversed(step_records(self._execution(_pipeline_of(arn), arn)))
            if record["StepName"] == step
        )

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
        # moto drops the cluster the job runs on, which DescribeProcessingJob always has in AWS.
        job.processing_resources = dict(request["ProcessingResources"])
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


def step_records(execution: Any) -> list[dict[str, Any]]:
    """The steps recorded on one of moto's execution records, in the order they started."""
    if not hasattr(execution, "mlops_step_records"):
        execution.mlops_step_records = []
    records: list[dict[str, Any]] = execution.mlops_step_records
    return records


def _pipeline_of(execution_arn: str) -> str:
    return execution_arn.split(":pipeline/", 1)[1].split("/", 1)[0]


def _now() -> datetime:
    return datetime.now(UTC)
