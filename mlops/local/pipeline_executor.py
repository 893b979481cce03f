"""Runs a SageMaker Pipeline registered in the embedded moto server, on this machine.

moto records pipelines but runs nothing, so this does what the Pipelines service would: it
reads the pipeline's definition back from moto (the one `create_pipeline` stored), starts an
execution record, and runs the steps in dependency order, resolving parameters and step
properties (`mlops.local.pipeline_references`) just before each step starts.

    Training, Processing   real jobs on this machine (`mlops.local.pipeline_jobs`)
    Model, Transform       CreateModel in moto; a batch transform job here (`mlops.local.inference_steps`)
    Tuning                 a tuning job whose trials are real training jobs (`mlops.local.tuning_job`)
    Condition              its conditions, then the steps of the branch they choose
    RegisterModel          CreateModelPackage in moto's model registry, with the step's arguments
    Fail                   ends the execution Failed with the step's ErrorMessage

Any other step type is refused, naming the step, before anything runs. Retry policies are not
applied: they cover service faults and capacity errors, which a local run does not have.

    executor = LocalPipelineExecutor(aws, work_dir, reporter)
    run = executor.start("mlops-local-cnn", {"Epochs": "3"})   # validated, execution recorded
    executor.execute(run)                                       # StepFailed if a step fails
    run.status, run.registered_model_arn, run.outcomes
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from mlops.local.iam import AccessDenied, RoleSessions
from mlops.local.inference_steps import INFERENCE_STEP_TYPES, InferenceStepRuntime, run_inference_step, started_detail
from mlops.local.isolation import Confinement
from mlops.local.moto import LocalAws
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_graph import check_step_types, execution_order
from mlops.local.pipeline_jobs import JobFailed, JobRuntime, new_job_name, run_processing_step, run_training_step
from mlops.local.pipeline_references import DefinitionError, ExecutionContext, parameter_values
from mlops.local.s3 import join_uri, read_json
from mlops.local.tuning_job import TUNING_JOB_NAME_LENGTH, TrialRun, run_tuning_step, tuning_summary

# TensorFlow's C++ start-up notices (oneDNN, CPU instructions, MLIR) are INFO: the jobs run here
# without them; its warnings and errors stay. A level set in this shell is kept.
TENSORFLOW_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


class StepReporter(Protocol):
    """Where the executor tells what happens, as it happens."""

    def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
        """`request`: the step's arguments, resolved (a job's Create* request)."""

    def step_log(self, step: str, line: str) -> None: ...

    def trial_update(self, step: str, trial: TrialRun) -> None:
        """A Tuning step's trial started, reported an epoch, or ended."""

    def step_ended(self, outcome: StepOutcome) -> None: ...


class StepFailed(Exception):
    """A step failed (or a Fail step ran): the execution ended Failed. `reason` is the step's
    FailureReason; `hint` what else shows why (from the job's log)."""

    def __init__(self, step: str, step_type: str, reason: str, hint: str = "") -> None:
        super().__init__(f"step {step} ({step_type}) failed: {reason}")
        self.step = step
        self.step_type = step_type
        self.reason = reason
        self.hint = hint


@dataclass(frozen=True)
class StepOutcome:
    step: str
    step_type: str
    status: str
    """Succeeded, Failed or Stopped."""
    seconds: float
    detail: str


@dataclass
class PipelineRun:
    """One execution: what it was given, and what its steps have done so far."""

    pipeline: str
    execution_arn: str
    steps: list[Mapping[str, Any]]
    """The definition's top-level steps, in the order they run."""
    context: ExecutionContext
    work_dir: Path
    role_arn: str
    """The pipeline's role: what SageMaker Pipelines itself does, it does as this role."""
    status: str = "Executing"
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def execution_id(self) -> str:
        return self.execution_arn.rsplit("/", 1)[-1]

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.context.parameters

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        """Properties (Describe* responses) of each step that completed, by name."""
        return self.context.steps

    @property
    def registered_model_arn(self) -> str | None:
        for properties in self.properties.values():
            if "ModelPackageArn" in properties:
                return properties["ModelPackageArn"]
        return None


class LocalPipelineExecutor:
    def __init__(
        self, aws: LocalAws, work_dir: Path, reporter: StepReporter, roles: RoleSessions | None = None
    ) -> None:
        self._aws = aws
        self._roles = roles or RoleSessions(aws)
        self._work_dir = work_dir
        self._reporter = reporter
        self._sagemaker = aws.client("sagemaker")
        self._s3 = aws.client("s3")
        self._records = MotoRecords(aws)

    def start(self, pipeline: str, overrides: Mapping[str, str], description: str = "mlops local") -> PipelineRun:
        """Reads `pipeline`'s definition back from moto, refuses steps it cannot run, resolves the
        parameters (`overrides`: name -> text, as StartPipelineExecution takes them), and starts
        the execution record. Nothing has run yet."""
        described = self._sagemaker.describe_pipeline(PipelineName=pipeline)
        steps, parameters = _checked(described["PipelineDefinition"], overrides)
        arn = self._records.start_execution(pipeline, overrides, description)
        return self._run_of(pipeline, arn, steps, parameters, described["RoleArn"])

    def adopt(self, execution_arn: str) -> PipelineRun:
        """An execution started through the API (StartPipelineExecution, which moto only records),
        to run as the Pipelines service runs it: the definition the execution was started with,
        its parameters, the pipeline's role. DefinitionError if a step cannot run here."""
        pipeline = execution_arn.split(":pipeline/", 1)[1].split("/", 1)[0]
        definition = self._sagemaker.describe_pipeline_definition_for_execution(PipelineExecutionArn=execution_arn)
        overrides = self._records.execution_parameters(pipeline, execution_arn)
        steps, parameters = _checked(definition["PipelineDefinition"], overrides)
        role = self._sagemaker.describe_pipeline(PipelineName=pipeline)["RoleArn"]
        return self._run_of(pipeline, execution_arn, steps, parameters, role)

    def fail_unstarted(self, execution_arn: str, reason: str) -> None:
        """Ends an adopted execution that could not start (its definition refused) Failed."""
        pipeline = execution_arn.split(":pipeline/", 1)[1].split("/", 1)[0]
        self._records.end_execution(pipeline, execution_arn, "Failed", reason)

    def _run_of(
        self, pipeline: str, arn: str, steps: list[Mapping[str, Any]], parameters: dict[str, Any], role: str
    ) -> PipelineRun:
        execution_id = arn.rsplit("/", 1)[-1]
        context = ExecutionContext(
            parameters=parameters,
            execution={"PipelineExecutionId": execution_id, "PipelineExecutionArn": arn, "PipelineName": pipeline},
            # The service reads a property file (the quality gate's report) as the pipeline's role.
            read_json=lambda uri: read_json(self._roles.client(role, "s3", "SageMakerPipelines"), uri),
        )
        return PipelineRun(
            pipeline=pipeline,
            execution_arn=arn,
            steps=steps,
            context=context,
            work_dir=self._work_dir / execution_id,
            role_arn=role,
        )

    def execute(self, run: PipelineRun) -> PipelineRun:
        """Runs the steps to the execution's end, filling `run` as they go. Raises StepFailed when
        a step fails or a Fail step runs; the execution's record in moto says so too."""
        try:
            for step in run.steps:
                self._run_step(step, run)
        except StepFailed as failure:
            run.status = "Failed"
            self._records.end_execution(run.pipeline, run.execution_arn, "Failed", str(failure))
            raise
        except BaseException as error:
            run.status, reason = _end_of(error)
            self._records.end_execution(run.pipeline, run.execution_arn, run.status, reason)
            raise
        run.status = "Succeeded"
        self._records.end_execution(run.pipeline, run.execution_arn, "Succeeded")
        return run

    def _run_step(self, step: Mapping[str, Any], run: PipelineRun) -> None:
        name, kind = step["Name"], step["Type"]
        started = time.perf_counter()

        def ended(status: str, detail: str) -> None:
            outcome = StepOutcome(name, kind, status, time.perf_counter() - started, detail)
            run.outcomes.append(outcome)
            reason = None if status == "Succeeded" else detail
            self._records.step_ended(run.execution_arn, name, kind, status, reason, run.properties.get(name))
            self._reporter.step_ended(outcome)

        self._records.step_started(run.execution_arn, name)

        try:
            # A condition's branches hold steps that resolve their own arguments when (and if)
            # they run; its conditions are resolved as they are evaluated.
            arguments = (
                step.get("Arguments", {}) if kind == "Condition" else run.context.resolve(step.get("Arguments", {}))
            )
            detail, branch = self._start(step, arguments, run)
            if kind == "Fail":
                raise StepFailed(name, kind, arguments.get("ErrorMessage") or "a Fail step ran")
        except (JobFailed, DefinitionError, BotoCoreError, ClientError, Boto3Error, AccessDenied) as error:
            # A call to the (local) AWS that fails fails the step, as a rejected request would (boto3's
            # transfers wrap it: an output upload the role may not make is an S3UploadFailedError).
            reason = error.reason if isinstance(error, JobFailed) else str(error)
            ended("Failed", reason)
            raise StepFailed(name, kind, reason, error.hint if isinstance(error, JobFailed) else "") from None
        except StepFailed as failure:
            ended("Failed", failure.reason)
            raise
        except BaseException as error:
            ended(*_end_of(error))
            raise
        ended("Succeeded", detail)
        for inner in execution_order(branch, finished=set(run.properties)):
            self._run_step(inner, run)

    def _start(
        self, step: Mapping[str, Any], arguments: dict[str, Any], run: PipelineRun
    ) -> tuple[str, list[Mapping[str, Any]]]:
        """Runs one step; returns what to tell about it, and the steps it lets run (a branch)."""
        name, kind = step["Name"], step["Type"]
        context = run.context
        if kind == "Training":
            job_name = new_job_name(run.execution_id, name)
            self._records.step_job(run.execution_arn, name, "TrainingJob", job_name)
            runtime = self._job_runtime(run, arguments, job_name)
            isolation = runtime.confinement(arguments.get("EnableNetworkIsolation"))
            self._reporter.step_started(name, kind, f"training job {job_name}" + _isolated(isolation), arguments)
            self._authorize_job(run, kind, job_name, arguments)
            properties = run_training_step(name, job_name, arguments, runtime)
            context.steps[name] = properties
            metrics = " ".join(
                f"{metric['MetricName']}={metric['Value']:.4g}" for metric in properties.get("FinalMetricDataList", [])
            )
            return f"{metrics}; model {properties['ModelArtifacts']['S3ModelArtifacts']}", []
        if kind == "Tuning":
            job_name = new_job_name(run.execution_id, name, limit=TUNING_JOB_NAME_LENGTH)
            runtime = self._job_runtime(run, arguments["TrainingJobDefinition"], job_name)
            self._reporter.step_started(name, kind, f"tuning job {job_name}", arguments)
            self._records.step_job(run.execution_arn, name, "TuningJob", job_name)
            self._authorize_job(run, "HyperParameterTuning", job_name, arguments["TrainingJobDefinition"])
            properties = run_tuning_step(
                name, job_name, arguments, runtime, lambda trial: self._reporter.trial_update(name, trial)
            )
            context.steps[name] = properties
            return tuning_summary(properties), []
        if kind == "Processing":
            job_name = new_job_name(run.execution_id, name)
            self._records.step_job(run.execution_arn, name, "ProcessingJob", job_name)
            runtime = self._job_runtime(run, arguments, job_name)
            isolation = runtime.confinement(arguments.get("NetworkConfig", {}).get("EnableNetworkIsolation"))
            self._reporter.step_started(name, kind, f"processing job {job_name}" + _isolated(isolation), arguments)
            self._authorize_job(run, kind, job_name, arguments)
            properties = run_processing_step(name, job_name, arguments, runtime)
            context.steps[name] = properties
            context.property_files[name] = _property_files(step, properties)
            return ", ".join(f"{file} at {uri}" for file, uri in context.property_files[name].items()), []
        if kind == "Condition":
            self._reporter.step_started(name, kind, "", arguments)
            outcome = all(context.holds(condition) for condition in arguments["Conditions"])
            context.steps[name] = {"Outcome": str(outcome).lower()}
            branch = arguments.get("IfSteps" if outcome else "ElseSteps", [])
            names = ", ".join(step["Name"] for step in branch) or "nothing"
            return f"conditions {'met' if outcome else 'not met'}: next {names}", branch
        if kind in INFERENCE_STEP_TYPES:
            resource = new_job_name(run.execution_id, name)
            self._records.step_job(run.execution_arn, name, "Model" if kind == "Model" else "TransformJob", resource)
            self._reporter.step_started(name, kind, started_detail(kind, resource), arguments)
            lent = InferenceStepRuntime(
                self._sagemaker, self._roles, self._records, run.role_arn, run.work_dir, self._reporter.step_log
            )
            context.steps[name], detail = run_inference_step(kind, name, resource, arguments, lent)
            return detail, []
        if kind == "RegisterModel":
            self._reporter.step_started(
                name, kind, f"model package group {arguments['ModelPackageGroupName']}", arguments
            )
            self._roles.authorize(run.role_arn, "sagemaker:CreateModelPackage", arguments)
            model_arn = self._sagemaker.create_model_package(**arguments)["ModelPackageArn"]
            context.steps[name] = {"ModelPackageArn": model_arn}
            return f"registered {model_arn} ({arguments.get('ModelApprovalStatus', 'PendingManualApproval')})", []
        self._reporter.step_started(name, kind, "", arguments)
        return "", []

    def _job_runtime(self, run: PipelineRun, request: Mapping[str, Any], job_name: str) -> JobRuntime:
        """What SageMaker does for a job (moving its data, running it) it does with the job's role."""
        role = request["RoleArn"]
        return JobRuntime(
            s3=self._roles.client(role, "s3", job_name),
            records=self._records,
            env={
                **self._aws.env,
                **self._roles.credentials(role, job_name),
                TENSORFLOW_LOG_LEVEL: os.environ.get(TENSORFLOW_LOG_LEVEL, "1"),
            },
            work_dir=run.work_dir,
            on_line=self._reporter.step_log,
        )

    def _authorize_job(self, run: PipelineRun, kind: str, job_name: str, request: Mapping[str, Any]) -> None:
        """Create<kind>Job, `kind` Training, Processing or HyperParameterTuning (the step's arguments
        and the job's name, as SageMaker Pipelines sends them), and passing the job its role, as the
        pipeline's role."""
        self._roles.authorize(run.role_arn, f"sagemaker:Create{kind}Job", {**request, f"{kind}JobName": job_name})
        self._roles.authorize(run.role_arn, "iam:PassRole", {"RoleArn": request["RoleArn"]})


def _checked(definition_text: str, overrides: Mapping[str, str]) -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    """The definition's steps in the order they run, and its parameters resolved; DefinitionError
    for a step this executor cannot run or a parameter it does not declare."""
    definition = json.loads(definition_text)
    steps = definition.get("Steps", [])
    check_step_types(steps)
    return execution_order(steps), parameter_values(definition.get("Parameters", []), overrides)


def _isolated(confinement: Confinement | None) -> str:
    return f", network isolated: {confinement.describe()}" if confinement else ""


def _end_of(error: BaseException) -> tuple[str, str]:
    """The status and reason an execution or step ends with when an unexpected `error` ends it."""
    if isinstance(error, KeyboardInterrupt):
        return "Stopped", "the local run was interrupted"
    return "Failed", f"{type(error).__name__}: {error}"


def _property_files(step: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, str]:
    """Where each PropertyFile of a finished Processing step is: its output's S3 URI + FilePath."""
    outputs = {
        output["OutputName"]: output["S3Output"]["S3Uri"]
        for output in properties.get("ProcessingOutputConfig", {}).get("Outputs", [])
    }
    files = {}
    for declared in step.get("PropertyFiles", []):
        if declared["OutputName"] not in outputs:
            raise DefinitionError(
                f"property file {declared['PropertyFileName']} names output "
                f"{declared['OutputName']!r}, which step {step['Name']} does not have"
            )
        files[declared["PropertyFileName"]] = join_uri(outputs[declared["OutputName"]], declared["FilePath"])
    return files
