"""`<prefix>-storage`: the project key, the data and artifacts buckets, and their access logs."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.buckets import AccessLogBucket
from infra.constructs.data_bucket import DataBucket
from infra.constructs.key import ProjectKey
from infra.constructs.promotion import share_artifacts
from infra.stacks.base import ProjectStack


class StorageStack(ProjectStack):
    def __init__(self, scope: Construct, config: StageConfig) -> None:
        super().__init__(
            scope,
            config,
            naming.STORAGE_STACK_SUFFIX,
            description="Encrypted storage: KMS key, data, artifacts and access-log buckets",
        )
        self.key = ProjectKey(self, "ProjectKey", config=config)
        self.access_logs = AccessLogBucket(self, "AccessLogs", config=config)
        self.data = DataBucket(self, "Data", config=config, key=self.key, access_logs=self.access_logs.bucket)
        self.artifacts = ArtifactsBucket(
            self, "Artifacts", config=config, key=self.key, access_logs=self.access_logs.bucket
        )
        # Stages that serve this one's model versions read them from here (docs/cicd.md).
        share_artifacts(self.artifacts, self.key.key, config)

        cdk.CfnOutput(self, "KeyArn", value=self.key.key_arn)
        cdk.CfnOutput(self, "DataBucketName", value=self.data.bucket_name)
        cdk.CfnOutput(self, "ArtifactsBucketName", value=self.artifacts.bucket_name)
        cdk.CfnOutput(self, "AccessLogBucketName", value=self.access_logs.bucket.bucket_name)
