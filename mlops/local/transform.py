"""A batch transform run on this machine: the network's transform pipeline, as deployed, through the
local executor, on the local AWS of `mlops local` (or any local AWS that holds the stage's stacks).

    summary = run_local_transform(aws, roles, config, request, reporter, work_dir)
    summary.line()   # "10,000 records from 1 object(s) in 9.3 s (1,075 records/s); output in s3://..."

The pipeline is the batch stack's, which `mlops local` creates in moto with the training pipelines
(moto's CloudFormation skips pipelines); the input is uploaded as `mlops transform` uploads it;
the run's steps are reported to `reporter` as they go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from infra import naming
from infra.config import StageConfig
from mlops.batch import TransformRequest, TransformSummary, run_stamp, summarize
from mlops.errors import RunFailed
from mlops.local.iam import RoleSessions
from mlops.local.moto import LocalAws
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed, StepReporter
from mlops.local.pipeline_references import DefinitionError
from mlops.local.progress import LiveProgress, PlainProgress
from mlops.local.report import ReportFolder
from mlops.monitoring import stack_values
from mlops.phases import Phase


class _LocalRun(Protocol):
    """What the phase takes of `mlops.local.run.LocalRun`."""

    @property
    def aws(self) -> LocalAws: ...
    @property
    def roles(self) -> RoleSessions: ...

    config: StageConfig
    view: PlainProgress | LiveProgress
    folder: ReportFolder


def transform_phase(run: _LocalRun, request: TransformRequest) -> Phase:
    """`mlops local --transform`'s last phase: the pipeline on the run's local AWS, summarised."""

    def score() -> None:
        summary = run_local_transform(run.aws, run.roles, run.config, request, run.view, run.folder.pipeline_dir)
        run.view.note(summary.line())

    return Phase("Score the batch input with the batch transform pipeline", score)


def run_local_transform(
    aws: LocalAws,
    roles: RoleSessions,
    config: StageConfig,
    request: TransformRequest,
    reporter: StepReporter,
    work_dir: Path,
    output: str | None = None,
) -> TransformSummary:
    """Runs the transform pipeline on `request`'s input; RunFailed naming the step that failed."""
    pipeline = naming.transform_pipeline_name(config.prefix(), request.network)
    _, outputs = stack_values(
        aws.client("cloudformation"), naming.stack_name(config.prefix(), naming.STORAGE_STACK_SUFFIX)
    )
    executor = LocalPipelineExecutor(aws, work_dir, reporter, roles=roles)
    try:
        input_uri = request.upload(aws.client("s3"), outputs["DataBucketName"], run_stamp())
        run = executor.start(pipeline, request.parameters(input_uri, output), description="mlops transform")
    except (DefinitionError, BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot start the {pipeline} pipeline: {error}") from None
    try:
        executor.execute(run)
    except StepFailed as failure:
        raise RunFailed(
            f"the {pipeline} pipeline failed at step {failure.step} ({failure.step_type}): {failure.reason}"
            + (f"\n{failure.hint}" if failure.hint else "")
        ) from None
    (job,) = [
        properties["TransformJobName"] for properties in run.properties.values() if "TransformJobName" in properties
    ]
    described = aws.client("sagemaker").describe_transform_job(TransformJobName=job)
    return summarize(aws.client("s3"), described)
