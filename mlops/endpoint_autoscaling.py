"""A new instance type for an endpoint whose variant is registered for autoscaling.

SageMaker refuses it: "If the update would change the instance type for any model that is a target
for auto scaling, the update fails" (UpdateEndpoint; developer guide, "Update endpoints that use
auto scaling"), and a CloudFormation update of the endpoint stack is such an UpdateEndpoint, made
before CloudFormation touches the stack's scalable target. AWS's procedure is to delete the scaling
policies and deregister the variant first, update, then register it and attach the policies again:

    with autoscaling_set_aside(aws, endpoint_name, new_instance_type, say=print):
        cdk.deploy([endpoint_stack])       # UpdateEndpoint, with nothing registered on the variant

A new model on the same instance type is allowed as it is, so nothing is set aside then, nor for a
new endpoint or one without a scalable target. What was registered is registered again afterwards,
whatever the deploy's outcome; a target or policy CloudFormation registered meanwhile (the update
changed them too) is left as CloudFormation made it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from infra.naming import VARIANT_NAME
from mlops.aws import AwsTarget

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_TARGET_FIELDS = ("MinCapacity", "MaxCapacity", "RoleARN", "SuspendedState")
_POLICY_FIELDS = (
    "PolicyName",
    "PolicyType",
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
)


def deployed_instance_type(sagemaker: Any, endpoint_name: str) -> str | None:
    """The instance type the endpoint's variant runs now; None for no endpoint or a serverless one."""
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ValidationException":  # SageMaker's "not found"
            return None
        raise
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variants = {variant["VariantName"]: variant for variant in config["ProductionVariants"]}
    return variants.get(VARIANT_NAME, {}).get("InstanceType")


@contextmanager
def autoscaling_set_aside(
    aws: AwsTarget, endpoint_name: str, instance_type: str | None, say: Callable[[str], None]
) -> Iterator[None]:
    """Deregisters the variant's scalable target (its policies first) while the block runs if the
    block changes the endpoint's instance type to `instance_type`; registers them again after."""
    deployed = None if instance_type is None else deployed_instance_type(aws.client("sagemaker"), endpoint_name)
    if deployed in (None, instance_type):
        yield
        return
    scaling = aws.client("application-autoscaling")
    resource = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION}
    resource_id = f"endpoint/{endpoint_name}/variant/{VARIANT_NAME}"
    targets = scaling.describe_scalable_targets(**resource, ResourceIds=[resource_id])["ScalableTargets"]
    if not targets:
        yield
        return
    (target,) = targets
    policies = scaling.describe_scaling_policies(**resource, ResourceId=resource_id)["ScalingPolicies"]
    say(
        f"{endpoint_name} runs {deployed} and is registered for autoscaling; SageMaker refuses to change its "
        f"instance type to {instance_type} while it is, so its scaling policies and target are set aside for "
        "the update and registered again after it"
    )
    for policy in policies:
        scaling.delete_scaling_policy(**resource, ResourceId=resource_id, PolicyName=policy["PolicyName"])
    scaling.deregister_scalable_target(**resource, ResourceId=resource_id)
    try:
        yield
    finally:
        if not scaling.describe_scalable_targets(**resource, ResourceIds=[resource_id])["ScalableTargets"]:
            scaling.register_scalable_target(
                **resource,
                ResourceId=resource_id,
                **{field: target[field] for field in _TARGET_FIELDS if field in target},
            )
        present = {
            policy["PolicyName"]
            for policy in scaling.describe_scaling_policies(**resource, ResourceId=resource_id)["ScalingPolicies"]
        }
        for policy in policies:
            if policy["PolicyName"] not in present:
                scaling.put_scaling_policy(
                    **resource,
                    ResourceId=resource_id,
                    **{field: policy[field] for field in _POLICY_FIELDS if field in policy},
                )
        say(f"{endpoint_name}: autoscaling registered again ({len(policies)} scaling policies)")
