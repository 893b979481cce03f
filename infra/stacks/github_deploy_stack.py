"""`<prefix>-github-deploy`: how GitHub Actions deploys the stage, with no stored access keys.

The account's GitHub OIDC provider (created here, or the one the account already has:
`github.oidc_provider` in cdk.json; IAM allows one per issuer and account) and the stage's deploy
role (infra/constructs/github_deploy_role.py). Only stages with `github` in cdk.json have it.

An administrator deploys it once per account (docs/cicd.md, "One-time set-up"); the workflows
never deploy it, so no workflow can widen the trust of the role it runs as.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.github_deploy_role import GithubDeployRole
from infra.stacks.base import ProjectStack


class GithubDeployStack(ProjectStack):
    def __init__(self, scope: Construct, config: StageConfig) -> None:
        super().__init__(
            scope,
            config,
            naming.GITHUB_DEPLOY_STACK_SUFFIX,
            description="GitHub Actions OIDC provider and the stage's deploy role",
        )
        assert config.github is not None
        if config.github.oidc_provider == "create":
            provider_arn = iam.OidcProviderNative(
                self,
                "GithubOidcProvider",
                url=f"https://{naming.GITHUB_OIDC_HOST}",
                client_ids=[naming.GITHUB_OIDC_AUDIENCE],
            ).oidc_provider_arn
        else:
            provider_arn = self.format_arn(
                service="iam", region="", resource="oidc-provider", resource_name=naming.GITHUB_OIDC_HOST
            )
        self.deploy_role = GithubDeployRole(self, "DeployRole", config=config, oidc_provider_arn=provider_arn)
        cdk.CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn)
        cdk.CfnOutput(self, "DeploySubject", value=self.deploy_role.subject)
