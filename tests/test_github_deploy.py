"""Who may deploy each stage: the workflows (.github/) and the synthesized deploy roles agree, and
IAM's evaluation (`@cloud-copilot/iam-simulate`, tests/iam_simulator.py) of
sts:AssumeRoleWithWebIdentity on each role's trust policy admits exactly the jobs meant to assume it.

A GitHub job's OIDC token carries `aud` (configure-aws-credentials asks for sts.amazonaws.com) and
`sub`: `repo:ORG/REPO:environment:NAME` once the job names an environment, whatever its branch;
otherwise `repo:ORG/REPO:ref:refs/heads/BRANCH`, or `repo:ORG/REPO:pull_request` in a pull request
(a fork's included: it runs in this repository).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from iam_simulator import IamSimulator, Request, session_arn
from policy_documents import PolicyDocument, policy_documents
from synth_support import CDK_CONTEXT, synthesized
from workflow_support import GITHUB_DIR, Job, assumed_role, deploying_jobs, load

from infra import naming
from infra.config import parse_stage_config

pytestmark = pytest.mark.slow  # synthesizes the deployed stages

REPOSITORY = CDK_CONTEXT["github_repository"]
DEPLOYED_STAGES = tuple(
    name for name in sorted(CDK_CONTEXT["stages"]) if parse_stage_config(CDK_CONTEXT["stages"], name).github
)
ALLOWED, IMPLICITLY_DENIED = "Allowed", "ImplicitlyDenied"
ANOTHER_ACCOUNT = "999999999999"
SOME_VERSION = 3


@dataclass(frozen=True)
class DeployRole:
    stage: str
    account: str
    arn: str
    trust: PolicyDocument
    policies: tuple[PolicyDocument, ...]

    def token(self, subject: str, *, audience: str = naming.GITHUB_OIDC_AUDIENCE, issuer_account: str = "") -> Request:
        """AssumeRoleWithWebIdentity of this role with a GitHub token (through the OIDC provider of
        `issuer_account`, by default the role's own)."""
        return Request(
            principal=naming.github_oidc_provider_arn(issuer_account or self.account),
            action="sts:AssumeRoleWithWebIdentity",
            resource=self.arn,
            resource_account=self.account,
            identity_policies=(),
            resource_policy=self.trust,
            context={f"{naming.GITHUB_OIDC_HOST}:aud": audience, f"{naming.GITHUB_OIDC_HOST}:sub": subject},
            context_as_given=True,
        )

    def call(self, action: str, resource: str, account: str, resource_policy: PolicyDocument | None = None) -> Request:
        return Request(
            principal=session_arn(self.arn),
            action=action,
            resource=resource,
            resource_account=account,
            identity_policies=self.policies,
            resource_policy=resource_policy,
        )


def documents(stage: str) -> list[PolicyDocument]:
    synth = synthesized(stage)
    assert synth.config.account
    return policy_documents(synth.template_files, account=synth.config.account, region=synth.config.region)


def deploy_role(stage: str) -> DeployRole:
    synth = synthesized(stage)
    assert synth.stacks.github_deploy is not None and synth.config.account
    role = synth.stacks.github_deploy.deploy_role.role
    stack = cdk.Stack.of(role)
    where = f"{stack.artifact_id}/{stack.resolve(stack.get_logical_id(role.node.default_child))}"
    found = documents(stage)
    (trust,) = [document for document in found if document.where == f"{where}/AssumeRolePolicyDocument"]
    (arn,) = trust.attached_to
    policies = tuple(document for document in found if document.kind == "identity" and arn in document.attached_to)
    return DeployRole(stage, synth.config.account, arn, trust, policies)


@pytest.fixture(scope="module")
def simulator() -> Iterator[IamSimulator]:
    with IamSimulator() as running:
        yield running


@pytest.fixture(scope="module")
def roles() -> dict[str, DeployRole]:
    return {stage: deploy_role(stage) for stage in DEPLOYED_STAGES}


def wrong_decisions(simulator: IamSimulator, cases: Sequence[tuple[str, Request, str]]) -> list[str]:
    """Each case (what, request, expected result) that IAM decides otherwise."""
    decisions = simulator.decide([request for _, request, _ in cases])
    return [
        f"{what}: expected {expected}, got {decision.result}"
        for (what, _, expected), decision in zip(cases, decisions, strict=True)
        if decision.result != expected
    ]


def job_trust_problems(simulator: IamSimulator, jobs: Sequence[Job], roles: dict[str, DeployRole]) -> list[str]:
    """Each deploying job's token is admitted by the role the job assumes, and by no other role."""
    problems, cases = [], []
    for job in jobs:
        subject = job.oidc_subject(REPOSITORY)
        if subject is None:
            problems.append(f"{job.where}: names neither an environment nor the one branch it runs on")
            continue
        assumed = assumed_role(job)
        if assumed not in {role.arn for role in roles.values()}:
            problems.append(f"{job.where}: assumes {assumed}, which is no stage's deploy role")
        for role in roles.values():
            expected = ALLOWED if role.arn == assumed else IMPLICITLY_DENIED
            cases.append((f"{job.where} ({subject}) assuming {role.arn}", role.token(subject), expected))
    return problems + wrong_decisions(simulator, cases)


def test_each_deploying_job_is_trusted_by_exactly_the_role_it_assumes(
    simulator: IamSimulator, roles: dict[str, DeployRole]
) -> None:
    jobs = deploying_jobs()
    assert {job.stage for job in jobs} == set(DEPLOYED_STAGES), "a deployed stage with no job, or the reverse"
    assert job_trust_problems(simulator, jobs, roles) == []


def test_a_job_moved_to_another_environment_is_reported(
    simulator: IamSimulator, roles: dict[str, DeployRole], tmp_path: Path
) -> None:
    copy = tmp_path / ".github"
    shutil.copytree(GITHUB_DIR, copy)
    path = copy / "workflows" / "release.yml"
    workflow = load(path)
    workflow["jobs"]["release-prod"]["environment"] = "production"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    problems = job_trust_problems(simulator, deploying_jobs(copy), roles)
    assert problems == [
        "release.yml: job release-prod (repo:example-org/mlops-deep-learning:environment:production) "
        f"assuming {roles['prod'].arn}: expected Allowed, got ImplicitlyDenied"
    ]


def subject_cases(role: DeployRole, own: str) -> list[tuple[str, Request, str]]:
    """The token `own` admitted; the tokens of every other job that could ask, refused."""
    others = [
        f"repo:{REPOSITORY}:ref:refs/heads/main",
        f"repo:{REPOSITORY}:ref:refs/heads/feature/faster-training",
        f"repo:{REPOSITORY}:pull_request",
        f"repo:{REPOSITORY}:environment:prod",
        f"repo:{REPOSITORY}:ref:refs/tags/v1.0.0",
        f"repo:someone-else/{REPOSITORY.split('/')[1]}:environment:prod",
        f"repo:someone-else/{REPOSITORY.split('/')[1]}:ref:refs/heads/main",
    ]
    cases = [(own, role.token(own), ALLOWED)]
    cases += [(subject, role.token(subject), IMPLICITLY_DENIED) for subject in others if subject != own]
    cases.append(
        (f"{own} for another audience", role.token(own, audience="https://github.com/example-org"), IMPLICITLY_DENIED)
    )
    cases.append(
        (
            f"{own} through another account's provider",
            role.token(own, issuer_account=ANOTHER_ACCOUNT),
            IMPLICITLY_DENIED,
        )
    )
    return cases


def test_prod_admits_its_environment_and_refuses_branches_pull_requests_and_other_repositories(
    simulator: IamSimulator, roles: dict[str, DeployRole]
) -> None:
    assert wrong_decisions(simulator, subject_cases(roles["prod"], f"repo:{REPOSITORY}:environment:prod")) == []


def test_dev_admits_main_and_refuses_other_branches_pull_requests_environments_and_repositories(
    simulator: IamSimulator, roles: dict[str, DeployRole]
) -> None:
    assert wrong_decisions(simulator, subject_cases(roles["dev"], f"repo:{REPOSITORY}:ref:refs/heads/main")) == []


def widened(role: DeployRole, subject: str) -> DeployRole:
    """The role with its trust's `sub` condition replaced by a StringLike on `subject`."""
    policy: dict[str, Any] = json.loads(json.dumps(role.trust.policy))
    (statement,) = policy["Statement"]
    conditions = statement["Condition"]
    del conditions["StringEquals"][f"{naming.GITHUB_OIDC_HOST}:sub"]
    conditions["StringLike"] = {f"{naming.GITHUB_OIDC_HOST}:sub": subject}
    return replace(role, trust=replace(role.trust, policy=policy))


@pytest.mark.parametrize(
    ("subject", "now_admitted"),
    [
        (
            f"repo:{REPOSITORY}:*",
            [
                f"repo:{REPOSITORY}:ref:refs/heads/main",
                f"repo:{REPOSITORY}:ref:refs/heads/feature/faster-training",
                f"repo:{REPOSITORY}:pull_request",
                f"repo:{REPOSITORY}:ref:refs/tags/v1.0.0",
            ],
        ),
        (
            "*",
            [
                f"repo:{REPOSITORY}:ref:refs/heads/main",
                f"repo:{REPOSITORY}:ref:refs/heads/feature/faster-training",
                f"repo:{REPOSITORY}:pull_request",
                f"repo:{REPOSITORY}:ref:refs/tags/v1.0.0",
                f"repo:someone-else/{REPOSITORY.split('/')[1]}:environment:prod",
                f"repo:someone-else/{REPOSITORY.split('/')[1]}:ref:refs/heads/main",
            ],
        ),
    ],
)
def test_a_trust_widened_with_a_wildcard_sub_is_caught(
    simulator: IamSimulator, roles: dict[str, DeployRole], subject: str, now_admitted: list[str]
) -> None:
    role = widened(roles["prod"], subject)
    own = f"repo:{REPOSITORY}:environment:prod"
    assert wrong_decisions(simulator, subject_cases(role, own)) == [
        f"{other}: expected {IMPLICITLY_DENIED}, got {ALLOWED}" for other in now_admitted
    ]


def bootstrap_role(account: str, name: str, region: str = "us-east-1") -> str:
    qualifier = cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER
    return f"arn:aws:iam::{account}:role/cdk-{qualifier}-{name}-{account}-{region}"


def bootstrap_trust(account: str) -> PolicyDocument:
    """The trust `cdk bootstrap` gives its roles: the account itself, which delegates to its IAM."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": account}, "Action": "sts:AssumeRole"}],
    }
    return PolicyDocument("cdk bootstrap", "trust", policy, ())


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_the_deploy_role_may_assume_only_its_accounts_cdk_deploy_and_publishing_roles(
    simulator: IamSimulator, roles: dict[str, DeployRole], stage: str
) -> None:
    role = roles[stage]
    cases = [
        (name, role.call("sts:AssumeRole", bootstrap_role(account, name), account, bootstrap_trust(account)), expected)
        for name, account, expected in [
            ("deploy-role", role.account, ALLOWED),
            ("file-publishing-role", role.account, ALLOWED),
            ("cfn-exec-role", role.account, IMPLICITLY_DENIED),
            ("lookup-role", role.account, IMPLICITLY_DENIED),
            ("image-publishing-role", role.account, IMPLICITLY_DENIED),
            ("deploy-role", ANOTHER_ACCOUNT, IMPLICITLY_DENIED),
        ]
    ]
    cases.append(
        (
            "another role of the account",
            role.call(
                "sts:AssumeRole", f"arn:aws:iam::{role.account}:role/Admin", role.account, bootstrap_trust(role.account)
            ),
            IMPLICITLY_DENIED,
        )
    )
    assert wrong_decisions(simulator, cases) == []


def group_policy(stage: str, group: str) -> PolicyDocument:
    (document,) = [
        document
        for document in documents(stage)
        if document.where.endswith("/ModelPackageGroupPolicy") and document.attached_to[0].endswith(f"/{group}")
    ]
    return document


def test_prods_deploy_role_reads_dev_s_registry_and_nothing_else_of_it(
    simulator: IamSimulator, roles: dict[str, DeployRole]
) -> None:
    """What `mlops deploy --stage prod` reads: dev's versions, across accounts (prod's identity
    policy and dev's group policy both allow it). Approving one stays dev's."""
    prod, dev = roles["prod"], roles["dev"]
    group = naming.model_package_group_name("mlops-dev", "cnn")
    version = f"arn:aws:sagemaker:us-east-1:{dev.account}:model-package/{group}/{SOME_VERSION}"
    shared = group_policy("dev", group)
    own_version = f"arn:aws:sagemaker:us-east-1:{prod.account}:model-package/mlops-prod-cnn/{SOME_VERSION}"
    cases = [
        ("describe a dev version", prod.call("sagemaker:DescribeModelPackage", version, dev.account, shared), ALLOWED),
        ("list dev versions", prod.call("sagemaker:ListModelPackages", version, dev.account, shared), ALLOWED),
        (
            "approve a dev version",
            prod.call("sagemaker:UpdateModelPackage", version, dev.account, shared),
            IMPLICITLY_DENIED,
        ),
        (
            "describe a prod version",
            prod.call("sagemaker:DescribeModelPackage", own_version, prod.account),
            IMPLICITLY_DENIED,
        ),
        ("dev's deploy role reads its own", dev.call("sagemaker:DescribeModelPackage", version, dev.account), ALLOWED),
    ]
    assert wrong_decisions(simulator, cases) == []
