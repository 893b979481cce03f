"""Models promoted across accounts: a stage with `promote_from` (prod) serves the versions approved
in its source stage's registry (dev), in the source's account, as they are (docs/cicd.md).

Both sides of each cross-account read, since AWS needs both:
- in the source account, resource policies let each consumer account read (the model package
  group's policy, the artifacts bucket's, the project key's), as SageMaker's guide to deploying
  a model version from another account writes them: the consumer account as principal, so
  that account's own IAM decides which of its roles may;
- in the consumer account, identity policies grant exactly those reads: the execution role
  reads the artifacts (SageMaker downloads the model as that role whenever an instance starts;
  the drift monitor reads the model and its baseline), the deploy role reads the registry.

What is read: `models/` (model.tar.gz) and `pipelines/` (the evaluation reports, among them the
drift baseline a version names) of the source's artifacts bucket; nothing else of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import PromotionSource, StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.buckets import READ_ACTIONS, project_bucket_name
from infra.nag import acknowledge_wildcard_resources

PROMOTED_PREFIXES = (ArtifactsBucket.MODELS_PREFIX, ArtifactsBucket.PIPELINES_PREFIX)
# What a consumer account may do with a version of a shared group: SageMaker's documented
# cross-account deployment set, less UpdateModelPackage (approval stays with the source).
SHARED_GROUP_ACTIONS = ("sagemaker:DescribeModelPackageGroup",)
SHARED_VERSION_ACTIONS = ("sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages", "sagemaker:CreateModel")


def consumer_accounts(config: StageConfig) -> list[str]:
    """The accounts of the stages that serve `config`'s versions, each once."""
    return sorted({consumer.account for consumer in config.promotion_consumers})


def _consumers(accounts: Sequence[str]) -> list[iam.IPrincipal]:
    return [iam.AccountPrincipal(account) for account in accounts]


def shared_group_policy(scope: Construct, group_name: str, consumers: Sequence[str]) -> iam.PolicyDocument | None:
    """The model package group's resource policy: consumer accounts may see the group and read,
    list and deploy its versions. None when no stage promotes from this one."""
    if not consumers:
        return None
    stack = cdk.Stack.of(scope)
    group = stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=group_name)
    versions = stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group_name}/*")
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="ConsumersSeeTheGroup",
                principals=_consumers(consumers),
                actions=list(SHARED_GROUP_ACTIONS),
                resources=[group],
            ),
            iam.PolicyStatement(
                sid="ConsumersDeployItsVersions",
                principals=_consumers(consumers),
                actions=list(SHARED_VERSION_ACTIONS),
                resources=[versions],
            ),
        ]
    )


def share_artifacts(artifacts: ArtifactsBucket, key: iam.IResourceWithPolicy, config: StageConfig) -> None:
    """The source side, on its bucket and key: consumer accounts read the promoted prefixes,
    and decrypt through S3 (the bucket's objects are encrypted with the project key)."""
    consumers = consumer_accounts(config)
    if not consumers:
        return
    artifacts.bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="ConsumersReadPromotedArtifacts",
            principals=_consumers(consumers),
            actions=list(READ_ACTIONS),
            resources=[artifacts.arn_for_objects(f"{prefix}*") for prefix in PROMOTED_PREFIXES],
        )
    )
    artifacts.bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="ConsumersListPromotedArtifacts",
            principals=_consumers(consumers),
            actions=["s3:ListBucket"],
            resources=[artifacts.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in PROMOTED_PREFIXES]}},
        )
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="ConsumersDecryptPromotedArtifactsThroughS3",
            principals=_consumers(consumers),
            actions=["kms:Decrypt"],
            resources=["*"],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{config.region}.amazonaws.com"}},
        )
    )


def allow_read_promoted_artifacts(role: iam.Role, source: PromotionSource) -> None:
    """The consumer side, on its execution role: read the source's promoted prefixes and decrypt
    them through S3 with a key of the source account (whose key policy is the one that decides)."""
    stack = cdk.Stack.of(role)
    bucket = project_bucket_name(source.prefix, ArtifactsBucket.PURPOSE, source.account, source.region)
    bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}"
    objects = [f"{bucket_arn}/{prefix}*" for prefix in PROMOTED_PREFIXES]
    keys = stack.format_arn(
        service="kms", account=source.account, region=source.region, resource="key", resource_name="*"
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(sid="ReadPromotedArtifacts", actions=list(READ_ACTIONS), resources=objects)
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="ListPromotedArtifacts",
            actions=["s3:ListBucket"],
            resources=[bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in PROMOTED_PREFIXES]}},
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="DecryptPromotedArtifactsThroughS3",
            actions=["kms:Decrypt"],
            resources=[keys],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{source.region}.amazonaws.com"}},
        )
    )
    acknowledge_wildcard_resources(
        role,
        [*objects, keys],
        f"models and reports of {source.stage}'s artifacts bucket, under a key of {source.stage}'s account "
        "whose id this account cannot know; that key's own policy admits this account through S3 only",
    )
