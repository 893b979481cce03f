"""What an asynchronous endpoint adds to a model endpoint (`endpoint.async_inference`, docs/batch.md).

- `AsyncInferenceConfig`: answers to `<prefix>output/`, failures to `<prefix>failures/` of the
  artifacts bucket, both encrypted with the project key; a success topic and an error topic of
  their own (SageMaker's notifications of each outcome), encrypted with the project key and
  reachable over TLS only; `MaxConcurrentInvocationsPerInstance` from the stage.
- Scaling to zero, as SageMaker's guide "Autoscale an asynchronous endpoint" describes: the
  variant's minimum capacity is 0; a target-tracking policy on `ApproximateBacklogSizePerInstance`
  (namespace AWS/SageMaker, dimension EndpointName, Average) keeps the queue per instance at the
  stage's target; and because that metric has no instance to divide by at zero, a step-scaling
  policy adds one instance when `HasBacklogWithoutCapacity` (same namespace and dimension) is at
  least 1 for two minutes, the guide's "scale up from zero for new requests".
The execution role may publish to the two topics and read and write the prefix
(infra/constructs/execution_role.py), the names being known in advance (`infra.naming`).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import naming
from infra.inference_config import AsyncInferenceConfig

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
BACKLOG_PER_INSTANCE = "ApproximateBacklogSizePerInstance"
BACKLOG_WITHOUT_CAPACITY = "HasBacklogWithoutCapacity"
# As the guide's example: one-minute datapoints, two in a row before an instance is added.
FROM_ZERO_MINUTES = 2
FROM_ZERO_COOLDOWN = Duration.minutes(5)
SCALE_OUT_COOLDOWN = Duration.minutes(1)
SCALE_IN_COOLDOWN = Duration.minutes(5)


class AsyncInference(Construct):
    """The two topics and the endpoint config's AsyncInferenceConfig of one endpoint."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        settings: AsyncInferenceConfig,
        key: kms.IKey,
        prefix_uri: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topics = {
            outcome: sns.Topic(
                self,
                f"{outcome.capitalize()}Topic",
                topic_name=naming.async_topic_name(endpoint_name, outcome),
                display_name=f"{endpoint_name}: asynchronous inference {outcome}",
                master_key=key,
                enforce_ssl=True,
            )
            for outcome in naming.ASYNC_OUTCOMES
        }
        self.output_uri = f"{prefix_uri}output/"
        self.failure_uri = f"{prefix_uri}failures/"
        self.config = sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=self.output_uri,
                s3_failure_path=self.failure_uri,
                kms_key_id=key.key_arn,
                notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                    success_topic=self.topics["success"].topic_arn, error_topic=self.topics["errors"].topic_arn
                ),
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=settings.max_concurrent_invocations_per_instance
            ),
        )


def scale_on_backlog(
    target: autoscaling.ScalableTarget, endpoint_name: str, settings: AsyncInferenceConfig
) -> autoscaling.StepScalingPolicy:
    """The two policies of an asynchronous endpoint that scales to zero; returns the step policy."""

    def metric(name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=SAGEMAKER_NAMESPACE,
            metric_name=name,
            dimensions_map={"EndpointName": endpoint_name},
            statistic="Average",
            period=Duration.minutes(1),
        )

    target.scale_to_track_metric(
        "BacklogPerInstance",
        custom_metric=metric(BACKLOG_PER_INSTANCE),
        target_value=settings.target_backlog_per_instance,
        scale_out_cooldown=SCALE_OUT_COOLDOWN,
        scale_in_cooldown=SCALE_IN_COOLDOWN,
    )
    # Only the upper interval changes capacity: one alarm, at >= 1, adding one instance.
    return target.scale_on_metric(
        "ScaleOutFromZero",
        metric=metric(BACKLOG_WITHOUT_CAPACITY),
        scaling_steps=[
            autoscaling.ScalingInterval(upper=1, change=0),
            autoscaling.ScalingInterval(lower=1, change=1),
        ],
        adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
        cooldown=FROM_ZERO_COOLDOWN,
        evaluation_periods=FROM_ZERO_MINUTES,
        datapoints_to_alarm=FROM_ZERO_MINUTES,
        metric_aggregation_type=autoscaling.MetricAggregationType.AVERAGE,
    )
