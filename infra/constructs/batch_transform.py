"""A network's batch transform: the pipeline that scores a batch of inputs with an approved model
version (`infra.definitions.transform_pipeline`), the role it runs as, and its schedule.

The pipeline's role may do exactly what its steps ask of SageMaker: processing jobs (ResolveModel,
and the drift monitor of a batch's inputs), network-isolated models created from this network's
served model versions, transform jobs whose output and volumes the project key encrypts, passing
the execution role, and reading its own runs' model.json (the Model step's JsonGet). The jobs and
the model run as the execution role, which reads the data bucket's `<network>/` and writes the
artifacts bucket's `batch-transform/`. The schedule (`batch.schedule`, none by default) starts a
run on the default input and the newest approved version.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.data_bucket import DataBucket
from infra.constructs.key import ProjectKey
from infra.constructs.principals import EVENTS_PRINCIPAL, SAGEMAKER_PRINCIPAL, acting_for_this_account
from infra.constructs.rule_targets import TargetAsRole
from infra.constructs.training_pipeline import PIPELINE_JOB_NAMES, definition_values, pipeline_definition
from infra.definitions import transform_pipeline as definition
from infra.nag import acknowledge_wildcard_resources


class BatchTransform(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        network: str,
        source_bundle: s3_assets.Asset,
        key: ProjectKey,
        data: DataBucket,
        artifacts: ArtifactsBucket,
        execution_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.pipeline_name = naming.transform_pipeline_name(config.prefix(), network)
        self.pipeline_arn = stack.format_arn(service="sagemaker", resource="pipeline", resource_name=self.pipeline_name)
        jobs = {
            kind: stack.format_arn(service="sagemaker", resource=kind, resource_name=PIPELINE_JOB_NAMES)
            for kind in ("processing-job", "transform-job", "model")
        }
        versions = served_versions_arn(stack, config, network)
        run_files = artifacts.arn_for_objects(f"{definition.work_prefix(network)}*")
        self.role = iam.Role(
            self,
            "TransformPipelineRole",
            description=f"Assumed by SageMaker Pipelines to run {self.pipeline_name}",
            assumed_by=acting_for_this_account(SAGEMAKER_PRINCIPAL, self),
            inline_policies={
                "RunProcessingAndTransformJobs": _jobs_policy(jobs, key),
                "CreateIsolatedModelsOfServedVersions": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=["sagemaker:CreateModel"],
                            resources=[jobs["model"]],
                            conditions={"Bool": {"sagemaker:NetworkIsolation": "true"}},
                        ),
                        iam.PolicyStatement(actions=["sagemaker:DescribeModel"], resources=[jobs["model"]]),
                        # The Model step names a version of the served group as its ModelPackageName.
                        iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[versions]),
                    ]
                ),
                "PassExecutionRoleToSageMaker": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=["iam:PassRole"],
                            resources=[execution_role.role_arn],
                            conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
                        )
                    ]
                ),
                # The service reads model.json (the Model and monitor steps' Std:JsonGet) as this role.
                "ReadRunFiles": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(actions=["s3:GetObject"], resources=[run_files]),
                        iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key.key_arn]),
                    ]
                ),
                "EncryptJobVolumesWithProjectKey": key.job_volume_encryption_policy(config.region),
            },
        )
        acknowledge_wildcard_resources(
            self.role,
            [*jobs.values(), versions, run_files],
            "SageMaker Pipelines names its jobs and models per run, model versions are numbered as they are "
            "registered, and each run's files are under its execution id: only a prefix is known in advance",
        )
        # ResolveModel describes the versions it lists; the training pipeline grants its own group's,
        # and a stage that serves another stage's versions needs theirs.
        if config.promotion_source is not None:
            execution_role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid=f"ReadServedVersionsOf{network.capitalize()}",
                    actions=["sagemaker:DescribeModelPackage"],
                    resources=[versions],
                )
            )
            acknowledge_wildcard_resources(execution_role, [versions], "model versions are numbered as registered")

        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_description=f"Score a batch of {network} inputs with an approved model version",
            role_arn=self.role.role_arn,
            pipeline_definition=pipeline_definition(
                definition.transform_definition_body(config, network),
                definition_values(config, network, source_bundle, key, data, artifacts, execution_role),
            ),
        )
        self.schedule_rule: events.Rule | None = None
        if config.batch.schedule:
            self._add_schedule(config.batch.schedule)

    def _add_schedule(self, schedule: str) -> None:
        role = iam.Role(
            self,
            "ScheduleRole",
            description=f"Assumed by EventBridge to start {self.pipeline_name}",
            assumed_by=acting_for_this_account(EVENTS_PRINCIPAL, self),
            inline_policies={
                "StartThisPipeline": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])
                    ]
                )
            },
        )
        self.schedule_rule = events.Rule(
            self,
            "TransformOnSchedule",
            description=f"Starts {self.pipeline_name} on {schedule}, on its default input and version",
            schedule=events.Schedule.expression(schedule),
            targets=[TargetAsRole(self.pipeline_arn, role)],
        )
        self.schedule_rule.node.add_dependency(self.pipeline)


def served_versions_arn(stack: cdk.Stack, config: StageConfig, network: str) -> str:
    """Every version of the group whose approved versions the stage serves (its own, or its
    promotion source's in that stage's account)."""
    served = config.served_model_package_group(network)
    if served.startswith("arn:"):
        return served.replace(":model-package-group/", ":model-package/") + "/*"
    return stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{served}/*")


def _jobs_policy(jobs: dict[str, str], key: ProjectKey) -> iam.PolicyDocument:
    processing_job, transform_job = jobs["processing-job"], jobs["transform-job"]
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                ],
                resources=[processing_job],
            ),
            # Only jobs whose output and volumes the project key encrypts.
            iam.PolicyStatement(
                actions=["sagemaker:CreateTransformJob"],
                resources=[transform_job],
                conditions={
                    "ArnEquals": {"sagemaker:OutputKmsKeyArn": key.key_arn, "sagemaker:VolumeKmsKeyArn": key.key_arn}
                },
            ),
            iam.PolicyStatement(
                actions=["sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob"], resources=[transform_job]
            ),
            # The pipeline tags what it creates with its own execution ARN.
            iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=list(jobs.values())),
        ]
    )
