"""The stage dashboard: a row per enabled network's endpoint, instance graphs only where they exist."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from synth_support import CDK_CONTEXT

from infra import naming
from infra.config import StageConfig, parse_stage_config
from infra.stacks.monitoring_stack import MonitoringStack

STAGES = CDK_CONTEXT["stages"]


def _dashboard(config: StageConfig) -> dict:
    stack = MonitoringStack(cdk.App(), config)
    assert stack.stack_name == naming.monitoring_stack_name(config.prefix())
    dashboards = Template.from_stack(stack).find_resources("AWS::CloudWatch::Dashboard")
    (properties,) = [resource["Properties"] for resource in dashboards.values()]
    assert properties["DashboardName"] == naming.dashboard_name(config.prefix())
    _, parts = properties["DashboardBody"]["Fn::Join"]
    body = "".join(config.region if part == {"Ref": "AWS::Region"} else part for part in parts)
    return json.loads(body)


def _metrics_by_endpoint(dashboard: dict) -> dict[str, set[str]]:
    """endpoint name -> metric names graphed for it."""
    found: dict[str, set[str]] = {}
    for widget in dashboard["widgets"]:
        for metric in widget["properties"]["metrics"]:
            _, name, *dimensions = [part for part in metric if isinstance(part, str)]
            endpoint = dict(zip(dimensions[::2], dimensions[1::2], strict=True))["EndpointName"]
            found.setdefault(endpoint, set()).add(name)
    return found


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_enabled_network_endpoint_has_its_graphs(stage: str) -> None:
    config = parse_stage_config(STAGES, stage)
    graphed = _metrics_by_endpoint(_dashboard(config))

    expected = {naming.endpoint_name(config.prefix(), network) for network in config.networks}
    assert set(graphed) == expected
    for metrics in graphed.values():
        assert {
            "Invocations",
            "ModelLatency",
            "OverheadLatency",
            "Invocation4XXErrors",
            "Invocation5XXErrors",
        } <= metrics


def test_instance_graphs_only_for_instance_backed_stages() -> None:
    instance_backed = parse_stage_config(STAGES, "prod")
    serverless = parse_stage_config(STAGES, "dev")
    assert instance_backed.endpoint.serverless is None and serverless.endpoint.serverless is not None

    for metrics in _metrics_by_endpoint(_dashboard(instance_backed)).values():
        assert {"CPUUtilization", "MemoryUtilization"} <= metrics
    for metrics in _metrics_by_endpoint(_dashboard(serverless)).values():
        assert not {"CPUUtilization", "MemoryUtilization"} & metrics
        assert "ModelSetupTime" in metrics


def test_a_network_left_out_of_the_stage_gets_no_row() -> None:
    config = parse_stage_config({"solo": {"region": "us-east-1", "networks": ["cnn"]}}, "solo")
    assert set(_metrics_by_endpoint(_dashboard(config))) == {naming.endpoint_name(config.prefix(), "cnn")}
