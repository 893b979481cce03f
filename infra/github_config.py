"""Who may deploy a stage from GitHub Actions: cdk.json's `stages.<stage>.github`, read by `infra/config.py`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GithubDeployConfig(BaseModel):
    """Which GitHub Actions jobs may deploy the stage (infra/stacks/github_deploy_stack.py,
    docs/cicd.md): its deploy role trusts exactly one OIDC subject of the repository that
    cdk.json's `github_repository` names. A job that names an `environment:` carries the
    subject `repo:ORG/REPO:environment:NAME`, whatever its branch; one that names none carries
    `repo:ORG/REPO:ref:refs/heads/BRANCH`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+$", description="the GitHub environment the deploying jobs name"
    )
    branch: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        description="the branch whose jobs deploy, for jobs that name no environment",
    )
    oidc_provider: Literal["create", "import"] = Field(
        default="create",
        description="create the account's GitHub OIDC provider, or use the one it already has (one per account)",
    )

    @model_validator(mode="after")
    def _one_subject(self) -> GithubDeployConfig:
        if (self.environment is None) == (self.branch is None):
            raise ValueError("name exactly one of environment (a GitHub environment) or branch")
        return self

    def subject(self, repository: str) -> str:
        """The `sub` claim of the GitHub OIDC token of a job that may deploy the stage."""
        if self.environment is not None:
            return f"repo:{repository}:environment:{self.environment}"
        return f"repo:{repository}:ref:refs/heads/{self.branch}"
