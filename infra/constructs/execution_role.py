"""The role SageMaker assumes to run this project's training, processing and endpoints.

Least privilege: no managed policies; S3 and KMS access comes from the grant methods of
the buckets and the key (written next to them); everything else is below, scoped to named
log groups, metric namespaces and image repositories.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.data_bucket import DataBucket
from infra.constructs.key import ProjectKey
from infra.constructs.principals import SAGEMAKER_PRINCIPAL, acting_for_this_account
from infra.constructs.vpc_access import NO_RESOURCE_REASON, allow_network_interfaces
from infra.images import ImageRepository, image_repository, inference_image_uri, training_image_uri
from infra.nag import acknowledge, acknowledge_wildcard_resources

JOB_LOG_GROUPS = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs")
ENDPOINT_LOG_GROUPS = "/aws/sagemaker/Endpoints/*"
METRIC_NAMESPACES = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/Endpoints")
IMAGE_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


def framework_image_repositories(config: StageConfig) -> list[ImageRepository]:
    """The repositories of the training and serving images of every network of the stage."""
    uris = {training_image_uri(config.region, config.training_instance_type(name)) for name in config.networks}
    uris |= {inference_image_uri(config.region, config.endpoint_instance_type(name)) for name in config.networks}
    return sorted({image_repository(uri) for uri in uris}, key=lambda repo: repo.name)


class SageMakerExecutionRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        key: ProjectKey,
        data: DataBucket,
        artifacts: ArtifactsBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            description=f"Assumed by SageMaker for the jobs and endpoints of {config.prefix()}",
            assumed_by=acting_for_this_account(SAGEMAKER_PRINCIPAL, self),
        )

        data.allow_read_training_data(self.role, config.networks)
        artifacts.allow_write_model_artifacts(self.role)
        artifacts.allow_read_model_artifacts(self.role)
        artifacts.allow_read_write_checkpoints(self.role)
        artifacts.allow_write_pipeline_outputs(self.role)
        artifacts.allow_read_pipeline_outputs(self.role)
        artifacts.allow_write_data_capture(self.role)
        artifacts.allow_read_data_capture(self.role)
        artifacts.allow_read_write_capture_windows(self.role)
        artifacts.allow_write_batch_outputs(self.role)
        if config.endpoint.async_inference is not None:
            artifacts.allow_read_write_async_inference(self.role)
            self._allow_async_notifications(stack, config)
        # Needed beyond S3 too: SageMaker encrypts job outputs and volumes with the key a job
        # names. The write grants above already include it; stated so that it outlives them.
        key.allow_use(self.role)

        self._allow_logs(stack)
        self._allow_metrics(config)
        self._allow_framework_images(stack, framework_image_repositories(config))
        self._allow_listing_model_versions()
        without_resources = [
            "cloudwatch:PutMetricData and ecr:GetAuthorizationToken support no resource-level permissions; "
            "PutMetricData is limited by a namespace condition",
            "sagemaker:ListModelPackages has only an optional resource type, so AWS may authorize it against *",
        ]
        if config.vpc:
            interfaces = allow_network_interfaces(self.role, config.vpc)
            acknowledge_wildcard_resources(
                self.role, interfaces, "SageMaker creates the network interfaces of jobs and endpoints in the VPC"
            )
            without_resources.append(NO_RESOURCE_REASON)
        acknowledge(self.role, "AwsSolutions-IAM5[Resource::*]", "; ".join(without_resources))

    @property
    def role_arn(self) -> str:
        return self.role.role_arn

    def allow_read_source_bundle(self, asset: s3_assets.Asset) -> None:
        """Read the training code bundle (`sagemaker_submit_directory`) from the CDK asset bucket.

        Called by the stack that owns the asset. The asset bucket's name is built from pseudo
        parameters, so this adds no cross-stack reference.
        """
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadSourceBundle",
                actions=["s3:GetObject"],
                resources=[asset.bucket.arn_for_objects(asset.s3_object_key)],
            )
        )
        # The Evaluate step takes the bundle as an S3Prefix input, which SageMaker lists first
        # (found by `mlops local` with IAM enforced); only that one key.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListSourceBundle",
                actions=["s3:ListBucket"],
                resources=[asset.bucket.bucket_arn],
                conditions={"StringEquals": {"s3:prefix": asset.s3_object_key}},
            )
        )

    def _allow_logs(self, stack: cdk.Stack) -> None:
        def log_group_arn(name: str) -> str:
            return stack.format_arn(
                service="logs", resource="log-group", resource_name=name, arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME
            )

        resources = [log_group_arn(group) for group in JOB_LOG_GROUPS]
        resources += [log_group_arn(f"{group}:log-stream:*") for group in JOB_LOG_GROUPS]
        resources.append(log_group_arn(ENDPOINT_LOG_GROUPS))
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteSageMakerLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=resources,
            )
        )
        acknowledge_wildcard_resources(
            self.role, resources, "SageMaker names the log streams per job and instance, and one log group per endpoint"
        )

    def _allow_metrics(self, config: StageConfig) -> None:
        # cloudwatch:PutMetricData has no resource-level permissions: Resource must be "*".
        # The namespace condition limits it to SageMaker's own namespaces and the drift monitor's.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutSageMakerMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "cloudwatch:namespace": [*METRIC_NAMESPACES, naming.drift_metric_namespace(config.prefix())]
                    }
                },
            )
        )

    def _allow_async_notifications(self, stack: cdk.Stack, config: StageConfig) -> None:
        # SageMaker publishes an asynchronous endpoint's notifications as its execution role; the
        # topics are named by the endpoint stacks (infra/constructs/async_endpoint.py). Their key is
        # the project key, which `key.allow_use` already covers.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishAsyncInferenceNotifications",
                actions=["sns:Publish"],
                resources=[
                    stack.format_arn(
                        service="sns",
                        resource=naming.async_topic_name(naming.endpoint_name(config.prefix(), network), outcome),
                        arn_format=cdk.ArnFormat.NO_RESOURCE_NAME,
                    )
                    for network in config.networks
                    for outcome in naming.ASYNC_OUTCOMES
                ],
            )
        )

    def _allow_listing_model_versions(self) -> None:
        # The Champion step lists its group's versions (training/processing/find_champion.py).
        # ListModelPackages has model-package as an optional resource type only (service authorization
        # reference), and SageMaker's API permissions reference says List calls take no resource-level
        # restriction: only `*` works either way (docs/iam.md). It reads the versions' summaries;
        # describing one, which gives its model's location, stays scoped to the role's own groups
        # (TrainingPipeline.allow_read_versions).
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ListModelVersions", actions=["sagemaker:ListModelPackages"], resources=["*"])
        )

    def _allow_framework_images(self, stack: cdk.Stack, repositories: list[ImageRepository]) -> None:
        # ecr:GetAuthorizationToken has no resource-level permissions: Resource must be "*".
        # The token alone grants nothing; pulls are limited to the repositories below.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="GetRegistryToken", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PullFrameworkImages",
                actions=list(IMAGE_PULL_ACTIONS),
                resources=[
                    stack.format_arn(
                        service="ecr",
                        region=repo.region,
                        account=repo.account,
                        resource="repository",
                        resource_name=repo.name,
                    )
                    for repo in repositories
                ],
            )
        )
