"""Releasing a registered model: `cdk deploy` of its network's endpoint stack, alone."""

from __future__ import annotations

import dataclasses
from typing import Any

from infra import naming
from infra.config import StageConfig
from mlops.cdk import CdkCli
from mlops.endpoint_autoscaling import autoscaling_set_aside
from mlops.monitoring import monitored_version_parameters
from mlops.registry import ModelVersion


def deploy_endpoint(
    cdk: CdkCli, config: StageConfig, network: str, model: ModelVersion, sagemaker: Any
) -> dict[str, str]:
    """`cdk deploy` of the network's endpoint stack alone, serving `model`; returns its outputs.
    Where the stage captures traffic, the stack's drift monitor watches `model`: its parameters
    name the version's model and baseline, read from the registry through `sagemaker`. A new
    instance type for a variant registered for autoscaling has it set aside for the update
    (mlops.endpoint_autoscaling), as SageMaker requires."""
    parameters = monitored_version_parameters(sagemaker, model.arn) if config.captures_data else {}
    stack = naming.endpoint_stack_name(config.prefix(), network)
    synthesized = cdk.template(stack) if cdk.assembly is not None else None
    if synthesized is None or synthesized.get("Outputs", {}).get("ModelPackageArn", {}).get("Value") != model.arn:
        # Not in the assembly at hand, or serving another version: synthesize the app for `model`.
        cdk = dataclasses.replace(
            cdk, assembly=None, context={**cdk.context, naming.model_package_context_key(network): model.arn}
        )
    instance_type = None if config.endpoint.serverless else config.endpoint_instance_type(network)
    endpoint = naming.endpoint_name(config.prefix(), network)
    with autoscaling_set_aside(cdk.target, endpoint, instance_type, say=cdk.echo or (lambda _: None)):
        # --exclusively: the storage and role stacks it imports from are deployed already, and a
        # model release must not touch them. Change sets and approval: see CdkCli.deploy.
        outputs = cdk.deploy(
            [stack],
            extra=["--exclusively", *(f"--parameters={stack}:{name}={value}" for name, value in parameters.items())],
        )
    return outputs.get(stack, {})
