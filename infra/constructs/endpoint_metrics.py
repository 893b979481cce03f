"""CloudWatch metrics of one SageMaker endpoint variant, shared by rollback alarms and the dashboard.

SageMaker publishes two families under different namespaces, both keyed by endpoint and variant:
invocation metrics (`AWS/SageMaker`) and instance metrics of the hosting fleet
(`/aws/sagemaker/Endpoints`, which serverless endpoints do not publish).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from infra.naming import VARIANT_NAME

INVOCATION_NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"


def invocation_metric(
    endpoint_name: str,
    metric_name: str,
    *,
    statistic: str,
    period: Duration = Duration.minutes(1),
    label: str | None = None,
) -> cloudwatch.Metric:
    """E.g. `Invocations`, `Invocation4XXErrors`, `Invocation5XXErrors`, `ModelLatency` (microseconds)."""
    return cloudwatch.Metric(
        namespace=INVOCATION_NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"EndpointName": endpoint_name, "VariantName": VARIANT_NAME},
        statistic=statistic,
        period=period,
        label=label,
    )


def instance_metric(endpoint_name: str, metric_name: str, *, label: str | None = None) -> cloudwatch.Metric:
    """`CPUUtilization` or `MemoryUtilization` (percent; CPU is summed over cores) of the fleet."""
    return cloudwatch.Metric(
        namespace=INSTANCE_NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"EndpointName": endpoint_name, "VariantName": VARIANT_NAME},
        statistic="Average",
        period=Duration.minutes(5),
        label=label,
    )
