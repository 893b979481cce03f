"""`<prefix>-execution-role`: the role SageMaker runs this project's jobs and endpoints as."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.execution_role import SageMakerExecutionRole
from infra.constructs.promotion import allow_read_promoted_artifacts
from infra.stacks.base import ProjectStack
from infra.stacks.storage_stack import StorageStack


class ExecutionRoleStack(ProjectStack):
    def __init__(self, scope: Construct, config: StageConfig, *, storage: StorageStack) -> None:
        super().__init__(scope, config, "execution-role", description="The least-privilege SageMaker execution role")
        self.execution_role = SageMakerExecutionRole(
            self,
            "SageMakerExecutionRole",
            config=config,
            key=storage.key,
            data=storage.data,
            artifacts=storage.artifacts,
        )
        if config.promotion_source is not None:
            # The endpoints serve the source stage's versions, stored in its account.
            allow_read_promoted_artifacts(self.execution_role.role, config.promotion_source)

        cdk.CfnOutput(self, "ExecutionRoleArn", value=self.execution_role.role_arn)
