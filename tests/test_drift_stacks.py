"""The drift monitor on the templates (moto skips pipelines and alarms, and evaluates neither alarms
nor rules): per network a monitor pipeline, an alarm on its DriftScore, a rule that starts the
network's training pipeline on that alarm (in prod, which trains nothing, dev's pipeline:
tests/test_retraining_across_accounts.py), and, in the endpoint stack, the schedule that runs the
monitor on the served version. Each wired to the right pipeline, each role scoped to it.
"""

from __future__ import annotations

import json
import re

import pytest
from synth_support import synthesized
from test_endpoint_stack import Synth
from test_pipeline_definition import SAGEMAKER, SAMPLE_VALUES, check_against_shape, expressions, stage
from test_pipeline_stack import PARTITION_ACCOUNT, Pipelines, account, resources

from drift import threshold_score
from infra import naming
from infra.constructs.training_pipeline import bundle_file_name
from infra.definitions import monitor_pipeline as definition
from infra.definitions import training_pipeline as training_definition
from infra.definitions.training_pipeline import substitute_placeholders
from infra.images import training_image_uri
from infra.nag import flatten_cfn_reference
from training.networks import get_network

NETWORK = "cnn"


@pytest.fixture(scope="module", params=["local", "prod"])
def pipelines(request: pytest.FixtureRequest) -> Pipelines:
    return Pipelines(synthesized(request.param))


def pipeline_arn(pipelines: Pipelines, name: str) -> str:
    return PARTITION_ACCOUNT.format(account=account(pipelines.synth)) + f":pipeline/{name}"


@pytest.mark.slow
def test_every_network_has_a_monitor_pipeline_running_its_jobs_as_the_execution_role(pipelines: Pipelines) -> None:
    config = pipelines.synth.config
    for network in config.networks:
        monitor = pipelines.stack.drift_monitors[network]
        pipeline = pipelines.resource(monitor.pipeline)["Properties"]
        assert pipeline["PipelineName"] == naming.monitor_pipeline_name(config.prefix(), network)
        assert pipeline["RoleArn"] == {"Fn::GetAtt": [pipelines.logical_id(monitor.role), "Arn"]}
        body, values = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        assert body == definition.monitor_definition_body(config, network)
        steps = {step["Name"]: step["Arguments"] for step in json.loads(body)["Steps"]}
        assert {arguments["RoleArn"] for arguments in steps.values()} == {"${ExecutionRoleArn}"}
        # The stage's own role, bucket, key and code bundle, and the training image.
        stack, stacks = pipelines.stack, pipelines.synth.stacks
        assert values == {
            training_definition.ARTIFACTS_BUCKET: stack.resolve(stacks.storage.artifacts.bucket_name),
            training_definition.EXECUTION_ROLE_ARN: stack.resolve(stacks.execution_role.execution_role.role_arn),
            training_definition.KEY_ARN: stack.resolve(stacks.storage.key.key_arn),
            training_definition.SOURCE_BUNDLE_URI: stack.resolve(stack.source_bundle.s3_object_url),
            training_definition.SOURCE_BUNDLE_FILE: bundle_file_name(stack.source_bundle),
            training_definition.TRAINING_IMAGE_URI: training_image_uri(
                config.region, config.training_instance_type(network)
            ),
        }
        assert steps[definition.COLLECT_STEP]["Environment"]["CAPTURE_URI"] == (
            f"s3://${{ArtifactsBucket}}/data-capture/{network}/{naming.endpoint_name(config.prefix(), network)}"
            "/AllTraffic/"
        )


@pytest.mark.slow
def test_the_monitor_pipeline_role_may_only_run_its_jobs(pipelines: Pipelines) -> None:
    monitor = pipelines.stack.drift_monitors[NETWORK]
    statements = pipelines.role_statements(monitor.role)
    assert set(statements) == {"RunMonitoringJobs", "PassExecutionRoleToSageMaker", "EncryptJobVolumesWithProjectKey"}
    (jobs,) = statements["RunMonitoringJobs"]
    assert flatten_cfn_reference(jobs["Resource"]) == (
        f"arn:<AWS::Partition>:sagemaker:us-east-1:{account(pipelines.synth)}:processing-job/pipelines-*"
    )
    assert not any(
        action.startswith("sagemaker:CreateTraining") or action == "sagemaker:CreateModelPackage"
        for statement in statements.values()
        for item in statement
        for action in (item["Action"] if isinstance(item["Action"], list) else [item["Action"]])
    )
    (passing,) = statements["PassExecutionRoleToSageMaker"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


@pytest.mark.slow
def test_the_alarm_watches_the_networks_drift_score_at_the_monitors_threshold(pipelines: Pipelines) -> None:
    config = pipelines.synth.config
    for network in config.networks:
        alarm = pipelines.resource(pipelines.stack.drift_monitors[network].alarm)["Properties"]
        assert alarm["AlarmName"] == naming.drift_alarm_name(config.prefix(), network)
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == (
            f"{config.prefix()}/drift",
            "DriftScore",
            [{"Name": "Network", "Value": network}],
        )
        assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", config.monitor.window_minutes * 60)
        # The job's own score of a p-value at alpha (training/drift.py), not a second formula's.
        assert alarm["Threshold"] == pytest.approx(threshold_score(config.monitor.alpha))
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["TreatMissingData"]) == (
            1,
            1,
            "notBreaching",
        )


@pytest.mark.slow
def test_in_a_stage_that_trains_the_alarm_starts_the_networks_training_pipeline_through_its_own_trigger_role() -> None:
    """Where the alarm goes in a stage that promotes from another, and trains nothing:
    tests/test_retraining_across_accounts.py."""
    pipelines = Pipelines(synthesized("local"))
    config = pipelines.synth.config
    assert config.trains
    for network in config.networks:
        monitor = pipelines.stack.drift_monitors[network]
        rule = pipelines.resource(monitor.retrain_rule)["Properties"]
        assert rule["EventPattern"] == {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": [naming.drift_alarm_name(config.prefix(), network)], "state": {"value": ["ALARM"]}},
        }
        (target,) = rule["Targets"]
        assert flatten_cfn_reference(target["Arn"]) == pipeline_arn(
            pipelines, naming.pipeline_name(config.prefix(), network)
        )
        training = pipelines.stack.pipelines[network]
        (new_data_target,) = pipelines.resource(training.new_data_rule)["Properties"]["Targets"]
        assert target["RoleArn"] == new_data_target["RoleArn"]  # the role that may start only that pipeline


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return Synth("prod", tmp_path_factory.mktemp("drift-endpoints"), networks=("cnn", "rnn"))


@pytest.mark.slow
@pytest.mark.parametrize("network", ["cnn", "rnn"])
def test_the_endpoint_stack_schedules_its_networks_monitor_with_the_served_version(
    endpoints: Synth, network: str
) -> None:
    synth = endpoints
    template = synth.template(naming.endpoint_stack_name(synth.prefix, network))
    assert set(template["Parameters"]) >= {"MonitoredModelDataUrl", "MonitoredBaselineUri"}
    (rule,) = [resource["Properties"] for resource in resources(template, "AWS::Events::Rule").values()]
    assert rule["ScheduleExpression"] == synth.config.monitor.schedule == "rate(1 hour)"
    (target,) = rule["Targets"]
    monitor = naming.monitor_pipeline_name(synth.prefix, network)
    assert (
        flatten_cfn_reference(target["Arn"])
        == f"arn:<AWS::Partition>:sagemaker:us-east-1:{synth.config.account or '<AWS::AccountId>'}:pipeline/{monitor}"
    )
    assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [
        {"Name": "ModelDataUrl", "Value": {"Ref": "MonitoredModelDataUrl"}},
        {"Name": "BaselineUri", "Value": {"Ref": "MonitoredBaselineUri"}},
    ]
    role = template["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    (policy,) = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Action": "sagemaker:StartPipelineExecution", "Effect": "Allow", "Resource": target["Arn"]}
    ]


@pytest.mark.slow
def test_a_stage_without_data_capture_has_no_monitor() -> None:
    dev = synthesized("dev")
    assert not dev.config.captures_data  # serverless endpoints cannot capture
    template = dev.template_json(dev.stacks.pipelines)
    assert not resources(template, "AWS::CloudWatch::Alarm")
    names = [
        resource["Properties"]["PipelineName"] for resource in resources(template, "AWS::SageMaker::Pipeline").values()
    ]
    assert names and not [name for name in names if name.endswith("-monitor")]


@pytest.mark.parametrize("name", ["local", "prod"])
def test_the_monitor_definition_is_a_valid_request_whose_references_resolve(name: str) -> None:
    config = stage(name)
    body = definition.monitor_definition_body(config, NETWORK)
    assert body == definition.monitor_definition_body(config, NETWORK)  # deterministic
    assert set(re.findall(r"\$\{([A-Za-z]+)\}", body)) <= set(SAMPLE_VALUES)
    # Fn::Sub takes every ${...}: the bundle's name is the one meant for it.
    for command in (
        definition.collect_command(config),
        definition.monitor_command(config, get_network(NETWORK)),
        definition.publish_command(config),
    ):
        assert re.findall(r"\$\{([^}]*)\}", command) == ["SourceBundleFile"], command
    document = json.loads(substitute_placeholders(body, SAMPLE_VALUES))
    outputs: set[tuple[str, str]] = set()
    for step in document["Steps"]:
        check_against_shape(step["Arguments"], SAGEMAKER.shape_for("CreateProcessingJobRequest"), step["Name"])
        # A step reads only outputs of the steps before it.
        for reference in expressions(step, "Get"):
            if reference.startswith("Steps."):
                match = re.fullmatch(r"Steps\.(\w+)\.ProcessingOutputConfig\.Outputs\['(\w+)'\].*", reference)
                assert match, reference
                name, output = match.groups()
                assert (name, output) in outputs, reference
        for output in step["Arguments"].get("ProcessingOutputConfig", {}).get("Outputs", []):
            outputs.add((step["Name"], output["OutputName"]))
    parameters = {parameter["Name"] for parameter in document["Parameters"]}
    used = {
        reference.split(".", 1)[1] for reference in expressions(document, "Get") if reference.startswith("Parameters.")
    }
    assert used == parameters


@pytest.mark.parametrize("name", ["local", "prod"])
def test_the_monitor_is_isolated_as_the_stage_says_and_the_steps_around_it_have_a_network(name: str) -> None:
    """The Monitor runs the served handler on captured traffic: it takes the stage's isolation, as
    Evaluate does, and gets its captures as an input; listing the window and publishing the
    metrics need S3 and CloudWatch, so the steps that do them are never isolated."""
    config = stage(name)
    steps = {step["Name"]: step["Arguments"] for step in definition.monitor_definition(config, NETWORK)["Steps"]}
    isolation = {step: arguments["NetworkConfig"]["EnableNetworkIsolation"] for step, arguments in steps.items()}
    assert isolation == {
        definition.COLLECT_STEP: False,
        definition.MONITOR_STEP: config.training.network_isolation,
        definition.PUBLISH_STEP: False,
    }
    inputs = {
        item["InputName"]: item["S3Input"]["S3Uri"] for item in steps[definition.MONITOR_STEP]["ProcessingInputs"]
    }
    assert inputs["captures"] == {
        "Get": "Steps.CollectCaptures.ProcessingOutputConfig.Outputs['captures'].S3Output.S3Uri"
    }
    assert "s3://" not in definition.monitor_command(config, get_network(NETWORK))
