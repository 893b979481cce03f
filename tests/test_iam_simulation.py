"""The deployed policies evaluated together, as IAM evaluates a request: a role's identity
policies with the bucket policy or the key policy of what it calls, conditions included.

moto's evaluator (`mlops local` with IAM enforced, tests/test_local_iam.py) reads identity policies
only and treats every condition but sts:ExternalId as met, so `s3:prefix`, `aws:SecureTransport`,
`kms:ViaService`, `kms:GrantIsForAWSResource`, `iam:PassedToService` and `cloudwatch:namespace`
decide nothing there, and neither do the TLS-only bucket policies or the key policy. Here
`@cloud-copilot/iam-simulate` (tests/iam_simulator.py) decides each request from the synthesized
documents of the `local` stage (the one moto enforces) and `prod` (`dev` where a test concerns the
training pipelines, which prod has not), with real ARNs filled in (tests/policy_documents.py).

Every request is one a job or a pipeline makes, or the nearest one the policies must refuse.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from constructs import IConstruct
from iam_simulator import IamSimulator, Request, expect, session_arn
from policy_documents import PolicyDocument, policy_documents
from synth_support import Synthesized, logical_id_of, synthesized

from infra import naming
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.buckets import ProjectBucket
from infra.constructs.data_bucket import channel_prefix
from infra.constructs.principals import EVENTS_PRINCIPAL, SAGEMAKER_PRINCIPAL
from infra.definitions.training_pipeline import EVALUATION_FILE, EVALUATION_OUTPUT
from training.networks import NETWORKS

# slow: synthesizes the whole app per stage.
pytestmark = pytest.mark.slow

STAGES = ("local", "prod")
# The stages with training pipelines (prod promotes from dev and trains nothing).
TRAINING_STAGES = ("local", "dev")
# What the stages that name no account deploy into is the deploying credentials' account.
SOME_ACCOUNT = "123456789012"
ANOTHER_ACCOUNT = "999999999999"
OVER_TLS = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}
OVER_HTTP = {"aws:SecureTransport": "false"}
OVER_TLS_1_1 = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.1"}
ALLOWED, EXPLICITLY_DENIED, IMPLICITLY_DENIED = "Allowed", "ExplicitlyDenied", "ImplicitlyDenied"
# For requests whose answer is the same for every network: the registry's first.
SOME_NETWORK = sorted(NETWORKS)[0]


@dataclass(frozen=True)
class Role:
    arn: str
    policies: tuple[PolicyDocument, ...]
    trust: PolicyDocument


@dataclass(frozen=True)
class Stage:
    """One stage's policy documents, found by the constructs that wrote them."""

    synth: Synthesized
    account: str
    documents: Sequence[PolicyDocument]

    def _document(self, construct: IConstruct, suffix: str = "") -> PolicyDocument:
        stack = cdk.Stack.of(construct)
        where = f"{stack.artifact_id}/{stack.resolve(logical_id_of(construct))}{suffix}"
        (document,) = [document for document in self.documents if document.where == where]
        return document

    def role(self, role: iam.IRole) -> Role:
        trust = self._document(role, "/AssumeRolePolicyDocument")
        (arn,) = trust.attached_to
        policies = tuple(
            document for document in self.documents if document.kind == "identity" and arn in document.attached_to
        )
        assert policies, f"{arn} has no identity policy"
        return Role(arn, policies, trust)

    @property
    def execution_role(self) -> Role:
        return self.role(self.synth.stacks.execution_role.execution_role.role)

    def pipeline_role(self, network: str) -> Role:
        return self.role(self.synth.stacks.pipelines.pipelines[network].role)

    def trigger_role(self, network: str) -> Role:
        child = self.synth.stacks.pipelines.pipelines[network].node.find_child("RetrainingTriggerRole")
        assert isinstance(child, iam.Role)
        return self.role(child)

    def job_creating_roles(self, network: str) -> Iterator[tuple[str, Role]]:
        """The roles that create SageMaker jobs: the training pipeline's where the stage trains, and
        the drift monitor pipeline's where it has one."""
        if network in self.synth.stacks.pipelines.pipelines:
            yield "pipeline role", self.pipeline_role(network)
        monitor = self.synth.stacks.pipelines.drift_monitors.get(network)
        if monitor is not None:
            yield "monitor pipeline role", self.role(monitor.role)

    def events_roles(self) -> Iterator[tuple[str, Role]]:
        """The roles EventBridge assumes for the stage's rules: each training pipeline's retraining
        trigger, and the one that sends drift alarms to the promotion source."""
        for network in self.synth.stacks.pipelines.pipelines:
            yield f"{network} retraining trigger role", self.trigger_role(network)
        forwarding = self.synth.stacks.pipelines.drift_alarms_to_source
        if forwarding is not None:
            yield "drift alarm forwarding role", self.role(forwarding.role)

    def roles_by_service(self) -> Iterator[tuple[str, Role, str]]:
        """Every role of the stage, its name and the service that assumes it."""
        yield "execution role", self.execution_role, SAGEMAKER_PRINCIPAL
        for network in self.synth.config.networks:
            for name, role in self.job_creating_roles(network):
                yield f"{network} {name}", role, SAGEMAKER_PRINCIPAL
        for name, role in self.events_roles():
            yield name, role, EVENTS_PRINCIPAL

    def assume(self, role: Role, service: str, source_account: str) -> Request:
        """`service` assumes the role for a resource of `source_account`, as AWS services do."""
        return Request(
            principal=service,
            action="sts:AssumeRole",
            resource=role.arn,
            resource_account=self.account,
            identity_policies=(),
            resource_policy=role.trust,
            context={"aws:SourceAccount": source_account},
        )

    def bucket_policy(self, bucket: ProjectBucket) -> PolicyDocument:
        assert bucket.bucket.policy is not None
        return self._document(bucket.bucket.policy)

    @property
    def key_policy(self) -> PolicyDocument:
        return self._document(self.synth.stacks.storage.key.key, "/KeyPolicy")

    @property
    def key_arn(self) -> str:
        (arn,) = self.key_policy.attached_to
        return arn

    def s3(self, role: Role, action: str, bucket: ProjectBucket, key: str | None = None, **context: str) -> Request:
        (bucket_arn,) = self.bucket_policy(bucket).attached_to
        return Request(
            principal=session_arn(role.arn),
            action=action,
            resource=f"{bucket_arn}/{key}" if key is not None else bucket_arn,
            resource_account=self.account,
            identity_policies=role.policies,
            resource_policy=self.bucket_policy(bucket),
            context=context,
        )

    def kms(self, role: Role, action: str, *, via: str | None, **context: str) -> Request:
        """A request on the project key; `via` the service that makes it for the role
        (`s3` for an object it reads or writes), or None for a call of the role's own."""
        via_service = {"kms:ViaService": f"{via}.{self.synth.config.region}.amazonaws.com"} if via else {}
        return Request(
            principal=session_arn(role.arn),
            action=action,
            resource=self.key_arn,
            resource_account=self.account,
            identity_policies=role.policies,
            resource_policy=self.key_policy,
            context={"kms:CallerAccount": self.account, **via_service, **context},
        )

    def call(self, role: Role, action: str, resource: str, **context: str | list[str]) -> Request:
        """A request on a resource without a resource policy of the project's (a role, a pipeline)."""
        return Request(
            principal=session_arn(role.arn),
            action=action,
            resource=resource,
            resource_account=self.account,
            identity_policies=role.policies,
            context=context,
        )

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.synth.config.region}:{self.account}:{resource}"


@pytest.fixture(scope="module")
def simulator() -> Iterator[IamSimulator]:
    with IamSimulator() as running:
        yield running


def _stage(name: str) -> Stage:
    synth = synthesized(name)
    account = synth.config.account or SOME_ACCOUNT
    return Stage(synth, account, policy_documents(synth.template_files, account=account, region=synth.config.region))


@pytest.fixture(scope="module", params=STAGES)
def stage(request: pytest.FixtureRequest) -> Stage:
    return _stage(request.param)


@pytest.fixture(scope="module", params=TRAINING_STAGES)
def training_stage(request: pytest.FixtureRequest) -> Stage:
    return _stage(request.param)


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_the_execution_role_reads_a_networks_training_data_over_tls_only(
    stage: Stage, simulator: IamSimulator, network: str
) -> None:
    role, data = stage.execution_role, stage.synth.stacks.storage.data
    train = channel_prefix(network, "train")
    expect(
        simulator,
        [
            ("GetObject over TLS", stage.s3(role, "s3:GetObject", data, f"{train}part-0.npz", **OVER_TLS), ALLOWED),
            ("its key, through S3", stage.kms(role, "kms:Decrypt", via="s3"), ALLOWED),
            (
                "GetObject without TLS",
                stage.s3(role, "s3:GetObject", data, f"{train}part-0.npz", **OVER_HTTP),
                EXPLICITLY_DENIED,
            ),
            (
                "GetObject over TLS 1.1",
                stage.s3(role, "s3:GetObject", data, f"{train}part-0.npz", **OVER_TLS_1_1),
                EXPLICITLY_DENIED,
            ),
            (
                "ListBucket of the channel",
                stage.s3(role, "s3:ListBucket", data, **OVER_TLS, **{"s3:prefix": train}),
                ALLOWED,
            ),
            (
                "ListBucket of the channel without TLS",
                stage.s3(role, "s3:ListBucket", data, **OVER_HTTP, **{"s3:prefix": train}),
                EXPLICITLY_DENIED,
            ),
        ],
    )


def test_the_execution_role_lists_reads_and_writes_nothing_outside_its_prefixes(
    stage: Stage, simulator: IamSimulator
) -> None:
    role, storage = stage.execution_role, stage.synth.stacks.storage
    data, artifacts = storage.data, storage.artifacts
    models = ArtifactsBucket.MODELS_PREFIX
    expect(
        simulator,
        [
            # s3:prefix is what moto treats as met: any of the role's ListBucket statements lists anything.
            (
                "ListBucket of a data prefix no network owns",
                stage.s3(role, "s3:ListBucket", data, **OVER_TLS, **{"s3:prefix": "shared/"}),
                IMPLICITLY_DENIED,
            ),
            (
                "ListBucket of the whole data bucket",
                stage.s3(role, "s3:ListBucket", data, **OVER_TLS),
                IMPLICITLY_DENIED,
            ),
            (
                "ListBucket of the models",
                stage.s3(role, "s3:ListBucket", artifacts, **OVER_TLS, **{"s3:prefix": models}),
                ALLOWED,
            ),
            (
                "ListBucket of an artifacts prefix it has no statement for",
                stage.s3(role, "s3:ListBucket", artifacts, **OVER_TLS, **{"s3:prefix": "secrets/"}),
                IMPLICITLY_DENIED,
            ),
            (
                "GetObject of a data key no network owns",
                stage.s3(role, "s3:GetObject", data, "shared/notes.txt", **OVER_TLS),
                IMPLICITLY_DENIED,
            ),
            (
                "PutObject into the data bucket",
                stage.s3(role, "s3:PutObject", data, f"{channel_prefix(SOME_NETWORK, 'train')}new.npz", **OVER_TLS),
                IMPLICITLY_DENIED,
            ),
            (
                "DeleteObject of a model",
                stage.s3(
                    role, "s3:DeleteObject", artifacts, f"{models}{SOME_NETWORK}/job/output/model.tar.gz", **OVER_TLS
                ),
                IMPLICITLY_DENIED,
            ),
        ],
    )


def test_the_execution_role_writes_model_artifacts_encrypted_with_the_project_key_over_tls_only(
    stage: Stage, simulator: IamSimulator
) -> None:
    role, artifacts = stage.execution_role, stage.synth.stacks.storage.artifacts
    model = f"{ArtifactsBucket.MODELS_PREFIX}{SOME_NETWORK}/job/output/model.tar.gz"
    expect(
        simulator,
        [
            ("PutObject over TLS", stage.s3(role, "s3:PutObject", artifacts, model, **OVER_TLS), ALLOWED),
            ("a data key for it, through S3", stage.kms(role, "kms:GenerateDataKey", via="s3"), ALLOWED),
            ("PutObject without TLS", stage.s3(role, "s3:PutObject", artifacts, model, **OVER_HTTP), EXPLICITLY_DENIED),
        ],
    )


def test_the_key_policy_leaves_the_key_to_iam_policies(stage: Stage, simulator: IamSimulator) -> None:
    """The key policy names the account, which delegates the key to the account's IAM policies: a
    role of the project without a key statement gets nothing of it."""
    expect(
        simulator,
        [
            (f"{name} decrypts through S3", stage.kms(role, "kms:Decrypt", via="s3"), IMPLICITLY_DENIED)
            for name, role in stage.events_roles()
        ],
    )


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_a_pipeline_role_reads_its_own_networks_evaluation_reports_only(
    training_stage: Stage, simulator: IamSimulator, network: str
) -> None:
    """SageMaker Pipelines reads evaluation.json for the quality gate, as the pipeline role."""
    stage = training_stage
    role, artifacts = stage.pipeline_role(network), stage.synth.stacks.storage.artifacts

    def report(of: str) -> str:
        return f"{ArtifactsBucket.PIPELINES_PREFIX}{of}/execution-1/{EVALUATION_OUTPUT}/{EVALUATION_FILE}"

    expect(
        simulator,
        [
            ("its report over TLS", stage.s3(role, "s3:GetObject", artifacts, report(network), **OVER_TLS), ALLOWED),
            ("its key, through S3", stage.kms(role, "kms:Decrypt", via="s3"), ALLOWED),
            (
                "its report without TLS",
                stage.s3(role, "s3:GetObject", artifacts, report(network), **OVER_HTTP),
                EXPLICITLY_DENIED,
            ),
            *(
                (
                    f"the {other} report",
                    stage.s3(role, "s3:GetObject", artifacts, report(other), **OVER_TLS),
                    IMPLICITLY_DENIED,
                )
                for other in sorted(NETWORKS)
                if other != network
            ),
        ],
    )


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_job_creating_roles_pass_the_execution_role_to_sagemaker_only(
    stage: Stage, simulator: IamSimulator, network: str
) -> None:
    execution_role = stage.execution_role.arn
    expect(
        simulator,
        [
            case
            for name, role in stage.job_creating_roles(network)
            for case in [
                (
                    f"{name} passes the execution role to SageMaker",
                    stage.call(role, "iam:PassRole", execution_role, **{"iam:PassedToService": SAGEMAKER_PRINCIPAL}),
                    ALLOWED,
                ),
                # iam:PassedToService is what moto treats as met.
                (
                    f"{name} passes the execution role to EC2",
                    stage.call(role, "iam:PassRole", execution_role, **{"iam:PassedToService": "ec2.amazonaws.com"}),
                    IMPLICITLY_DENIED,
                ),
                (
                    f"{name} passes itself to SageMaker",
                    stage.call(role, "iam:PassRole", role.arn, **{"iam:PassedToService": SAGEMAKER_PRINCIPAL}),
                    IMPLICITLY_DENIED,
                ),
            ]
        ],
    )


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_job_creating_roles_encrypt_job_volumes_with_the_project_key_through_sagemaker_only(
    stage: Stage, simulator: IamSimulator, network: str
) -> None:
    """SageMaker creates a grant on the key for each job's volume and looks the key up, in the name
    of the role that creates the job (EncryptJobVolumesWithProjectKey)."""
    expect(
        simulator,
        [
            case
            for name, role in stage.job_creating_roles(network)
            for case in [
                (
                    f"{name}: SageMaker's grant for the job's volume",
                    stage.kms(role, "kms:CreateGrant", via="sagemaker", **{"kms:GrantIsForAWSResource": "true"}),
                    ALLOWED,
                ),
                (f"{name}: SageMaker's DescribeKey", stage.kms(role, "kms:DescribeKey", via="sagemaker"), ALLOWED),
                # kms:GrantIsForAWSResource and kms:ViaService are what moto treats as met.
                (
                    f"{name}: a grant of its own",
                    stage.kms(role, "kms:CreateGrant", via=None, **{"kms:GrantIsForAWSResource": "false"}),
                    IMPLICITLY_DENIED,
                ),
                (f"{name}: DescribeKey of its own", stage.kms(role, "kms:DescribeKey", via=None), IMPLICITLY_DENIED),
            ]
        ],
    )


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_a_retraining_rule_starts_its_own_pipeline_only(
    training_stage: Stage, simulator: IamSimulator, network: str
) -> None:
    """moto authorizes SageMaker calls against `Resource: *`; here against the pipelines' ARNs."""
    stage = training_stage
    role, prefix = stage.trigger_role(network), stage.synth.config.prefix()
    expect(
        simulator,
        [
            (
                f"start {other}",
                stage.call(
                    role,
                    "sagemaker:StartPipelineExecution",
                    stage.arn("sagemaker", f"pipeline/{naming.pipeline_name(prefix, other)}"),
                ),
                ALLOWED if other == network else IMPLICITLY_DENIED,
            )
            for other in sorted(NETWORKS)
        ],
    )


def test_the_execution_role_publishes_metrics_to_its_namespaces_only(stage: Stage, simulator: IamSimulator) -> None:
    role = stage.execution_role
    drift = naming.drift_metric_namespace(stage.synth.config.prefix())
    expect(
        simulator,
        [
            (
                f"PutMetricData to {namespace}",
                stage.call(role, "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": namespace}),
                expected,
            )
            for namespace, expected in [
                ("/aws/sagemaker/TrainingJobs", ALLOWED),
                (drift, ALLOWED),
                ("AWS/Billing", IMPLICITLY_DENIED),
                ("mlops-other/drift", IMPLICITLY_DENIED),
            ]
        ],
    )


def test_each_role_is_assumed_by_its_own_service_acting_for_this_account_only(
    stage: Stage, simulator: IamSimulator
) -> None:
    """moto compares trust policies' AWS principals as text and understands no Service principal;
    here each trust policy decides, its aws:SourceAccount condition included (the confused deputy)."""
    cases = []
    for name, role, service in stage.roles_by_service():
        other_service = EVENTS_PRINCIPAL if service == SAGEMAKER_PRINCIPAL else SAGEMAKER_PRINCIPAL
        cases += [
            (f"{service} assumes the {name}", stage.assume(role, service, stage.account), ALLOWED),
            (
                f"{other_service} assumes the {name}",
                stage.assume(role, other_service, stage.account),
                IMPLICITLY_DENIED,
            ),
        ]
        cases.append(
            (
                f"{service} acting for another account assumes the {name}",
                stage.assume(role, service, ANOTHER_ACCOUNT),
                IMPLICITLY_DENIED,
            )
        )
    expect(simulator, cases)
