"""A stage with `vpc`: every job and the endpoint model in its subnets, and the execution role
allowed what SageMaker does there as that role, in those subnets only.

The EC2 actions SageMaker's developer guide lists for a role whose jobs or models run in a private
VPC ("How to use SageMaker execution roles", CreateTrainingJob / CreateProcessingJob / CreateModel;
"Give SageMaker hosted endpoints access to resources in your Amazon VPC") are decided by IAM's rules
(`@cloud-copilot/iam-simulate`, tests/iam_simulator.py) against the synthesized policy, with the
resources and condition keys EC2's entry of the service authorization reference gives each action.
moto runs no job in a VPC, so nothing here is deployed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from iam_simulator import IamSimulator, Request, expect, session_arn
from policy_documents import PolicyDocument, policy_documents
from synth_support import CDK_CONTEXT, app_module, new_app

from infra import naming
from infra.config import load_stage_config

pytestmark = pytest.mark.slow

STAGE, ACCOUNT, REGION, NETWORK = "private", "123456789012", "us-east-1", "cnn"
SUBNETS = ("subnet-0a1b2c3d", "subnet-0e4f5a6b")
SECURITY_GROUPS = ("sg-0c7d8e9f",)
# What the developer guide lists for jobs (training, processing) and models in a private VPC; hosting adds
# ec2:DescribeVpcEndpoints.
DOCUMENTED_FOR_JOBS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)
DOCUMENTED_FOR_HOSTING = (*DOCUMENTED_FOR_JOBS, "ec2:DescribeVpcEndpoints")
ALLOWED, IMPLICITLY_DENIED = "Allowed", "ImplicitlyDenied"


def ec2_arn(resource: str, region: str = REGION) -> str:
    return f"arn:aws:ec2:{region}:{ACCOUNT}:{resource}"


@dataclass(frozen=True)
class PrivateStage:
    templates: dict[str, dict[str, Any]]
    execution_role: str
    policies: tuple[PolicyDocument, ...]

    def request(self, action: str, resource: str, **context: str) -> Request:
        """A request SageMaker makes as the execution role, in the stage's region."""
        return Request(
            principal=session_arn(self.execution_role),
            action=action,
            resource=resource,
            resource_account=ACCOUNT,
            identity_policies=self.policies,
            context={"ec2:Region": REGION, **context},
        )


@pytest.fixture(scope="module")
def private() -> Iterator[PrivateStage]:
    """The `prod` stage with a `vpc`, one network, and that network's endpoint stack."""
    # prod's settings in the account the test names, serving versions of its own group: without the
    # account, the promotion from dev that needs it, and the GitHub deploy role that needs it too.
    prod = {
        key: value
        for key, value in CDK_CONTEXT["stages"]["prod"].items()
        if key not in ("account", "promote_from", "github")
    }
    stage = {
        **prod,
        "networks": [NETWORK],
        "vpc": {"subnet_ids": list(SUBNETS), "security_group_ids": list(SECURITY_GROUPS)},
    }
    group = naming.model_package_group_name(f"mlops-{STAGE}", NETWORK)
    outdir = Path(tempfile.mkdtemp(prefix="synth-private-"))
    try:
        app = new_app(
            STAGE,
            outdir,
            stages={**CDK_CONTEXT["stages"], STAGE: stage},
            **{
                naming.model_package_context_key(NETWORK): (
                    f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/1"
                )
            },
        )
        app_module().compose(app, load_stage_config(app.node))
        app.synth()
        files = sorted(outdir.glob("*.template.json"))
        documents = [
            document
            for document in policy_documents(files, account=ACCOUNT, region=REGION)
            if document.kind == "identity" and "execution-role" in document.where
        ]
        (role_arn,) = {arn for document in documents for arn in document.attached_to}
        yield PrivateStage(
            {path.name.removesuffix(".template.json"): json.loads(path.read_text()) for path in files},
            role_arn,
            tuple(documents),
        )
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


@pytest.fixture(scope="module")
def simulator() -> Iterator[IamSimulator]:
    with IamSimulator() as running:
        yield running


def in_the_stage_vpc(private: PrivateStage, action: str) -> list[Request]:
    """`action` as SageMaker makes it for a job or model of the stage: on each resource EC2
    authorizes it against, with the condition keys those resources carry."""
    interface = ec2_arn("network-interface/eni-0123456789abcdef0")
    in_subnet = {"ec2:Subnet": ec2_arn(f"subnet/{SUBNETS[1]}")}
    if action == "ec2:CreateNetworkInterface":
        return [
            private.request(action, interface),
            private.request(action, ec2_arn(f"subnet/{SUBNETS[1]}")),
            private.request(action, ec2_arn(f"security-group/{SECURITY_GROUPS[0]}")),
        ]
    if action in ("ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface"):
        return [private.request(action, interface, **in_subnet)]
    return [private.request(action, "*")]


def test_every_ec2_action_documented_for_jobs_and_models_in_a_vpc_is_allowed_in_the_stage_vpc(
    private: PrivateStage, simulator: IamSimulator
) -> None:
    expect(
        simulator,
        [
            (f"{action} on {request.resource}", request, ALLOWED)
            for action in DOCUMENTED_FOR_HOSTING
            for request in in_the_stage_vpc(private, action)
        ],
    )


def test_network_interfaces_are_allowed_in_the_stage_subnets_and_groups_only(
    private: PrivateStage, simulator: IamSimulator
) -> None:
    interface = ec2_arn("network-interface/eni-0fedcba987654321f")
    elsewhere = {"ec2:Subnet": ec2_arn("subnet/subnet-0999aaaa")}
    expect(
        simulator,
        [
            (
                "an interface in another subnet",
                private.request("ec2:CreateNetworkInterface", ec2_arn("subnet/subnet-0999aaaa")),
                IMPLICITLY_DENIED,
            ),
            (
                "an interface in another security group",
                private.request("ec2:CreateNetworkInterface", ec2_arn("security-group/sg-0999aaaa")),
                IMPLICITLY_DENIED,
            ),
            (
                "an interface in the stage's subnet of another region",
                private.request("ec2:CreateNetworkInterface", ec2_arn(f"subnet/{SUBNETS[0]}", "eu-west-1")),
                IMPLICITLY_DENIED,
            ),
            (
                "deleting another subnet's interface",
                private.request("ec2:DeleteNetworkInterface", interface, **elsewhere),
                IMPLICITLY_DENIED,
            ),
            (
                "attaching another subnet's interface",
                private.request("ec2:CreateNetworkInterfacePermission", interface, **elsewhere),
                IMPLICITLY_DENIED,
            ),
            (
                "describing subnets in another region",
                private.request("ec2:DescribeSubnets", "*", **{"ec2:Region": "eu-west-1"}),
                IMPLICITLY_DENIED,
            ),
            (
                "an EC2 action SageMaker does not need",
                private.request("ec2:RunInstances", ec2_arn(f"subnet/{SUBNETS[0]}")),
                IMPLICITLY_DENIED,
            ),
        ],
    )


def test_the_endpoint_model_and_every_job_run_in_the_stage_subnets(private: PrivateStage) -> None:
    expected = {"Subnets": list(SUBNETS), "SecurityGroupIds": list(SECURITY_GROUPS)}
    endpoint = private.templates[naming.endpoint_stack_name(f"mlops-{STAGE}", NETWORK)]
    (model,) = [resource for resource in endpoint["Resources"].values() if resource["Type"] == "AWS::SageMaker::Model"]
    assert model["Properties"]["VpcConfig"] == expected

    pipelines = private.templates[naming.stack_name(f"mlops-{STAGE}", "pipelines")]
    bodies = [
        resource["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0]
        for resource in pipelines["Resources"].values()
        if resource["Type"] == "AWS::SageMaker::Pipeline"
    ]
    assert len(bodies) == 2  # the training pipeline and the drift monitor's
    jobs = [
        step["Arguments"]
        for body in bodies
        for step in _steps(json.loads(body)["Steps"])
        if step["Type"] in ("Training", "Processing")
    ]
    assert jobs
    for job in jobs:
        assert (job.get("VpcConfig") or job["NetworkConfig"]["VpcConfig"]) == expected


def _steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        yield from _steps(step.get("Arguments", {}).get("IfSteps", []) + step.get("Arguments", {}).get("ElseSteps", []))
