"""`<prefix>-endpoint-<network>`: the endpoint serving the network's approved model package.

The app adds one of these only when the approved package is named on the command line
(`-c model_package.<network>=<arn>`, which `mlops deploy` does), so `cdk deploy --all` never
creates or changes an endpoint by accident, and a newly approved version is a plain stack
update: new model, new endpoint config, blue/green update of the same endpoint.

The execution role already holds what hosting needs (read `models/`, write `data-capture/`,
the project key, endpoint logs and metrics, the serving image): see
`infra/constructs/execution_role.py`.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from constructs import Construct

from infra import naming
from infra.config import ConfigError, StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.drift_monitor import MonitorSchedule
from infra.constructs.model_endpoint import ModelEndpoint
from infra.stacks.base import ProjectStack
from infra.stacks.execution_role_stack import ExecutionRoleStack
from infra.stacks.storage_stack import StorageStack
from training.networks import get_network

CONTEXT_PREFIX = naming.model_package_context_key("")
_MODEL_PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):model-package/(?P<group>[A-Za-z0-9-]+)/(?P<version>\d+)$"
)


class EndpointStack(ProjectStack):
    def __init__(
        self,
        scope: Construct,
        config: StageConfig,
        *,
        network: str,
        model_package_arn: str,
        storage: StorageStack,
        execution_role: ExecutionRoleStack,
    ) -> None:
        super().__init__(
            scope,
            config,
            naming.endpoint_stack_suffix(network),
            description=f"SageMaker endpoint serving the approved {network} model",
        )
        self.endpoint = ModelEndpoint(
            self,
            "ModelEndpoint",
            endpoint_name=naming.endpoint_name(config.prefix(), network),
            model_package_arn=model_package_arn,
            execution_role=execution_role.execution_role.role,
            encryption_key=storage.key.key,
            data_capture_uri=storage.artifacts.s3_uri(f"{ArtifactsBucket.DATA_CAPTURE_PREFIX}{network}/"),
            settings=config.endpoint,
            instance_type=config.endpoint_instance_type(network),
            request_content_types=get_network(network).request_content_types,
            retain_logs=not config.destroy_on_removal,
            vpc=config.vpc,
            async_inference_uri=storage.artifacts.s3_uri(naming.async_inference_prefix(network)),
        )
        # The name as SageMaker reports it, not as configured: moto (the local stage) makes up its own.
        cdk.CfnOutput(self, "EndpointName", value=self.endpoint.endpoint.attr_endpoint_name)
        cdk.CfnOutput(self, "ModelPackageArn", value=model_package_arn)
        if config.captures_data:
            self.monitor_schedule = MonitorSchedule(self, "MonitorSchedule", config=config, network=network)


def add_endpoint_stacks(
    app: cdk.App, config: StageConfig, *, storage: StorageStack, execution_role: ExecutionRoleStack
) -> list[EndpointStack]:
    """An EndpointStack for each network whose approved package ARN is in the context."""
    # `mlops deploy` deploys an endpoint stack on its own (--exclusively), so the values it
    # imports must already be exported by the deployed storage and role stacks. Exporting them
    # in every synth keeps those templates the same with or without an endpoint in the app.
    # (The artifacts bucket needs no export: its name is built from the account and region.)
    storage.export_value(storage.key.key_arn)
    execution_role.export_value(execution_role.execution_role.role_arn)

    requested = {
        key[len(CONTEXT_PREFIX) :]: value
        for key, value in app.node.get_all_context().items()
        if key.startswith(CONTEXT_PREFIX)
    }
    unknown = sorted(set(requested) - set(config.networks))
    if unknown:
        raise ConfigError(
            f"context {', '.join(CONTEXT_PREFIX + name for name in unknown)}: not a network "
            f"of stage {config.name} (its networks: {', '.join(config.networks)})"
        )
    return [
        EndpointStack(
            app,
            config,
            network=network,
            model_package_arn=_checked_arn(config, network, requested[network]),
            storage=storage,
            execution_role=execution_role,
        )
        for network in config.networks
        if network in requested
    ]


def _checked_arn(config: StageConfig, network: str, arn: object) -> str:
    """The ARN of a version of this network's model package group, or a ConfigError naming the key."""
    key = naming.model_package_context_key(network)
    if not isinstance(arn, str) or not (match := _MODEL_PACKAGE_ARN.match(arn)):
        raise ConfigError(
            f"context {key}: expected a model package version ARN "
            f"(arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION), got {arn!r}"
        )
    served = config.served_model_package_group(network)
    group = served.rsplit("/", 1)[-1]
    if match["group"] != group:
        raise ConfigError(f"context {key}: {arn} is a version of {match['group']}, not of this network's group {group}")
    source = config.promotion_source
    if source is not None and (match["account"], match["region"]) != (source.account, source.region):
        raise ConfigError(
            f"context {key}: {arn} is not in {source.stage}'s account {source.account} ({source.region}), "
            f"whose approved versions stage {config.name} serves"
        )
    return arn
