"""What SageMaker does in the stage's VPC as the execution role: the network interfaces that connect
a training or processing job's containers, or an endpoint's model containers, to the stage's
subnets (`vpc` in cdk.json).

The actions are the ones SageMaker's developer guide lists for a role passed to CreateTrainingJob,
CreateProcessingJob or CreateModel with a private VPC ("How to use SageMaker execution roles"), and
for hosted models in a VPC ("Give SageMaker hosted endpoints access to resources in your Amazon
VPC", which adds ec2:DescribeVpcEndpoints). How far each can be scoped follows EC2's entry of the
service authorization reference (docs/iam.md):

- ec2:CreateNetworkInterface is authorized against the new interface, the subnet it goes into and
  its security groups (subnet required, security group optional): the subnets and groups are named,
  the interface's ID is not known before it exists;
- ec2:CreateNetworkInterfacePermission and ec2:DeleteNetworkInterface take an interface (required)
  whose `ec2:Subnet` condition key is the ARN of its subnet: any interface, in the stage's subnets;
- ec2:DeleteNetworkInterfacePermission lists the interface as an optional resource type, so a
  request may be authorized against `*`, where no `ec2:Subnet` exists: `Resource: "*"`;
- the Describe calls have no resource types at all: `Resource: "*"`.
Every `*` statement is held to the stage's region (`ec2:Region`, a key of every EC2 action).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

from infra.config import VpcConfig

CREATE_INTERFACE = "ec2:CreateNetworkInterface"
INTERFACE_ACTIONS_BY_SUBNET = ("ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface")
DELETE_INTERFACE_PERMISSION = "ec2:DeleteNetworkInterfacePermission"
DESCRIBE_ACTIONS = (
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
)
NO_RESOURCE_REASON = (
    "EC2's Describe calls have no resource types, and ec2:DeleteNetworkInterfacePermission only an "
    "optional one (service authorization reference): they are held to the stage's region instead"
)


def allow_network_interfaces(role: iam.Role, vpc: VpcConfig) -> list[str]:
    """Adds the statements to `role`; returns the wildcard resources it used, for the caller's
    cdk-nag acknowledgement (the interfaces' IDs are made when SageMaker creates them)."""
    stack = cdk.Stack.of(role)

    def ec2_arn(resource: str, name: str) -> str:
        return stack.format_arn(service="ec2", resource=resource, resource_name=name)

    subnets = [ec2_arn("subnet", subnet) for subnet in vpc.subnet_ids]
    any_interface = ec2_arn("network-interface", "*")
    in_this_region = {"StringEquals": {"ec2:Region": stack.region}}
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="CreateNetworkInterfacesInStageSubnets",
            actions=[CREATE_INTERFACE],
            resources=[
                any_interface,
                *subnets,
                *(ec2_arn("security-group", group) for group in vpc.security_group_ids),
            ],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="ManageNetworkInterfacesInStageSubnets",
            actions=list(INTERFACE_ACTIONS_BY_SUBNET),
            resources=[any_interface],
            conditions={"ArnEquals": {"ec2:Subnet": subnets}},
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="DeleteNetworkInterfacePermissions",
            actions=[DELETE_INTERFACE_PERMISSION],
            resources=["*"],
            conditions=in_this_region,
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="DescribeNetworkSetup", actions=list(DESCRIBE_ACTIONS), resources=["*"], conditions=in_this_region
        )
    )
    return [any_interface]
