"""An endpoint with its variant registered for autoscaling, in a moto server, as an endpoint stack
deploys it (infra/constructs/model_endpoint.py): 2 to 6 instances tracking invocations per instance."""

from __future__ import annotations

from typing import Any

from mlops.endpoint_autoscaling import DIMENSION, NAMESPACE
from mlops.local.moto import LocalAws

POLICY = {
    "PolicyName": "InvocationsPerInstance",
    "PolicyType": "TargetTrackingScaling",
    "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 200.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 300,
    },
}


def serve_with_autoscaling(aws: LocalAws, endpoint: str, instance_type: str) -> None:
    """An endpoint of one AllTraffic variant on `instance_type`, 2 to 6 instances tracking invocations."""
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(
        ModelName=f"{endpoint}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/execution-role",
        PrimaryContainer={"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19-cpu"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{endpoint}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{endpoint}-model",
                "InitialInstanceCount": 2,
                "InstanceType": instance_type,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-config")
    scaling = aws.client("application-autoscaling")
    resource = {
        "ServiceNamespace": NAMESPACE,
        "ScalableDimension": DIMENSION,
        "ResourceId": f"endpoint/{endpoint}/variant/AllTraffic",
    }
    scaling.register_scalable_target(**resource, MinCapacity=2, MaxCapacity=6)
    scaling.put_scaling_policy(**resource, **POLICY)


def registered(aws: LocalAws, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The variant's scalable targets (min, max) and scaling policies (name, type, configuration)."""
    scaling = aws.client("application-autoscaling")
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    targets = scaling.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ScalableDimension=DIMENSION, ResourceIds=[resource_id]
    )["ScalableTargets"]
    policies = scaling.describe_scaling_policies(
        ServiceNamespace=NAMESPACE, ScalableDimension=DIMENSION, ResourceId=resource_id
    )["ScalingPolicies"]
    return (
        [{"MinCapacity": target["MinCapacity"], "MaxCapacity": target["MaxCapacity"]} for target in targets],
        [{field: policy[field] for field in POLICY} for policy in policies],
    )


AS_DEPLOYED = ([{"MinCapacity": 2, "MaxCapacity": 6}], [POLICY])
