"""One CloudWatch dashboard for every endpoint the stage can deploy.

It names endpoints by convention (`infra.naming.endpoint_name`), not by reference, so it deploys
before any model is approved and needs no update when an endpoint stack comes or goes: an
endpoint that does not exist yet just shows empty graphs.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra import naming
from infra.config import StageConfig
from infra.constructs.endpoint_metrics import instance_metric, invocation_metric
from infra.stacks.base import ProjectStack

ROW_HEIGHT = 6
DASHBOARD_WIDTH = 24


class MonitoringStack(ProjectStack):
    def __init__(self, scope: Construct, config: StageConfig) -> None:
        super().__init__(
            scope,
            config,
            naming.MONITORING_STACK_SUFFIX,
            description="CloudWatch dashboard of the stage's SageMaker endpoints",
        )
        serverless = config.endpoint.serverless is not None
        self.dashboard = cloudwatch.Dashboard(
            self,
            "EndpointsDashboard",
            dashboard_name=naming.dashboard_name(config.prefix()),
            default_interval=Duration.hours(3),
        )
        for network in config.networks:
            endpoint = naming.endpoint_name(config.prefix(), network)
            self.dashboard.add_widgets(*_endpoint_row(endpoint, serverless))


def _endpoint_row(endpoint: str, serverless: bool) -> list[cloudwatch.IWidget]:
    graphs = [
        ("invocations", [invocation_metric(endpoint, "Invocations", statistic="Sum", label="invocations")]),
        (
            "latency p90 (microseconds)",
            [
                invocation_metric(endpoint, "ModelLatency", statistic="p90", label="model"),
                invocation_metric(endpoint, "OverheadLatency", statistic="p90", label="SageMaker overhead"),
            ],
        ),
        (
            "errors",
            [
                invocation_metric(endpoint, "Invocation4XXErrors", statistic="Sum", label="4xx"),
                invocation_metric(endpoint, "Invocation5XXErrors", statistic="Sum", label="5xx"),
            ],
        ),
    ]
    # Serverless endpoints publish no instance metrics; their cold starts are the number to watch.
    if serverless:
        graphs.append(
            (
                "cold start (microseconds)",
                [invocation_metric(endpoint, "ModelSetupTime", statistic="Average", label="model setup")],
            )
        )
    else:
        graphs.append(
            (
                "instances (percent; CPU summed over cores)",
                [
                    instance_metric(endpoint, "CPUUtilization", label="CPU"),
                    instance_metric(endpoint, "MemoryUtilization", label="memory"),
                ],
            )
        )
    width = DASHBOARD_WIDTH // len(graphs)
    return [
        cloudwatch.GraphWidget(title=f"{endpoint}: {title}", left=metrics, width=width, height=ROW_HEIGHT)
        for title, metrics in graphs
    ]
