"""What every bucket of the project shares, and the access-log bucket.

Names: `<project>-<stage>-<purpose>-<account>-<region>`, e.g.
`mlops-local-data-123456789012-us-east-1`. A known name lets other stacks build the
bucket's ARNs from pseudo parameters instead of importing them, so granting access from
another stack creates no CloudFormation export (exports pin resources and block updates)
and the cdk-nag finding for a prefix wildcard is computable (see `infra.nag`).

Removal: stages with `removal_policy: destroy` get RemovalPolicy.DESTROY but NOT
`auto_delete_objects`. That option is a custom resource backed by a Lambda function, which
the local moto server cannot run (no Docker), so a deploy against moto would never finish.
Whoever destroys a stage empties its buckets first instead: the local harness does it
(`mlops.cdk.CdkCli.destroy`, with `mlops.buckets.empty_bucket`), and docs/infrastructure.md says how for a
real account. Retained stages keep their buckets and key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.key import ProjectKey
from infra.nag import acknowledge_wildcard_resources

READ_ACTIONS = ("s3:GetObject",)
WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")

_MAX_BUCKET_NAME = 63
_ACCOUNT_ID_LENGTH = 12


def bucket_name(config: StageConfig, stack: cdk.Stack, purpose: str) -> str:
    """The bucket's name; the account is a pseudo parameter when the stage names none."""
    name_without_account = f"{config.prefix()}-{purpose}--{config.region}"
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name_without_account):
        raise ValueError(
            f"bucket name {name_without_account!r} (project-stage-purpose-region) may only "
            "hold lowercase letters, digits and hyphens: rename the project or stage"
        )
    if len(name_without_account) + _ACCOUNT_ID_LENGTH > _MAX_BUCKET_NAME:
        raise ValueError(
            f"bucket name for {purpose!r} would exceed {_MAX_BUCKET_NAME} characters: shorten the project or stage name"
        )
    return project_bucket_name(config.prefix(), purpose, stack.account, config.region)


def project_bucket_name(prefix: str, purpose: str, account: str, region: str) -> str:
    """`<project>-<stage>-<purpose>-<account>-<region>`: also how a stage names another stage's bucket."""
    return f"{prefix}-{purpose}-{account}-{region}"


def removal_policy(config: StageConfig) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.DESTROY if config.destroy_on_removal else cdk.RemovalPolicy.RETAIN


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    config: StageConfig,
    key: ProjectKey | None,
    access_logs: s3.IBucket | None,
    access_log_prefix: str = "",
    extra_lifecycle_rules: Sequence[s3.LifecycleRule] = (),
) -> s3.Bucket:
    """A private, TLS-only, versioned bucket; KMS-encrypted with `key`, else SSE-S3."""
    return s3.Bucket(
        scope,
        construct_id,
        bucket_name=name,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        encryption=s3.BucketEncryption.KMS if key else s3.BucketEncryption.S3_MANAGED,
        encryption_key=key.key if key else None,
        # An S3 Bucket Key cuts the KMS requests (and their cost) per object by a large factor.
        bucket_key_enabled=True if key else None,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=access_log_prefix or None,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="AbortIncompleteUploadsAndExpireOldVersions",
                abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                noncurrent_version_expiration=cdk.Duration.days(config.noncurrent_version_expiry_days),
            ),
            *extra_lifecycle_rules,
        ],
        removal_policy=removal_policy(config),
    )


class AccessLogBucket(Construct):
    """Destination of the other buckets' S3 server access logs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        # SSE-S3, not the project key: S3 server access logging cannot deliver into a bucket
        # whose default encryption is SSE-KMS.
        self.bucket = secure_bucket(
            self,
            "Bucket",
            name=bucket_name(config, cdk.Stack.of(self), "access-logs"),
            config=config,
            key=None,
            access_logs=None,
            extra_lifecycle_rules=[
                s3.LifecycleRule(id="ExpireAccessLogs", expiration=cdk.Duration.days(config.log_retention_days))
            ],
        )
        # It does not log its own access (that would log every log delivery, forever). cdk-nag's
        # AwsSolutions-S1 already accepts a bucket that other buckets log into: nothing to acknowledge.


class ProjectBucket(Construct):
    """A KMS-encrypted bucket of the project whose grants are scoped to key prefixes.

    Every grant also gives the grantee what it needs of the project key, so one call is
    enough to read or write the objects.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        purpose: str,
        config: StageConfig,
        key: ProjectKey,
        access_logs: s3.IBucket,
        extra_lifecycle_rules: Sequence[s3.LifecycleRule] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self.bucket_name = bucket_name(config, cdk.Stack.of(self), purpose)
        self.bucket = secure_bucket(
            self,
            "Bucket",
            name=self.bucket_name,
            config=config,
            key=key,
            access_logs=access_logs,
            access_log_prefix=f"{purpose}/",
            extra_lifecycle_rules=extra_lifecycle_rules,
        )

    @property
    def bucket_arn(self) -> str:
        return f"arn:{cdk.Aws.PARTITION}:s3:::{self.bucket_name}"

    def arn_for_objects(self, key_pattern: str) -> str:
        return f"{self.bucket_arn}/{key_pattern}"

    def s3_uri(self, key_prefix: str = "") -> str:
        return f"s3://{self.bucket_name}/{key_prefix}"

    def _allow(
        self, grantee: iam.IGrantable, *, sid: str, actions: Sequence[str], prefixes: Sequence[str], list_objects: bool
    ) -> None:
        """Object `actions` under `prefixes` (plus listing exactly those prefixes), and the key."""
        principal = grantee.grant_principal
        object_arns = [self.arn_for_objects(f"{prefix}*") for prefix in prefixes]
        principal.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=list(actions), resources=object_arns))
        if list_objects:
            principal.add_to_principal_policy(
                iam.PolicyStatement(
                    sid=f"List{sid}",
                    actions=["s3:ListBucket"],
                    resources=[self.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}},
                )
            )
        if isinstance(grantee, Construct):
            acknowledge_wildcard_resources(
                grantee,
                object_arns,
                f"{sid} covers every object under {', '.join(prefixes)}; a key prefix is "
                "only expressible as a trailing wildcard",
            )
        if any(action in WRITE_ACTIONS for action in actions):
            self._key.allow_use(grantee)
        else:
            self._key.allow_decrypt(grantee)
