"""Models promoted across accounts (infra/constructs/promotion.py): prod's endpoints serve the
versions approved in dev's registry, in dev's account. Decided by IAM's evaluation
(tests/iam_simulator.py) of both sides of each cross-account request: prod's identity policies
with dev's bucket, key and model package group policies. And the configuration that promotion
needs, refused with the key named when it is missing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from iam_simulator import IamSimulator, Request, session_arn
from policy_documents import PolicyDocument, policy_documents
from synth_support import CDK_CONTEXT, synthesized

from infra import naming
from infra.config import ConfigError, parse_stage_config
from infra.constructs.promotion import PROMOTED_PREFIXES, consumer_accounts

ALLOWED, IMPLICITLY_DENIED = "Allowed", "ImplicitlyDenied"
OVER_TLS = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}
ANOTHER_ACCOUNT = "999999999999"
MODEL = "models/cnn/pipelines-abc-Train-xyz/output/model.tar.gz"
BASELINE = "pipelines/cnn/abc/evaluation/baseline.json"
Role = tuple[str, tuple[PolicyDocument, ...]]
"""A role's ARN and its identity policies."""


class Accounts:
    """dev's documents and prod's, each synthesized for its own account."""

    def __init__(self) -> None:
        self.dev, self.prod = synthesized("dev"), synthesized("prod")
        assert self.dev.config.account and self.prod.config.account
        self.dev_account, self.prod_account = self.dev.config.account, self.prod.config.account
        self.dev_documents = policy_documents(self.dev.template_files, account=self.dev_account, region="us-east-1")
        self.prod_documents = policy_documents(self.prod.template_files, account=self.prod_account, region="us-east-1")

    @staticmethod
    def _one(documents: list[PolicyDocument], suffix: str) -> PolicyDocument:
        (found,) = [document for document in documents if document.where.endswith(suffix)]
        return found

    def prod_role(self, role: Any) -> Role:
        stack = role.stack
        where = f"{stack.artifact_id}/{stack.resolve(stack.get_logical_id(role.node.default_child))}"
        (trust,) = [d for d in self.prod_documents if d.where == f"{where}/AssumeRolePolicyDocument"]
        (arn,) = trust.attached_to
        return arn, tuple(d for d in self.prod_documents if d.kind == "identity" and arn in d.attached_to)

    @property
    def dev_artifacts_policy(self) -> PolicyDocument:
        return next(d for d in self.dev_documents if "ArtifactsBucketPolicy" in d.where)

    @property
    def dev_data_policy(self) -> PolicyDocument:
        return next(d for d in self.dev_documents if "DataBucketPolicy" in d.where)

    @property
    def dev_key_policy(self) -> PolicyDocument:
        return self._one(self.dev_documents, "/KeyPolicy")

    def on_dev(self, role: Role, action: str, policy: PolicyDocument, suffix: str = "", **context: str) -> Request:
        """`role` (of prod, or elsewhere) calls `action` on the dev resource `policy` guards."""
        (resource,) = policy.attached_to
        return Request(
            principal=session_arn(role[0]),
            action=action,
            resource=resource + suffix,
            resource_account=self.dev_account,
            identity_policies=role[1],
            resource_policy=policy,
            context=context,
        )

    def s3(self, role: Role, policy: PolicyDocument, key: str) -> Request:
        return self.on_dev(role, "s3:GetObject", policy, f"/{key}", **OVER_TLS)

    def list_prefix(self, role: Role, prefix: str) -> Request:
        return self.on_dev(role, "s3:ListBucket", self.dev_artifacts_policy, **OVER_TLS, **{"s3:prefix": prefix})

    def decrypt(self, role: Role, via: str) -> Request:
        return self.on_dev(
            role,
            "kms:Decrypt",
            self.dev_key_policy,
            **{"kms:ViaService": f"{via}.us-east-1.amazonaws.com", "kms:CallerAccount": self.prod_account},
        )


# Named apart from the fixtures they define, so that tests/test_retraining_across_accounts.py can
# import them without a test's parameter redefining the import.
@pytest.fixture(scope="module", name="accounts")
def accounts_fixture() -> Accounts:
    return Accounts()


@pytest.fixture(scope="module", name="simulator")
def simulator_fixture() -> Iterator[IamSimulator]:
    with IamSimulator() as running:
        yield running


def expect(simulator: IamSimulator, cases: list[tuple[str, Request, str]]) -> None:
    decisions = simulator.decide([request for _, request, _ in cases])
    wrong = [
        f"{what}: expected {expected}, got {decision}"
        for (what, _, expected), decision in zip(cases, decisions, strict=True)
        if decision.result != expected
    ]
    assert wrong == []


@pytest.mark.slow
def test_prods_execution_role_reads_dev_s_models_and_baselines_and_nothing_else(
    simulator: IamSimulator, accounts: Accounts
) -> None:
    """SageMaker downloads the model as the model's execution role whenever an instance starts;
    the drift monitor lists and reads the model and its baseline (S3Prefix inputs)."""
    execution = accounts.prod_role(accounts.prod.stacks.execution_role.execution_role.role)
    artifacts = accounts.dev_artifacts_policy
    expect(
        simulator,
        [
            ("the model", accounts.s3(execution, artifacts, MODEL), ALLOWED),
            ("its drift baseline", accounts.s3(execution, artifacts, BASELINE), ALLOWED),
            ("listing models/", accounts.list_prefix(execution, MODEL.rsplit("/", 1)[0] + "/"), ALLOWED),
            ("decrypt through S3", accounts.decrypt(execution, "s3"), ALLOWED),
            ("decrypt through another service", accounts.decrypt(execution, "sqs"), IMPLICITLY_DENIED),
            (
                "dev's captured traffic",
                accounts.s3(execution, artifacts, "data-capture/cnn/x.jsonl"),
                IMPLICITLY_DENIED,
            ),
            ("dev's checkpoints", accounts.s3(execution, artifacts, "checkpoints/cnn/x"), IMPLICITLY_DENIED),
            ("listing data-capture/", accounts.list_prefix(execution, "data-capture/"), IMPLICITLY_DENIED),
            (
                "dev's training data",
                accounts.s3(execution, accounts.dev_data_policy, "cnn/train/spec.json"),
                IMPLICITLY_DENIED,
            ),
        ],
    )


@pytest.mark.slow
def test_only_the_prod_account_is_admitted_and_only_where_its_iam_grants(
    simulator: IamSimulator, accounts: Accounts
) -> None:
    """dev's policies name the prod account; within it, roles without the grant read nothing."""
    artifacts = accounts.dev_artifacts_policy
    deploy_role = accounts.prod_role(accounts.prod.stacks.github_deploy.deploy_role.role)
    monitor_role = accounts.prod_role(accounts.prod.stacks.pipelines.drift_monitors["cnn"].role)
    stranger_policy = PolicyDocument(
        "stranger",
        "identity",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
        (),
    )
    stranger = (f"arn:aws:iam::{ANOTHER_ACCOUNT}:role/stranger", (stranger_policy,))
    expect(
        simulator,
        [
            ("prod's deploy role", accounts.s3(deploy_role, artifacts, MODEL), IMPLICITLY_DENIED),
            ("prod's cnn monitor pipeline role", accounts.s3(monitor_role, artifacts, MODEL), IMPLICITLY_DENIED),
            ("an account dev does not name, s3:* on *", accounts.s3(stranger, artifacts, MODEL), IMPLICITLY_DENIED),
        ],
    )


@pytest.mark.slow
def test_dev_shares_each_group_with_prod_only_and_prod_shares_nothing(accounts: Accounts) -> None:
    shared = [d for d in accounts.dev_documents if d.where.endswith("/ModelPackageGroupPolicy")]
    groups = sorted(d.attached_to[0].rsplit("/", 1)[1] for d in shared)
    assert groups == sorted(naming.model_package_group_name("mlops-dev", n) for n in accounts.dev.config.networks)
    principals = {
        str(statement["Principal"]["AWS"]) for document in shared for statement in document.policy["Statement"]
    }
    assert principals == {f"arn:aws:iam::{accounts.prod_account}:root"}
    assert [d.where for d in accounts.prod_documents if d.where.endswith("/ModelPackageGroupPolicy")] == []


@pytest.mark.slow
def test_prods_endpoint_stack_refuses_its_own_registry_and_dev_s_group_in_another_account(tmp_path: Any) -> None:
    from synth_support import app_module, new_app

    from infra.config import load_stage_config

    dev_account = CDK_CONTEXT["stages"]["dev"]["account"]
    for arn, message in [
        (
            f"arn:aws:sagemaker:us-east-1:{CDK_CONTEXT['stages']['prod']['account']}:model-package/mlops-prod-cnn/1",
            "is a version of mlops-prod-cnn, not of this network's group mlops-dev-cnn",
        ),
        (
            f"arn:aws:sagemaker:us-east-1:{ANOTHER_ACCOUNT}:model-package/mlops-dev-cnn/1",
            f"is not in dev's account {dev_account}",
        ),
    ]:
        app = new_app("prod", tmp_path, **{naming.model_package_context_key("cnn"): arn})
        with pytest.raises(ConfigError, match=message):
            app_module().compose(app, load_stage_config(app.node))


def test_prod_serves_dev_s_group_by_arn_and_dev_its_own_by_name() -> None:
    stages = CDK_CONTEXT["stages"]
    prod, dev = parse_stage_config(stages, "prod"), parse_stage_config(stages, "dev")
    assert prod.served_model_package_group("cnn") == (
        f"arn:aws:sagemaker:us-east-1:{stages['dev']['account']}:model-package-group/mlops-dev-cnn"
    )
    assert dev.served_model_package_group("cnn") == "mlops-dev-cnn"
    assert consumer_accounts(dev) == [stages["prod"]["account"]]
    assert set(PROMOTED_PREFIXES) == {"models/", "pipelines/"}


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["prod"].update(monitor={"retrain_on_drift": False}),
        lambda s: s["prod"].update(endpoint={"serverless": {}}),
        lambda s: s["prod"]["endpoint"].update(data_capture_percent=0),
    ],
    ids=["retrain_on_drift off", "serverless", "no capture"],
)
def test_dev_admits_drift_alarms_only_from_a_consumer_whose_alarms_retrain(change: Any) -> None:
    """prod's drift alarms start dev's pipelines (tests/test_retraining_across_accounts.py) only
    where prod has them and retrains on them: otherwise dev admits nothing from prod."""
    stages = copy.deepcopy(CDK_CONTEXT["stages"])
    (consumer,) = parse_stage_config(stages, "dev").promotion_consumers
    assert (consumer.stage, consumer.retrained_networks) == ("prod", parse_stage_config(stages, "prod").networks)
    change(stages)
    (consumer,) = parse_stage_config(stages, "dev").promotion_consumers
    assert consumer.retrained_networks == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["prod"].update(promote_from="qa"), r"stages\.prod\.promote_from: 'qa' is not another stage"),
        (lambda s: s["prod"].update(promote_from="prod"), r"stages\.prod\.promote_from: 'prod' is not another stage"),
        (lambda s: s["dev"].pop("account"), r"stages\.prod\.promote_from: both prod and dev need their account"),
        (lambda s: s["dev"].update(region="eu-west-1"), r"stages\.prod\.promote_from: dev is in another region"),
        (lambda s: s["dev"].update(removal_policy="destroy"), r"dev has removal_policy 'destroy'.*must retain them"),
        (lambda s: s["dev"].update(networks=["cnn"]), r"stages\.prod\.promote_from: dev does not train autoencoder"),
        (lambda s: s["dev"].update(promote_from="local"), r"dev promotes from another stage itself"),
        *(
            (
                lambda s, key=key, value=value: s["prod"].update({key: value}),
                rf"stages\.prod\.{key}: prod promotes from dev and trains nothing .*; set it on dev",
            )
            for key, value in [
                ("retrain_schedule", "rate(7 days)"),
                ("model_approval_status", "PendingManualApproval"),
                ("hyperparameters", {"cnn": {"epochs": 3}}),
            ]
        ),
    ],
)
def test_a_promotion_that_cannot_work_is_refused_naming_the_key(change: Any, message: str) -> None:
    stages = copy.deepcopy(CDK_CONTEXT["stages"])
    change(stages)
    with pytest.raises(ConfigError, match=message):
        parse_stage_config(stages, "prod")
