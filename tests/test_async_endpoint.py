"""An asynchronous endpoint on the templates (a stage with `endpoint.async_inference`): its
AsyncInferenceConfig is a request SageMaker's API model knows (botocore), with its own success and
error topics encrypted with the project key; it scales to zero, on ApproximateBacklogSizePerInstance,
and out from zero on HasBacklogWithoutCapacity (Application Auto Scaling's own shapes); the
execution role may publish to the two topics and read and write the async prefix, nothing more.
moto skips autoscaling and alarms, so they are asserted here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from synth_support import CDK_CONTEXT, app_module, new_app, served_version_arn
from test_pipeline_definition import check_against_shape

from infra import naming
from infra.config import ConfigError, load_stage_config, parse_stage_config
from infra.nag import flatten_cfn_reference

# slow: synthesizes the whole app with an endpoint.
pytestmark = pytest.mark.slow

NETWORK = "cnn"
ENDPOINT = naming.endpoint_name("mlops-local", NETWORK)
SESSION = botocore.session.get_session()


@pytest.fixture(scope="module")
def template() -> Iterator[dict[str, dict[str, Any]]]:
    """The local stage with an asynchronous endpoint: every stack's template, by name."""
    stages = {**CDK_CONTEXT["stages"]}
    endpoint = {
        **stages["local"]["endpoint"],
        "max_instances": 3,
        "async_inference": {"target_backlog_per_instance": 4},
    }
    stages["local"] = {**stages["local"], "endpoint": endpoint}
    outdir = Path(tempfile.mkdtemp(prefix="synth-async-"))
    try:
        app = new_app(
            "local",
            outdir,
            stages=stages,
            **{naming.model_package_context_key(NETWORK): served_version_arn("local", NETWORK, 1)},
        )
        app_module().compose(app, load_stage_config(app.node))
        assembly = app.synth()  # with cdk-nag, which raises on any finding
        yield {stack.stack_name: stack.template for stack in assembly.stacks}
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def as_api(value: Any) -> Any:
    """A template value with CloudFormation's functions as the strings they resolve to."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
            return "<resolved at deploy>"
        return {key: as_api(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_api(item) for item in value]
    return value


def test_the_async_config_is_sagemakers_with_two_encrypted_topics_of_its_own(template) -> None:
    endpoint = template["mlops-local-endpoint-cnn"]
    ((config,),) = [[item["Properties"]] for item in of_type(endpoint, "AWS::SageMaker::EndpointConfig").values()]
    asynchronous = config["AsyncInferenceConfig"]
    check_against_shape(
        as_api(asynchronous), SESSION.get_service_model("sagemaker").shape_for("AsyncInferenceConfig"), "config"
    )
    output = asynchronous["OutputConfig"]
    assert output["S3OutputPath"].endswith(f"/async-inference/{NETWORK}/output/")
    assert output["S3FailurePath"].endswith(f"/async-inference/{NETWORK}/failures/")
    assert output["KmsKeyId"] == config["KmsKeyId"]
    assert asynchronous["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 4}
    topics = of_type(endpoint, "AWS::SNS::Topic")
    notification = output["NotificationConfig"]
    assert {notification["SuccessTopic"]["Ref"], notification["ErrorTopic"]["Ref"]} == set(topics)
    assert notification["SuccessTopic"] != notification["ErrorTopic"]
    names = {topic["Properties"]["TopicName"] for topic in topics.values()}
    assert names == {f"{ENDPOINT}-async-success", f"{ENDPOINT}-async-errors"}
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"] == config["KmsKeyId"]
    policies = of_type(endpoint, "AWS::SNS::TopicPolicy").values()
    assert sorted(ref["Ref"] for policy in policies for ref in policy["Properties"]["Topics"]) == sorted(topics)
    for policy in policies:
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_it_scales_to_zero_on_its_backlog_and_out_from_zero_on_a_backlog_without_capacity(template) -> None:
    endpoint = template["mlops-local-endpoint-cnn"]
    (target,) = of_type(endpoint, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (0, 3)
    policies = {
        item["Properties"]["PolicyType"]: (key, item["Properties"])
        for key, item in of_type(endpoint, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
    }
    assert set(policies) == {"TargetTrackingScaling", "StepScaling"}
    autoscaling = SESSION.get_service_model("application-autoscaling")
    _, tracking = policies["TargetTrackingScaling"]
    configuration = tracking["TargetTrackingScalingPolicyConfiguration"]
    check_against_shape(as_api(configuration), autoscaling.shape_for("TargetTrackingScalingPolicyConfiguration"), "tt")
    assert configuration["CustomizedMetricSpecification"] == {
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
        "Statistic": "Average",
    }
    assert configuration["TargetValue"] == 4
    step_id, step = policies["StepScaling"]
    configuration = step["StepScalingPolicyConfiguration"]
    check_against_shape(as_api(configuration), autoscaling.shape_for("StepScalingPolicyConfiguration"), "step")
    assert configuration["AdjustmentType"] == "ChangeInCapacity"
    assert [adjustment["ScalingAdjustment"] for adjustment in configuration["StepAdjustments"]] == [1]
    alarms = [
        alarm["Properties"]
        for alarm in of_type(endpoint, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == "HasBacklogWithoutCapacity"
    ]
    (alarm,) = alarms
    assert alarm["Namespace"] == "AWS/SageMaker" and alarm["Dimensions"] == [
        {"Name": "EndpointName", "Value": ENDPOINT}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
        2,
    )
    assert alarm["AlarmActions"] == [{"Ref": step_id}]
    # No invocations-per-instance policy: with the queue in front, invocations do not measure load.
    assert "PredefinedMetricSpecification" not in str(policies)


def test_the_execution_role_publishes_to_the_topics_and_uses_the_async_prefix_only(template) -> None:
    role_stack = template["mlops-local-execution-role"]
    statements = {
        statement.get("Sid"): statement
        for policy in of_type(role_stack, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    publish = statements["PublishAsyncInferenceNotifications"]
    assert publish["Action"] == "sns:Publish"
    config = parse_stage_config(CDK_CONTEXT["stages"], "local")
    assert {flatten_cfn_reference(resource) for resource in publish["Resource"]} == {
        f"arn:<AWS::Partition>:sns:us-east-1:123456789012:{naming.async_topic_name(endpoint, outcome)}"
        for endpoint in (naming.endpoint_name(config.prefix(), network) for network in config.networks)
        for outcome in naming.ASYNC_OUTCOMES
    }
    access = statements["ReadWriteAsyncInference"]
    assert flatten_cfn_reference(access["Resource"]) == (
        "arn:<AWS::Partition>:s3:::mlops-local-artifacts-123456789012-us-east-1/async-inference/*"
    )


def test_an_async_endpoint_cannot_be_serverless() -> None:
    raw = {**CDK_CONTEXT["stages"]["dev"]}
    raw["endpoint"] = {**raw["endpoint"], "async_inference": {}}
    with pytest.raises(ConfigError, match="async_inference cannot be combined with serverless"):
        parse_stage_config({"dev": raw}, "dev")
