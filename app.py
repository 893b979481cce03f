#!/usr/bin/env python3
"""The CDK app: reads the stage configuration once and composes the stacks.

    npx cdk synth -c stage=local      # default stage, deployable to the embedded moto server
    npx cdk deploy --all -c stage=prod

Stacks (each named `<project>-<stage>-<suffix>`, e.g. `mlops-local-storage`):
    storage         infra/stacks/storage_stack.py        KMS key, data/artifacts/access-log buckets
    execution-role  infra/stacks/execution_role_stack.py SageMaker execution role
    monitoring      infra/stacks/monitoring_stack.py     CloudWatch dashboard of the stage's endpoints
    pipelines       infra/stacks/pipelines_stack.py      training pipeline, model registry group, retraining per network
    batch           infra/stacks/batch_stack.py          batch transform pipeline per network
    endpoint-NET    infra/stacks/endpoint_stack.py       only with -c model_package.NET=ARN (`mlops deploy`)
    github-deploy   infra/stacks/github_deploy_stack.py  GitHub OIDC provider and deploy role, stages with `github`
"""

from __future__ import annotations

from typing import NamedTuple

import aws_cdk as cdk

from infra.config import StageConfig, load_stage_config
from infra.nag import add_nag_checks
from infra.stacks.batch_stack import BatchStack
from infra.stacks.endpoint_stack import add_endpoint_stacks
from infra.stacks.execution_role_stack import ExecutionRoleStack
from infra.stacks.github_deploy_stack import GithubDeployStack
from infra.stacks.monitoring_stack import MonitoringStack
from infra.stacks.pipelines_stack import PipelinesStack
from infra.stacks.storage_stack import StorageStack


class Stacks(NamedTuple):
    storage: StorageStack
    execution_role: ExecutionRoleStack
    pipelines: PipelinesStack
    github_deploy: GithubDeployStack | None
    batch: BatchStack


def compose(app: cdk.App, config: StageConfig) -> Stacks:
    storage = StorageStack(app, config)
    execution_role = ExecutionRoleStack(app, config, storage=storage)
    MonitoringStack(app, config)
    pipelines = PipelinesStack(app, config, storage=storage, execution_role=execution_role)
    batch = BatchStack(app, config, storage=storage, execution_role=execution_role, pipelines=pipelines)
    add_endpoint_stacks(app, config, storage=storage, execution_role=execution_role)
    github_deploy = GithubDeployStack(app, config) if config.github is not None else None
    add_nag_checks(app)
    return Stacks(storage, execution_role, pipelines, github_deploy, batch)


if __name__ == "__main__":
    app = cdk.App()
    compose(app, load_stage_config(app.node))
    app.synth()
