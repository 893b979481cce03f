"""One network's training pipeline: the SageMaker Pipeline, its model registry group, the role
the pipeline runs as, and the rules that start it (new training data, and a schedule).

The definition itself is plain data from `infra.definitions.training_pipeline`; this construct only fills
in its deploy-time values with `Fn::Sub`. IAM sits next to what it grants, in inline policies
named after what they allow.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.buckets import removal_policy
from infra.constructs.data_bucket import DataBucket, channel_prefix
from infra.constructs.key import ProjectKey
from infra.constructs.principals import EVENTS_PRINCIPAL, SAGEMAKER_PRINCIPAL, acting_for_this_account
from infra.constructs.promotion import consumer_accounts, shared_group_policy
from infra.constructs.rule_targets import TargetAsRole
from infra.definitions import training_pipeline as definition
from infra.images import inference_image_uri, training_image_uri
from infra.nag import acknowledge, acknowledge_wildcard_resources
from training.networks import get_network

# SageMaker Pipelines names the jobs it starts `pipelines-<execution id>-<step>-<suffix>`.
PIPELINE_JOB_NAMES = "pipelines-*"
# Data preparation uploads a channel's spec.json after its shards, and the train channel's
# last of all, so this one object marks a complete dataset: one upload, one run.
TRIGGER_FILE = "spec.json"


def trigger_object_key(network: str) -> str:
    """The data bucket key whose creation starts a retraining run, e.g. `cnn/train/spec.json`."""
    return f"{channel_prefix(network, 'train')}{TRIGGER_FILE}"


def bundle_file_name(source_bundle: s3_assets.Asset) -> str:
    """The file an S3Prefix input or channel of the bundle's URI holds: SageMaker names a single
    object by the last part of its key (a CDK asset's key is its hash, known at synth time)."""
    if cdk.Token.is_unresolved(source_bundle.s3_object_key):
        raise ValueError("the source bundle's object key is not known at synth time")
    return PurePosixPath(source_bundle.s3_object_key).name


class TrainingPipeline(Construct):
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
        spec = get_network(network)
        stack = cdk.Stack.of(self)
        self.pipeline_name = naming.pipeline_name(config.prefix(), spec.name)
        self.group_name = naming.model_package_group_name(config.prefix(), spec.name)
        self.pipeline_arn = stack.format_arn(service="sagemaker", resource="pipeline", resource_name=self.pipeline_name)

        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=self.group_name,
            model_package_group_description=f"Registered {spec.name} models: {spec.summary}",
            # Stages that promote from this one deploy its versions (infra/constructs/promotion.py).
            model_package_group_policy=shared_group_policy(self, self.group_name, consumer_accounts(config)),
        )
        # A group that still holds versions cannot be deleted: retained stages keep it, and
        # destroying a stage means deleting its model versions first (docs/infrastructure.md).
        self.model_package_group.apply_removal_policy(removal_policy(config))

        self.role = iam.Role(
            self,
            "PipelineRole",
            description=f"Assumed by SageMaker Pipelines to run {self.pipeline_name}",
            assumed_by=acting_for_this_account(SAGEMAKER_PRINCIPAL, self),
            inline_policies={
                "RunTrainingAndEvaluationJobs": run_jobs_policy(
                    stack,
                    self.group_name,
                    {
                        job_arn(stack, "training-job"): job_actions("TrainingJob"),
                        job_arn(stack, "processing-job"): job_actions("ProcessingJob"),
                    },
                ),
                **gate_policies(config, self.group_name, spec.name, key, artifacts, execution_role),
            },
        )
        acknowledge_wildcard_resources(
            self.role,
            self._job_arns(stack)
            + model_version_arns(stack, self.group_name)
            + [artifacts.arn_for_objects(reports_prefix(spec.name) + "*")],
            "SageMaker Pipelines names jobs and model versions per run, and evaluation reports "
            "per execution: only a name prefix is known in advance",
        )
        acknowledge_create_model_package_on_any(self.role)

        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_description=f"Train, evaluate, gate and register the {spec.name} network",
            role_arn=self.role.role_arn,
            pipeline_definition=pipeline_definition(
                definition.definition_body(config, spec.name),
                definition_values(config, spec.name, source_bundle, key, data, artifacts, execution_role),
            ),
        )
        # Register needs the group; and the group must outlive the pipeline on deletion.
        self.pipeline.node.add_dependency(self.model_package_group)
        # The Champion step finds the group's approved version as the execution role.
        self.allow_read_versions(execution_role)

        self._add_retraining_triggers(config, data, spec.name)

    def allow_read_versions(self, grantee: iam.IRole) -> None:
        """Describe this group's versions (not the group, nor another group's): what the Champion
        step does with the versions it lists (training/processing/find_champion.py). Listing them
        is the execution role's own `ListModelVersions` (infra/constructs/execution_role.py)."""
        stack = cdk.Stack.of(self)
        grantee.add_to_principal_policy(
            iam.PolicyStatement(
                sid=f"ReadModelVersionsOf{self.group_name.title().replace('-', '')}",
                actions=["sagemaker:DescribeModelPackage"],
                resources=model_version_arns(stack, self.group_name),
            )
        )
        acknowledge_wildcard_resources(
            grantee,
            model_version_arns(stack, self.group_name),
            "model versions are numbered as they are registered: only the group's name is known in advance",
        )

    def _job_arns(self, stack: cdk.Stack) -> list[str]:
        return [job_arn(stack, kind) for kind in ("training-job", "processing-job")]

    def _add_retraining_triggers(self, config: StageConfig, data: DataBucket, network: str) -> None:
        trigger_role = iam.Role(
            self,
            "RetrainingTriggerRole",
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
        target = TargetAsRole(self.pipeline_arn, trigger_role)
        # Also the drift alarms' (infra/constructs/drift_monitor.py), this stage's and those of the
        # stages that promote from it (infra/constructs/cross_account_retraining.py).
        self.retraining_target = target
        self.new_data_rule = events.Rule(
            self,
            "RetrainOnNewTrainingData",
            description=f"Starts {self.pipeline_name} when data preparation writes "
            f"{trigger_object_key(network)} to the data bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={"bucket": {"name": [data.bucket_name]}, "object": {"key": [trigger_object_key(network)]}},
            ),
            targets=[target],
        )
        self.new_data_rule.node.add_dependency(self.pipeline)
        self.schedule_rule: events.Rule | None = None
        if config.retrain_schedule:
            self.schedule_rule = events.Rule(
                self,
                "RetrainOnSchedule",
                description=f"Starts {self.pipeline_name} on {config.retrain_schedule}",
                schedule=events.Schedule.expression(config.retrain_schedule),
                targets=[target],
            )
            self.schedule_rule.node.add_dependency(self.pipeline)


def job_actions(job: str) -> list[str]:
    """Starting, describing and stopping a `job` (`TrainingJob`, `ProcessingJob`, ...)."""
    return [f"sagemaker:{verb}{job}" for verb in ("Create", "Describe", "Stop")]


def run_jobs_policy(stack: cdk.Stack, group_name: str, jobs: dict[str, list[str]]) -> iam.PolicyDocument:
    """The `jobs` a pipeline starts ({ARN: actions}), and tagging them and the versions it registers."""
    return iam.PolicyDocument(
        statements=[
            *(iam.PolicyStatement(actions=actions, resources=[arn]) for arn, actions in jobs.items()),
            # The pipeline tags what it creates with its own execution ARN.
            iam.PolicyStatement(
                actions=["sagemaker:AddTags"], resources=[*jobs, *model_version_arns(stack, group_name)]
            ),
        ]
    )


def definition_values(
    config: StageConfig,
    network: str,
    source_bundle: s3_assets.Asset,
    key: ProjectKey,
    data: DataBucket,
    artifacts: ArtifactsBucket,
    execution_role: iam.IRole,
) -> dict[str, Any]:
    """What `Fn::Sub` fills a network's pipeline definition in with: its deploy-time values."""
    return {
        definition.ARTIFACTS_BUCKET: artifacts.bucket_name,
        definition.DATA_BUCKET: data.bucket_name,
        definition.EXECUTION_ROLE_ARN: execution_role.role_arn,
        definition.KEY_ARN: key.key_arn,
        definition.SOURCE_BUNDLE_URI: source_bundle.s3_object_url,
        definition.SOURCE_BUNDLE_FILE: bundle_file_name(source_bundle),
        definition.TRAINING_IMAGE_URI: training_image_uri(config.region, config.training_instance_type(network)),
        definition.INFERENCE_IMAGE_URI: inference_image_uri(config.region, config.endpoint_instance_type(network)),
    }


def pipeline_definition(body: str, values: dict[str, Any]) -> dict[str, Any]:
    """A CfnPipeline's `pipeline_definition`: `body` with `Fn::Sub` filling in the deploy-time
    `values` it names (each pipeline names some of `definition_values`)."""
    named = {name: value for name, value in values.items() if f"${{{name}}}" in body}
    return {"PipelineDefinitionBody": cdk.Fn.sub(body, named)}


def job_arn(stack: cdk.Stack, kind: str) -> str:
    """The ARN of every job of `kind` SageMaker Pipelines starts (`pipelines-*`)."""
    return stack.format_arn(service="sagemaker", resource=kind, resource_name=PIPELINE_JOB_NAMES)


def model_version_arns(stack: cdk.Stack, group_name: str) -> list[str]:
    return [stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group_name}/*")]


def reports_prefix(network: str) -> str:
    return f"{ArtifactsBucket.PIPELINES_PREFIX}{network}/"


def gate_policies(
    config: StageConfig,
    group_name: str,
    network: str,
    key: ProjectKey,
    artifacts: ArtifactsBucket,
    execution_role: iam.IRole,
) -> dict[str, iam.PolicyDocument]:
    """What a pipeline role needs beside starting its jobs, for the gate every candidate passes
    through: passing the execution role to SageMaker, registering versions, reading the reports
    the quality gate reads, and the project key on job volumes."""
    stack = cdk.Stack.of(artifacts)
    return {
        "PassExecutionRoleToSageMaker": iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[execution_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
                )
            ]
        ),
        "RegisterModelVersions": iam.PolicyDocument(
            statements=[
                # CreateModelPackage lists model-package as an optional resource type only (service
                # authorization reference), so AWS may authorize it against `*` rather than the new
                # version's ARN: only `*` works either way, and no condition key names the group
                # (docs/iam.md). The group a version goes into is the definition's, which this stack
                # deploys.
                iam.PolicyStatement(actions=["sagemaker:CreateModelPackage"], resources=["*"]),
                # Built from the name, not read from the resource: moto skips model package groups, and
                # a Fn::GetAtt on a skipped resource fails the whole stack there.
                iam.PolicyStatement(
                    actions=["sagemaker:DescribeModelPackageGroup"],
                    resources=[
                        stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=group_name)
                    ],
                ),
                iam.PolicyStatement(
                    actions=["sagemaker:DescribeModelPackage"], resources=model_version_arns(stack, group_name)
                ),
            ]
        ),
        # The pipeline service itself reads evaluation.json to resolve the quality gate's
        # Std:JsonGet, as this role; only this network's reports.
        "ReadEvaluationReports": iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[artifacts.arn_for_objects(reports_prefix(network) + "*")]
                ),
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key.key_arn]),
            ]
        ),
        "EncryptJobVolumesWithProjectKey": key.job_volume_encryption_policy(config.region),
    }


def acknowledge_create_model_package_on_any(role: iam.IRole) -> None:
    """cdk-nag's acknowledgement of the gate's `sagemaker:CreateModelPackage` on `*` (gate_policies)."""
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "sagemaker:CreateModelPackage has only an optional resource type, so AWS may authorize it against * "
        "(service authorization reference; docs/iam.md)",
    )
