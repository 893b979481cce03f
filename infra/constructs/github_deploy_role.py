"""The role a stage's GitHub Actions jobs assume, through the account's GitHub OIDC provider.

Trusted for one OIDC subject only (`StageConfig.deploy_subject()`: this repository's branch, or
its GitHub environment), with GitHub's token issued for STS (`aud`). It may do two things:
assume the CDK bootstrap roles of its own account (the CLI deploys through them, so what
CloudFormation may change is decided by the bootstrap, not here), and read the model registry
group whose approved versions `mlops deploy` picks from (the stage's own, or its promotion
source's in that account).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.nag import acknowledge_wildcard_resources

# The CDK bootstrap roles the CLI assumes to deploy: templates and change sets, and file assets
# (the training code bundle). The project has no container assets and does no context lookups.
CDK_BOOTSTRAP_ROLES = ("deploy-role", "file-publishing-role")
REGISTRY_READ_ACTIONS = ("sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages")


def cdk_bootstrap_role_arn(stack: cdk.Stack, config: StageConfig, role: str) -> str:
    """A role of `cdk bootstrap` with the default qualifier, as DefaultStackSynthesizer names it."""
    qualifier = cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER
    return stack.format_arn(
        service="iam",
        region="",
        resource="role",
        resource_name=f"cdk-{qualifier}-{role}-{stack.account}-{config.region}",
    )


class GithubDeployRole(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, oidc_provider_arn: str) -> None:
        super().__init__(scope, construct_id)
        subject = config.deploy_subject()
        if subject is None:
            raise ValueError(f"stage {config.name} is not deployed from GitHub (no `github` in cdk.json)")
        stack = cdk.Stack.of(self)
        self.subject = subject
        self.role = iam.Role(
            self,
            "Role",
            role_name=naming.github_deploy_role_name(config.prefix()),
            description=f"Assumed by GitHub Actions ({subject}) to deploy {config.prefix()}",
            assumed_by=iam.WebIdentityPrincipal(
                oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{naming.GITHUB_OIDC_HOST}:aud": naming.GITHUB_OIDC_AUDIENCE,
                        f"{naming.GITHUB_OIDC_HOST}:sub": subject,
                    }
                },
            ),
            max_session_duration=cdk.Duration.hours(1),
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AssumeCdkBootstrapRoles",
                actions=["sts:AssumeRole"],
                resources=[cdk_bootstrap_role_arn(stack, config, role) for role in CDK_BOOTSTRAP_ROLES],
            )
        )
        self._allow_read_served_registry(stack, config)

    def _allow_read_served_registry(self, stack: cdk.Stack, config: StageConfig) -> None:
        """What `mlops deploy` reads to pick a version: the served groups' approved versions and
        their baselines (ListModelPackages, DescribeModelPackage), in whichever account holds them."""
        source = config.promotion_source
        account, region = (source.account, source.region) if source else (stack.account, config.region)
        prefix = source.prefix if source else config.prefix()
        versions = [
            stack.format_arn(
                service="sagemaker",
                account=account,
                region=region,
                resource="model-package",
                resource_name=f"{naming.model_package_group_name(prefix, network)}/*",
            )
            for network in config.networks
        ]
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ReadServedModelVersions", actions=list(REGISTRY_READ_ACTIONS), resources=versions)
        )
        acknowledge_wildcard_resources(
            self.role,
            versions,
            "a group's versions are numbered as they are registered; only the groups the stage serves",
        )

    @property
    def role_arn(self) -> str:
        return self.role.role_arn
