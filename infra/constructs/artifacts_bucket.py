"""The artifacts bucket: everything training, pipelines and endpoints produce.

models/           training job outputs (model.tar.gz, output.tar.gz)
checkpoints/      training checkpoints, expired after `checkpoint_expiry_days`
pipelines/        pipeline step outputs such as evaluation reports
data-capture/     endpoint request/response capture
capture-windows/  each drift monitor run's copy of its window's captures, expired after a day
batch-transform/  batch transform outputs, <network>/<execution id>/<object>.out
async-inference/  asynchronous endpoints' inputs, answers and failures, <network>/input|output|failures/
"""

from __future__ import annotations

from typing import ClassVar

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.buckets import READ_ACTIONS, WRITE_ACTIONS, ProjectBucket
from infra.constructs.key import ProjectKey
from infra.definitions.monitor_pipeline import CAPTURE_WINDOWS_PREFIX
from infra.definitions.transform_pipeline import OUTPUT_PREFIX

# A monitor run reads its copy within its own run (minutes); a day is S3's shortest expiry.
CAPTURE_WINDOW_EXPIRY_DAYS = 1


class ArtifactsBucket(ProjectBucket):
    PURPOSE: ClassVar[str] = "artifacts"
    MODELS_PREFIX: ClassVar[str] = "models/"
    CHECKPOINTS_PREFIX: ClassVar[str] = "checkpoints/"
    PIPELINES_PREFIX: ClassVar[str] = "pipelines/"
    DATA_CAPTURE_PREFIX: ClassVar[str] = "data-capture/"
    CAPTURE_WINDOWS_PREFIX: ClassVar[str] = CAPTURE_WINDOWS_PREFIX
    BATCH_TRANSFORM_PREFIX: ClassVar[str] = OUTPUT_PREFIX
    ASYNC_INFERENCE_PREFIX: ClassVar[str] = "async-inference/"

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, key: ProjectKey, access_logs: s3.IBucket
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            purpose=self.PURPOSE,
            config=config,
            key=key,
            access_logs=access_logs,
            extra_lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireCheckpoints",
                    prefix=self.CHECKPOINTS_PREFIX,
                    expiration=cdk.Duration.days(config.checkpoint_expiry_days),
                ),
                s3.LifecycleRule(
                    id="ExpireCaptureWindows",
                    prefix=self.CAPTURE_WINDOWS_PREFIX,
                    expiration=cdk.Duration.days(CAPTURE_WINDOW_EXPIRY_DAYS),
                ),
            ],
        )

    def allow_write_model_artifacts(self, grantee: iam.IGrantable) -> None:
        self._allow(
            grantee, sid="WriteModelArtifacts", actions=WRITE_ACTIONS, prefixes=[self.MODELS_PREFIX], list_objects=False
        )

    def allow_read_model_artifacts(self, grantee: iam.IGrantable) -> None:
        self._allow(
            grantee, sid="ReadModelArtifacts", actions=READ_ACTIONS, prefixes=[self.MODELS_PREFIX], list_objects=True
        )

    def allow_read_write_checkpoints(self, grantee: iam.IGrantable) -> None:
        # No s3:DeleteObject: SageMaker only uploads checkpoints; the lifecycle rule expires them.
        self._allow(
            grantee,
            sid="ReadWriteCheckpoints",
            actions=READ_ACTIONS + WRITE_ACTIONS,
            prefixes=[self.CHECKPOINTS_PREFIX],
            list_objects=True,
        )

    def allow_write_pipeline_outputs(self, grantee: iam.IGrantable) -> None:
        self._allow(
            grantee,
            sid="WritePipelineOutputs",
            actions=WRITE_ACTIONS,
            prefixes=[self.PIPELINES_PREFIX],
            list_objects=False,
        )

    def allow_read_pipeline_outputs(self, grantee: iam.IGrantable) -> None:
        self._allow(
            grantee,
            sid="ReadPipelineOutputs",
            actions=READ_ACTIONS,
            prefixes=[self.PIPELINES_PREFIX],
            list_objects=True,
        )

    def allow_write_data_capture(self, grantee: iam.IGrantable) -> None:
        self._allow(
            grantee,
            sid="WriteDataCapture",
            actions=("s3:PutObject",),
            prefixes=[self.DATA_CAPTURE_PREFIX],
            list_objects=False,
        )

    def allow_read_data_capture(self, grantee: iam.IGrantable) -> None:
        # The drift monitor's CollectCaptures step lists a window's hour folders and copies their files.
        self._allow(
            grantee, sid="ReadDataCapture", actions=READ_ACTIONS, prefixes=[self.DATA_CAPTURE_PREFIX], list_objects=True
        )

    def allow_read_write_capture_windows(self, grantee: iam.IGrantable) -> None:
        # SageMaker uploads CollectCaptures' copy, then lists and reads it into the Monitor's input.
        # No s3:DeleteObject: the lifecycle rule expires the copies.
        self._allow(
            grantee,
            sid="ReadWriteCaptureWindows",
            actions=READ_ACTIONS + WRITE_ACTIONS,
            prefixes=[self.CAPTURE_WINDOWS_PREFIX],
            list_objects=True,
        )

    def allow_write_batch_outputs(self, grantee: iam.IGrantable) -> None:
        # A transform job uploads its <object>.out files as the model's execution role (multipart).
        self._allow(
            grantee,
            sid="WriteBatchTransformOutputs",
            actions=WRITE_ACTIONS,
            prefixes=[self.BATCH_TRANSFORM_PREFIX],
            list_objects=False,
        )

    def allow_read_write_async_inference(self, grantee: iam.IGrantable) -> None:
        # An asynchronous endpoint reads each request's input and writes its answer or failure as
        # the model's execution role; clients put the inputs under <network>/input/.
        self._allow(
            grantee,
            sid="ReadWriteAsyncInference",
            actions=READ_ACTIONS + WRITE_ACTIONS,
            prefixes=[self.ASYNC_INFERENCE_PREFIX],
            list_objects=False,
        )
