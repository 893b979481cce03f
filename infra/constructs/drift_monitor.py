"""A network's drift monitor: the monitor pipeline, the alarm on what it finds, the rule that
retrains on that alarm, and the schedule that runs it on the version being served.

    schedule (endpoint stack) --starts--> <prefix>-<network>-monitor (pipelines stack)
        --publishes DriftScore--> alarm <prefix>-<network>-drift
        --ALARM--> rule RetrainOnDrift --starts--> <prefix>-<network> (the training pipeline)

In a stage that promotes from another (prod), which trains nothing, RetrainOnDrift sends the
alarm's event to its source stage (dev) instead, whose rule starts the network's training
pipeline there (infra/constructs/cross_account_retraining.py).

The schedule lives in the endpoint stack because only a deployment knows which model version is
served: `mlops deploy` passes that version's model and baseline (its DriftCheckBaselines) as the
stack's parameters, and the schedule hands them to every monitor run. No endpoint, no schedule.
The monitor's jobs run as the execution role (which may read `data-capture/` and publish into
the drift namespace); the pipeline, the alarm and the rules each have a role of their own that
may do only what they do, on resources named in advance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
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
from infra.constructs.training_pipeline import PIPELINE_JOB_NAMES, definition_values, pipeline_definition
from infra.definitions import monitor_pipeline as definition
from infra.nag import acknowledge_wildcard_resources

DRIFT_METRIC = "DriftScore"
NETWORK_DIMENSION = "Network"
ALARM_EVENT_SOURCE = "aws.cloudwatch"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


@dataclass(frozen=True)
class Retraining:
    """What a drift alarm's rule does: its target, what that does in words (the rule's
    description begins with it: "Starts mlops-local-cnn"), and the resource the rule must follow
    (the pipeline it starts, where that is in the same stack)."""

    target: events.IRuleTarget
    action: str
    after: Construct | None = None


def drift_alarm_pattern(alarm_name: str, *, account: str | None = None) -> events.EventPattern:
    """The event CloudWatch sends when `alarm_name` goes into ALARM; with `account`, only that
    account's (the alarm's event keeps its own account when forwarded to another's event bus)."""
    return events.EventPattern(
        account=[account] if account is not None else None,
        source=[ALARM_EVENT_SOURCE],
        detail_type=[ALARM_STATE_CHANGE],
        detail={"alarmName": [alarm_name], "state": {"value": ["ALARM"]}},
    )


def alarm_threshold(alpha: float) -> float:
    """The DriftScore of a window whose p-value is `alpha`: -log10(alpha) (training/drift.py's score)."""
    return -math.log10(alpha)


def monitor_pipeline_arn(stack: cdk.Stack, config: StageConfig, network: str) -> str:
    return stack.format_arn(
        service="sagemaker", resource="pipeline", resource_name=naming.monitor_pipeline_name(config.prefix(), network)
    )


class DriftMonitor(Construct):
    """In the pipelines stack, per network: the monitor pipeline, its alarm, and retraining on it
    (none when `retraining` is None)."""

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
        retraining: Retraining | None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.pipeline_name = naming.monitor_pipeline_name(config.prefix(), network)
        processing_jobs = stack.format_arn(
            service="sagemaker", resource="processing-job", resource_name=PIPELINE_JOB_NAMES
        )
        self.role = iam.Role(
            self,
            "MonitorPipelineRole",
            description=f"Assumed by SageMaker Pipelines to run {self.pipeline_name}",
            assumed_by=acting_for_this_account(SAGEMAKER_PRINCIPAL, self),
            inline_policies={
                "RunMonitoringJobs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=[
                                "sagemaker:CreateProcessingJob",
                                "sagemaker:DescribeProcessingJob",
                                "sagemaker:StopProcessingJob",
                                "sagemaker:AddTags",
                            ],
                            resources=[processing_jobs],
                        )
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
                "EncryptJobVolumesWithProjectKey": key.job_volume_encryption_policy(config.region),
            },
        )
        acknowledge_wildcard_resources(
            self.role,
            [processing_jobs],
            "SageMaker Pipelines names its processing jobs per run: only a prefix is known",
        )
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_description=f"Compare the {network} endpoint's captured traffic with the served model's baseline",
            role_arn=self.role.role_arn,
            pipeline_definition=pipeline_definition(
                definition.monitor_definition_body(config, network),
                definition_values(config, network, source_bundle, key, data, artifacts, execution_role),
            ),
        )

        self.alarm = cloudwatch.Alarm(
            self,
            "DriftAlarm",
            alarm_name=naming.drift_alarm_name(config.prefix(), network),
            alarm_description=f"{self.pipeline_name} found the {network} endpoint's traffic unlike the served "
            f"model's baseline (p-value below {config.monitor.alpha})",
            metric=cloudwatch.Metric(
                namespace=naming.drift_metric_namespace(config.prefix()),
                metric_name=DRIFT_METRIC,
                dimensions_map={NETWORK_DIMENSION: network},
                statistic="Maximum",
                period=Duration.minutes(config.monitor.window_minutes),
            ),
            threshold=alarm_threshold(config.monitor.alpha),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            # No run, or a window too small to conclude, publishes no score: that is not drift.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.retrain_rule: events.Rule | None = None
        if retraining is not None:
            # The alarm by its name, not a reference: moto's CloudFormation skips alarms.
            alarm_name = naming.drift_alarm_name(config.prefix(), network)
            self.retrain_rule = events.Rule(
                self,
                "RetrainOnDrift",
                description=f"{retraining.action} when {alarm_name} goes into ALARM",
                event_pattern=drift_alarm_pattern(alarm_name),
                targets=[retraining.target],
            )
            if retraining.after is not None:
                self.retrain_rule.node.add_dependency(retraining.after)


class MonitorSchedule(Construct):
    """In the endpoint stack: the schedule that runs the network's monitor on the served version."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, network: str) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        pipeline_name = naming.monitor_pipeline_name(config.prefix(), network)
        self.model_data_url = cdk.CfnParameter(
            self,
            "ModelDataUrl",
            type="String",
            description="model.tar.gz of the served version (its InferenceSpecification), set by mlops deploy",
        )
        self.model_data_url.override_logical_id(definition.MONITORED_MODEL_PARAMETER)
        self.baseline_uri = cdk.CfnParameter(
            self,
            "BaselineUri",
            type="String",
            description="baseline.json of the served version (its DriftCheckBaselines), set by mlops deploy",
        )
        self.baseline_uri.override_logical_id(definition.MONITORED_BASELINE_PARAMETER)
        pipeline_arn = monitor_pipeline_arn(stack, config, network)
        self.role = iam.Role(
            self,
            "MonitorScheduleRole",
            description=f"Assumed by EventBridge to start {pipeline_name}",
            assumed_by=acting_for_this_account(EVENTS_PRINCIPAL, self),
            inline_policies={
                "StartTheMonitorPipeline": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[pipeline_arn])
                    ]
                )
            },
        )
        # The L1 rule: the L2 target interface has no SageMaker pipeline parameters.
        self.rule = events.CfnRule(
            self,
            "MonitorOnSchedule",
            description=f"Starts {pipeline_name} on {config.monitor.schedule} for the served model version",
            schedule_expression=config.monitor.schedule,
            state="ENABLED",
            targets=[
                events.CfnRule.TargetProperty(
                    arn=pipeline_arn,
                    id="MonitorPipeline",
                    role_arn=self.role.role_arn,
                    sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                        pipeline_parameter_list=[
                            events.CfnRule.SageMakerPipelineParameterProperty(
                                name=definition.MODEL_DATA_URL, value=self.model_data_url.value_as_string
                            ),
                            events.CfnRule.SageMakerPipelineParameterProperty(
                                name=definition.BASELINE_URI, value=self.baseline_uri.value_as_string
                            ),
                        ]
                    ),
                )
            ],
        )
