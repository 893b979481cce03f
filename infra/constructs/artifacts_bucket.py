"""The artifacts bucket: everything training, pipelines and endpoints produce.

models/        training job outputs (model.tar.gz, output.tar.gz)
checkpoints/   training checkpoints, expired after `checkpoint_expiry_days`
pipelines/     pipeline step outputs such as evaluation reports
data-capture/  endpoint request/response capture
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


class ArtifactsBucket(ProjectBucket):
    PURPOSE: ClassVar[str] = "artifacts"
    MODELS_PREFIX: ClassVar[str] = "models/"
    CHECKPOINTS_PREFIX: ClassVar[str] = "checkpoints/"
    PIPELINES_PREFIX: ClassVar[str] = "pipelines/"
    DATA_CAPTURE_PREFIX: ClassVar[str] = "data-capture/"

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
                )
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
        # The drift monitor lists a window's hour folders and reads their files.
        self._allow(
            grantee, sid="ReadDataCapture", actions=READ_ACTIONS, prefixes=[self.DATA_CAPTURE_PREFIX], list_objects=True
        )
