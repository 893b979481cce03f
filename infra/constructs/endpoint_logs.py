"""An endpoint's log group and the metrics its handler's own lines give.

SageMaker writes the serving container's stdout and stderr to `/aws/sagemaker/Endpoints/<name>`,
creating the group on first use; created here first, it is encrypted with the project key and
kept a year. The container answers every handler exception with HTTP 500, a client's bad
request and the model's own failure alike, so `Invocation5XXErrors` cannot tell them apart; the
handler (`inference/model_code/inference.py`) writes one JSON line per failure,
`{"handler_outcome": "bad_input" | "model_failure", ...}`, and a metric filter per outcome
counts them. The rollback alarm watches `ModelFailures` only.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import naming

OUTCOME_FIELD = "handler_outcome"
# metric name -> the outcome the handler writes
OUTCOME_METRICS = {"ModelFailures": "model_failure", "BadInput": "bad_input"}


class EndpointLogs(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, endpoint_name: str, encryption_key: kms.IKey, retain: bool
    ) -> None:
        super().__init__(scope, construct_id)
        self.namespace = naming.handler_metric_namespace(endpoint_name)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=naming.endpoint_log_group_name(endpoint_name),
            encryption_key=encryption_key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=cdk.RemovalPolicy.RETAIN if retain else cdk.RemovalPolicy.DESTROY,
        )
        for metric_name, outcome in OUTCOME_METRICS.items():
            logs.MetricFilter(
                self,
                f"{metric_name}Filter",
                log_group=self.log_group,
                filter_pattern=logs.FilterPattern.string_value(f"$.{OUTCOME_FIELD}", "=", outcome),
                metric_namespace=self.namespace,
                metric_name=metric_name,
                metric_value="1",
            )

    def outcome_metric(self, metric_name: str) -> cloudwatch.Metric:
        """Sum per minute of the handler lines counted under `metric_name` (see OUTCOME_METRICS)."""
        return cloudwatch.Metric(
            namespace=self.namespace, metric_name=metric_name, statistic="Sum", period=cdk.Duration.minutes(1)
        )
