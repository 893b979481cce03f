"""The project's customer-managed KMS key: encrypts the data and artifacts buckets."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra import naming
from infra.config import StageConfig

DECRYPT_ACTIONS = ("kms:Decrypt", "kms:DescribeKey")
ENCRYPT_ACTIONS = ("kms:Encrypt", "kms:GenerateDataKey")


class ProjectKey(Construct):
    """Key with yearly rotation and the alias `alias/<prefix>`.

    Grants are per grantee and cumulative: every bucket grant calls `allow_decrypt` or
    `allow_use` for its grantee, and one statement per grantee collects the actions, so a
    role given five bucket grants gets one KMS statement, not five.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.alias_name = f"alias/{config.prefix()}"
        self.key = kms.Key(
            self,
            "Key",
            description=f"Encrypts the data and model artifacts of {config.prefix()}",
            alias=self.alias_name,
            enable_key_rotation=True,
            removal_policy=(cdk.RemovalPolicy.DESTROY if config.destroy_on_removal else cdk.RemovalPolicy.RETAIN),
            pending_window=cdk.Duration.days(7) if config.destroy_on_removal else None,
        )
        self._statements: list[tuple[iam.IPrincipal, iam.PolicyStatement]] = []
        self._allow_endpoint_log_groups(config)

    @property
    def key_arn(self) -> str:
        return self.key.key_arn

    def allow_decrypt(self, grantee: iam.IGrantable) -> None:
        """Read objects encrypted with this key."""
        self._allow(grantee, DECRYPT_ACTIONS)

    def allow_use(self, grantee: iam.IGrantable) -> None:
        """Read and write data encrypted with this key (S3 objects, SageMaker job outputs)."""
        self._allow(grantee, DECRYPT_ACTIONS + ENCRYPT_ACTIONS)

    def job_volume_encryption_policy(self, region: str) -> iam.PolicyDocument:
        """What a principal that creates SageMaker training and processing jobs naming this key as
        their `VolumeKmsKeyId` needs of it (SageMaker's API permissions reference: CreateTrainingJob
        and CreateProcessingJob need `kms:CreateGrant` when the passed role lacks it).

        SageMaker attaches each job's ML storage volume encrypted with the key through a grant it
        creates on the caller's behalf, for that AWS resource only (`kms:GrantIsForAWSResource`, a
        key that only CreateGrant requests carry). SageMaker also looks the key up (DescribeKey) to
        validate the request; allowed only through SageMaker (`kms:ViaService`), as DescribeKey
        requests carry no GrantIsForAWSResource key and were never allowed under that condition.
        The jobs' S3 outputs are encrypted by the execution role, which `allow_use` covers.
        """
        return iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="GrantJobVolumesTheKey",
                    actions=["kms:CreateGrant"],
                    resources=[self.key.key_arn],
                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                ),
                iam.PolicyStatement(
                    sid="DescribeKeyThroughSageMaker",
                    actions=["kms:DescribeKey"],
                    resources=[self.key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"sagemaker.{region}.amazonaws.com"}},
                ),
            ]
        )

    def _allow_endpoint_log_groups(self, config: StageConfig) -> None:
        """CloudWatch Logs encrypts the stage's endpoint log groups with this key (each endpoint
        stack creates its group naming the key): AWS's documented key policy for it, the
        encryption context condition limiting it to those log groups. Without kms:DescribeKey,
        which that condition key does not apply to (the service authorization reference), so AWS's
        example grants it to no request either; StringLike, the key being a String."""
        stack = cdk.Stack.of(self)
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=naming.endpoint_log_group_name(f"{config.prefix()}-*"),
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EncryptEndpointLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{config.region}.amazonaws.com")],
                actions=["kms:Decrypt", *ENCRYPT_ACTIONS, "kms:ReEncryptFrom", "kms:ReEncryptTo"],
                resources=["*"],
                conditions={"StringLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            )
        )

    def _allow(self, grantee: iam.IGrantable, actions: tuple[str, ...]) -> None:
        principal = grantee.grant_principal
        for known, statement in self._statements:
            if known is principal:
                statement.add_actions(*(a for a in actions if a not in statement.actions))
                return
        statement = iam.PolicyStatement(sid="UseProjectKey", actions=list(actions), resources=[self.key.key_arn])
        principal.add_to_principal_policy(statement)
        self._statements.append((principal, statement))
