"""`<prefix>-batch`: each network's batch transform pipeline, its role and its schedule
(infra/constructs/batch_transform.py).

A stack of its own, beside the pipelines stack whose source bundle its processing steps run: the
training pipelines' template is already a quarter of CloudFormation's 1 MB.
"""

from __future__ import annotations

from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.batch_transform import BatchTransform
from infra.stacks.base import ProjectStack
from infra.stacks.execution_role_stack import ExecutionRoleStack
from infra.stacks.pipelines_stack import PipelinesStack
from infra.stacks.storage_stack import StorageStack


class BatchStack(ProjectStack):
    def __init__(
        self,
        scope: Construct,
        config: StageConfig,
        *,
        storage: StorageStack,
        execution_role: ExecutionRoleStack,
        pipelines: PipelinesStack,
    ) -> None:
        super().__init__(
            scope,
            config,
            naming.BATCH_STACK_SUFFIX,
            description="SageMaker batch transform pipelines: a batch of inputs scored by an approved model version",
        )
        # Its steps run the source bundle that the pipelines stack publishes (and grants the
        # execution role to read): deployed after it.
        self.add_stack_dependency(pipelines)
        self.transforms = {
            network: BatchTransform(
                self,
                f"BatchTransform-{network}",
                config=config,
                network=network,
                source_bundle=pipelines.source_bundle,
                key=storage.key,
                data=storage.data,
                artifacts=storage.artifacts,
                execution_role=execution_role.execution_role.role,
            )
            for network in config.networks
        }
