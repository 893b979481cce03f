"""One network's tuning pipelines: tuning from nothing and from a previous tuning job's trials, and
the role both run as. They register into the training pipeline's model package group, through the
same gate (infra/definitions/tuning_pipeline.py).

The role may start tuning jobs and the gate's processing jobs, and nothing the training pipeline's
role may not do but that. The tuning job's trials are training jobs the tuning service starts
itself: creating them is authorized on CreateHyperParameterTuningJob (with iam:PassRole of the
execution role they run as), not on CreateTrainingJob.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.data_bucket import DataBucket
from infra.constructs.key import ProjectKey
from infra.constructs.principals import SAGEMAKER_PRINCIPAL, acting_for_this_account
from infra.constructs.training_pipeline import (
    TrainingPipeline,
    acknowledge_create_model_package_on_any,
    definition_values,
    gate_policies,
    job_actions,
    job_arn,
    model_version_arns,
    pipeline_definition,
    reports_prefix,
    run_jobs_policy,
)
from infra.definitions.tuning_pipeline import tuning_definition_body, tuning_pipeline_names
from infra.nag import acknowledge_wildcard_resources

# SageMaker Pipelines names the tuning jobs it starts itself, in at most 32 characters, in a form AWS
# does not document (its training and processing jobs' `pipelines-<execution id>-...` does not fit
# in 32): only the account and region of the name are known in advance.
TUNING_JOB_NAMES = "*"


class TuningPipelines(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        training: TrainingPipeline,
        network: str,
        source_bundle: s3_assets.Asset,
        key: ProjectKey,
        data: DataBucket,
        artifacts: ArtifactsBucket,
        execution_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.pipeline_names = tuning_pipeline_names(config.prefix(), network)
        self.tuning_job_arn = stack.format_arn(
            service="sagemaker", resource="hyper-parameter-tuning-job", resource_name=TUNING_JOB_NAMES
        )
        processing_job = job_arn(stack, "processing-job")
        self.role = iam.Role(
            self,
            "TuningPipelineRole",
            description=f"Assumed by SageMaker Pipelines to run {', '.join(self.pipeline_names.values())}",
            assumed_by=acting_for_this_account(SAGEMAKER_PRINCIPAL, self),
            inline_policies={
                # Describe and ListTrainingJobsFor...: the Tune step's properties, which the pipeline
                # service reads as this role.
                "RunTuningAndEvaluationJobs": run_jobs_policy(
                    stack,
                    training.group_name,
                    {
                        self.tuning_job_arn: [
                            *job_actions("HyperParameterTuningJob"),
                            "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                        ],
                        processing_job: job_actions("ProcessingJob"),
                    },
                ),
                **gate_policies(config, training.group_name, network, key, artifacts, execution_role),
            },
        )
        acknowledge_wildcard_resources(
            self.role,
            [self.tuning_job_arn],
            "SageMaker Pipelines names each tuning job it starts in a form AWS does not document, "
            "so only the account and region of its ARN are known in advance",
        )
        acknowledge_wildcard_resources(
            self.role,
            [
                processing_job,
                *model_version_arns(stack, training.group_name),
                artifacts.arn_for_objects(reports_prefix(network) + "*"),
            ],
            "SageMaker Pipelines names jobs and model versions per run, and evaluation reports "
            "per execution: only a name prefix is known in advance",
        )
        acknowledge_create_model_package_on_any(self.role)
        values = definition_values(config, network, source_bundle, key, data, artifacts, execution_role)
        self.pipelines = {
            warm_start: sagemaker.CfnPipeline(
                self,
                "WarmStartPipeline" if warm_start else "Pipeline",
                pipeline_name=name,
                pipeline_description=(
                    f"Tune the {network} network's hyperparameters"
                    + (", from a previous tuning job's trials" if warm_start else "")
                    + ", then evaluate, gate and register the best trial"
                ),
                role_arn=self.role.role_arn,
                pipeline_definition=pipeline_definition(
                    tuning_definition_body(config, network, warm_start=warm_start), values
                ),
            )
            for warm_start, name in self.pipeline_names.items()
        }
        for pipeline in self.pipelines.values():
            # Register needs the group; and the group must outlive the pipeline on deletion.
            pipeline.node.add_dependency(training.model_package_group)
