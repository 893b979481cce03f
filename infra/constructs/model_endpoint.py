"""A SageMaker endpoint serving one approved model package from the model registry.

Instance-backed stages get the full set of guardrails: data capture, a blue/green update with
canary traffic shifting that rolls back on CloudWatch alarms, and target-tracking autoscaling.
A stage with `endpoint.serverless` gets a serverless variant and none of those (see below).
A stage with `endpoint.async_inference` gets an asynchronous endpoint that scales to zero
(infra/constructs/async_endpoint.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import EndpointConfig, VpcConfig
from infra.constructs.async_endpoint import AsyncInference, scale_on_backlog
from infra.constructs.endpoint_logs import EndpointLogs
from infra.constructs.endpoint_metrics import VARIANT_NAME, invocation_metric

# Blue/green timings. The bake time is how long the alarms watch the new fleet before more
# traffic moves; the termination wait keeps the old fleet a few minutes after the last shift
# instead of deleting it at once; the timeout bounds the whole update, and SageMaker requires
# it to exceed the waits.
BAKE_TIME = Duration.minutes(10)
OLD_FLEET_TERMINATION_WAIT = Duration.minutes(5)
UPDATE_TIMEOUT = Duration.hours(1)

# Rollback alarm shape: a minute's resolution, and a few bad minutes in a row rather than one
# stray datapoint, so a single slow request during the bake does not undo a good model.
ERROR_MINUTES = 2
LATENCY_MINUTES = 3

# Application Auto Scaling creates this role itself the first time a SageMaker variant is
# registered; naming it keeps CDK from adding a role of its own that nothing would use.
AUTOSCALING_SERVICE_LINKED_ROLE = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)

SCALE_OUT_COOLDOWN = Duration.minutes(1)
SCALE_IN_COOLDOWN = Duration.minutes(5)


class ModelEndpoint(Construct):
    """Model -> endpoint config -> endpoint, plus rollback alarms and autoscaling when instance-backed."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        model_package_arn: str,
        execution_role: iam.IRole,
        encryption_key: kms.IKey,
        data_capture_uri: str,
        settings: EndpointConfig,
        instance_type: str,
        request_content_types: Sequence[str],
        retain_logs: bool,
        vpc: VpcConfig | None = None,
        async_inference_uri: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.endpoint_name = endpoint_name
        serverless = settings.serverless is not None
        self.async_inference: AsyncInference | None = None
        if settings.async_inference is not None:
            if async_inference_uri is None:
                raise ValueError("an asynchronous endpoint needs the S3 prefix of its answers")
            self.async_inference = AsyncInference(
                self,
                "AsyncInference",
                endpoint_name=endpoint_name,
                settings=settings.async_inference,
                key=encryption_key,
                prefix_uri=async_inference_uri,
            )
        self.logs = EndpointLogs(
            self, "Logs", endpoint_name=endpoint_name, encryption_key=encryption_key, retain=retain_logs
        )

        # Unnamed on purpose: a new model version replaces the model and the endpoint config,
        # and CloudFormation can only create the replacement before deleting the old one when
        # it picks the names. A single container, so PrimaryContainer is the same as a
        # one-element Containers list; it is also the form moto implements for local runs.
        # Network isolation: the container reaches no network, not even S3 (SageMaker hands it
        # the model artifact); it installs nothing at start, the artifact's code/lib holds the
        # handlers' packages (inference/model_lib.py).
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=execution_role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(model_package_name=model_package_arn),
            enable_network_isolation=True,
            # The model's containers get network interfaces in the stage's subnets, which the
            # execution role may create there (infra/constructs/vpc_access.py).
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                subnets=list(vpc.subnet_ids), security_group_ids=list(vpc.security_group_ids)
            )
            if vpc
            else None,
        )

        capacity: dict[str, Any]
        if settings.serverless is not None:
            capacity = {
                "serverless_config": sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    memory_size_in_mb=settings.serverless.memory_size_mb,
                    max_concurrency=settings.serverless.max_concurrency,
                )
            }
        else:
            capacity = {"instance_type": instance_type, "initial_instance_count": settings.initial_instance_count}
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME, model_name=self.model.attr_model_name, initial_variant_weight=1, **capacity
        )
        # Serverless endpoints do not support data capture (SageMaker's documented feature
        # exclusions), so a serverless stage records no requests.
        capture = (
            None
            if serverless
            else _data_capture(settings.data_capture_percent, data_capture_uri, encryption_key, request_content_types)
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[variant],
            kms_key_id=encryption_key.key_arn,
            data_capture_config=capture,
            async_inference_config=self.async_inference.config if self.async_inference else None,
        )

        # Serverless: no alarms-driven canary (canary and step sizes count instances, and a
        # serverless variant has no fleet to split), so updates use SageMaker's default
        # blue/green, all traffic at once; no instance autoscaling either, because capacity
        # follows concurrency up to `max_concurrency` without a scaling policy.
        self.rollback_alarms: list[cloudwatch.Alarm] = [] if serverless else self._rollback_alarms(settings)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            **({} if serverless else self._update_policy(settings)),
        )
        # The group must exist before SageMaker creates it itself, which it does on first use.
        self.endpoint.node.add_dependency(self.logs)

        self.scalable_target = None if serverless else self._autoscaling(settings)

    def _rollback_alarms(self, settings: EndpointConfig) -> list[cloudwatch.Alarm]:
        # Not Invocation5XXErrors: the container answers a client's bad request with 500 too, so
        # a client sending malformed requests during the bake would roll back a good model. The
        # handler's own count of its failures (endpoint_logs.py) holds the model's alone.
        errors = self.logs.outcome_metric("ModelFailures").create_alarm(
            self,
            "ModelFailuresAlarm",
            alarm_name=f"{self.endpoint_name}-model-failures",
            alarm_description=f"{self.endpoint_name}'s model failed on requests (not bad input) for "
            f"{ERROR_MINUTES} minutes in a row; rolls back a blue/green update",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=ERROR_MINUTES,
            datapoints_to_alarm=ERROR_MINUTES,
            # No traffic is not an outage; without this an idle endpoint would block every update.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = invocation_metric(self.endpoint_name, "ModelLatency", statistic="p90").create_alarm(
            self,
            "ModelLatencyAlarm",
            alarm_name=f"{self.endpoint_name}-model-latency",
            alarm_description=f"{self.endpoint_name} p90 model latency above {settings.latency_alarm_ms} ms "
            f"for {LATENCY_MINUTES} minutes; rolls back a blue/green update",
            # SageMaker reports ModelLatency in microseconds.
            threshold=settings.latency_alarm_ms * 1000,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=LATENCY_MINUTES,
            datapoints_to_alarm=LATENCY_MINUTES,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return [errors, latency]

    def _update_policy(self, settings: EndpointConfig) -> dict[str, Any]:
        return {
            "deployment_config": self._blue_green(settings),
            # A model release must not undo autoscaling: the new fleet starts at the instance
            # count the variant has scaled to, not at initial_instance_count. Weight and data
            # capture settings still come from the new endpoint config.
            "retain_all_variant_properties": True,
            "exclude_retained_variant_properties": [
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type=excluded)
                for excluded in ("DesiredWeight", "DataCaptureConfig")
            ],
        }

    def _blue_green(self, settings: EndpointConfig) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
        # SageMaker caps a canary at half the fleet, so a one-instance fleet cannot have one:
        # it shifts all traffic at once and still bakes under the same alarms before the old
        # fleet goes. min_instances (not the initial count) because autoscaling may shrink the
        # fleet to it before the next update.
        # An asynchronous fleet may be at zero instances when an update starts: all at once.
        if settings.min_instances >= 2 and settings.async_inference is None:
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(type="INSTANCE_COUNT", value=1),
                wait_interval_in_seconds=int(BAKE_TIME.to_seconds()),
            )
        else:
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=int(BAKE_TIME.to_seconds())
            )
        return sagemaker.CfnEndpoint.DeploymentConfigProperty(
            blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                traffic_routing_configuration=routing,
                termination_wait_in_seconds=int(OLD_FLEET_TERMINATION_WAIT.to_seconds()),
                maximum_execution_timeout_in_seconds=int(UPDATE_TIMEOUT.to_seconds()),
            ),
            auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                alarms=[
                    sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm.alarm_name) for alarm in self.rollback_alarms
                ]
            ),
        )

    def _autoscaling(self, settings: EndpointConfig) -> autoscaling.ScalableTarget:
        target = autoscaling.ScalableTarget(
            self,
            "ScalableTarget",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            # Names the endpoint and the variant literally: see VARIANT_NAME for why it never changes.
            resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            # An asynchronous endpoint queues requests while it has no instance: it scales to zero.
            min_capacity=0 if settings.async_inference else settings.min_instances,
            max_capacity=settings.max_instances,
            role=iam.Role.from_role_arn(
                self,
                "AutoScalingRole",
                Stack.of(self).format_arn(
                    service="iam", region="", resource="role", resource_name=AUTOSCALING_SERVICE_LINKED_ROLE
                ),
            ),
        )
        # The variant must exist before Application Auto Scaling can register it.
        target.node.add_dependency(self.endpoint)
        if settings.async_inference is not None:
            scale_on_backlog(target, self.endpoint_name, settings.async_inference)
            return target
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            target_value=settings.target_invocations_per_instance,
            # Out fast to protect latency, in slowly so a short lull does not drop capacity.
            scale_out_cooldown=SCALE_OUT_COOLDOWN,
            scale_in_cooldown=SCALE_IN_COOLDOWN,
        )
        return target


def _data_capture(
    percent: int, destination_uri: str, key: kms.IKey, request_content_types: Sequence[str]
) -> sagemaker.CfnEndpointConfig.DataCaptureConfigProperty | None:
    if percent == 0:
        return None
    # Listed types are stored as readable text; anything else (PNG/JPEG requests) base64-encoded.
    # The handlers always answer JSON, so it is listed even when no request uses it.
    json_types = sorted({"application/json", *(t for t in request_content_types if t.endswith("json"))})
    csv_types = sorted(t for t in request_content_types if t == "text/csv")
    return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
        enable_capture=True,
        initial_sampling_percentage=percent,
        destination_s3_uri=destination_uri,
        kms_key_id=key.key_arn,
        capture_options=[
            sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
            sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
        ],
        capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
            json_content_types=json_types, csv_content_types=csv_types or None
        ),
    )
