"""Endpoint stacks as `app.py` composes them: one synth per stage, shared by every test here.

prod: instance-backed, two or more instances (canary). local: one instance (all at once).
dev: serverless. moto skips alarms and autoscaling, so those are asserted on the template;
the model, endpoint config and endpoint are also created in moto from the unmodified template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from cfnlint.api import lint_file
from moto import mock_aws
from synth_support import app_module, new_app, served_version_arn

from infra import naming
from infra.config import ConfigError, StageConfig, load_stage_config

# slow: synthesizes the endpoint stacks of every stage.
pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"
NETWORK = "cnn"


def package_arn(stage: str, version: int = 3, network: str = NETWORK) -> str:
    return served_version_arn(stage, network, version, ACCOUNT)


def compose(stage: str, outdir: Path, **extra_context: str) -> tuple[cdk.App, StageConfig]:
    app = new_app(stage, outdir, **extra_context)
    config = load_stage_config(app.node)
    app_module().compose(app, config)
    return app, config


class Synth:
    """A stage synthesized (with the cdk-nag checks, which raise on any finding) with an endpoint."""

    def __init__(self, stage: str, outdir: Path, networks: tuple[str, ...] = (NETWORK,)) -> None:
        app, self.config = compose(
            stage,
            outdir,
            **{naming.model_package_context_key(network): package_arn(stage, network=network) for network in networks},
        )
        self.assembly = app.synth()
        self.outdir = outdir
        self.prefix = self.config.prefix()

    def template(self, stack_name: str) -> dict:
        return self.assembly.get_stack_by_name(stack_name).template

    @property
    def endpoint_template(self) -> dict:
        return self.template(naming.endpoint_stack_name(self.prefix, NETWORK))

    def resources(self, resource_type: str) -> dict[str, dict]:
        return {
            logical_id: resource
            for logical_id, resource in self.endpoint_template["Resources"].items()
            if resource["Type"] == resource_type
        }

    def only(self, resource_type: str) -> tuple[str, dict]:
        (found,) = self.resources(resource_type).items()
        return found[0], found[1]["Properties"]


@pytest.fixture(scope="module")
def synths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synth]:
    return {
        "prod": Synth("prod", tmp_path_factory.mktemp("synth-prod"), networks=(NETWORK, "rnn")),
        **{stage: Synth(stage, tmp_path_factory.mktemp(f"synth-{stage}")) for stage in ("local", "dev")},
    }


def render(value: Any) -> Any:
    """A template value as text: joins resolved, pseudo parameters shown as `${AWS::...}`."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(render(part)) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"].startswith("AWS::"):
        return "${" + value["Ref"] + "}"
    return value


def imported_export(synth: Synth, value: dict, producer_suffix: str, output_of: str) -> None:
    """`value` imports the export that the producer stack defines for `output_of` (a GetAtt target)."""
    producer = synth.template(naming.stack_name(synth.prefix, producer_suffix))
    exports = {
        output["Export"]["Name"]: output["Value"] for output in producer["Outputs"].values() if "Export" in output
    }
    assert value["Fn::ImportValue"] in exports
    assert exports[value["Fn::ImportValue"]]["Fn::GetAtt"][0].startswith(output_of)


# --- the model and the endpoint config -------------------------------------------------------


@pytest.mark.parametrize("stage", ["prod", "local", "dev"])
def test_model_serves_the_approved_package_as_the_execution_role(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    _, model = synth.only("AWS::SageMaker::Model")
    assert model["PrimaryContainer"] == {"ModelPackageName": package_arn(stage)}
    imported_export(synth, model["ExecutionRoleArn"], "execution-role", "SageMakerExecutionRole")
    # The container starts with no network: code/lib, not a pip install, brings the handlers' packages.
    assert model["EnableNetworkIsolation"] is True


@pytest.mark.parametrize("stage", ["prod", "local"])
def test_instance_variant_and_data_capture_from_stage_config(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    endpoint = synth.config.endpoint
    model_id, _ = synth.only("AWS::SageMaker::Model")
    _, config = synth.only("AWS::SageMaker::EndpointConfig")

    (variant,) = config["ProductionVariants"]
    assert variant == {
        "VariantName": "AllTraffic",
        "ModelName": {"Fn::GetAtt": [model_id, "ModelName"]},
        "InstanceType": synth.config.endpoint_instance_type(NETWORK),
        "InitialInstanceCount": endpoint.initial_instance_count,
        "InitialVariantWeight": 1,
    }

    imported_export(synth, config["KmsKeyId"], "storage", "ProjectKey")
    capture = config["DataCaptureConfig"]
    assert capture["KmsKeyId"] == config["KmsKeyId"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == endpoint.data_capture_percent
    assert render(capture["DestinationS3Uri"]) == (
        f"s3://{synth.prefix}-artifacts-{synth.config.account or '${AWS::AccountId}'}-us-east-1/data-capture/cnn/"
    )
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}


def test_csv_requests_are_captured_as_text_too(synths: dict[str, Synth]) -> None:
    # rnn accepts text/csv; cnn's PNG/JPEG requests are stored base64-encoded instead.
    template = synths["prod"].template(naming.endpoint_stack_name("mlops-prod", "rnn"))
    (config,) = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::EndpointConfig"
    ]
    assert config["DataCaptureConfig"]["CaptureContentTypeHeader"] == {
        "JsonContentTypes": ["application/json"],
        "CsvContentTypes": ["text/csv"],
    }
    assert render(config["DataCaptureConfig"]["DestinationS3Uri"]).endswith("/data-capture/rnn/")


# --- blue/green with rollback alarms ---------------------------------------------------------


def _alarms(synth: Synth) -> dict[str, dict]:
    """Alarm properties (plus the logical `id`) by metric name."""
    return {
        alarm["Properties"]["MetricName"]: {"id": logical_id, **alarm["Properties"]}
        for logical_id, alarm in synth.resources("AWS::CloudWatch::Alarm").items()
    }


@pytest.mark.parametrize("stage", ["prod", "local"])
def test_rollback_alarms_watch_the_models_own_failures_and_latency(synths: dict[str, Synth], stage: str) -> None:
    """Not Invocation5XXErrors, which a client's malformed requests raise too (the container answers
    them 500): the metric filter's count of the handler's model failures (tests/test_rollback_alarm.py
    sends the traffic)."""
    synth = synths[stage]
    name = naming.endpoint_name(synth.prefix, NETWORK)
    alarms = _alarms(synth)
    assert set(alarms) == {"ModelFailures", "ModelLatency"}
    for alarm in alarms.values():
        assert alarm["Period"] == 60
        assert alarm["TreatMissingData"] == "notBreaching"

    failures, latency = alarms["ModelFailures"], alarms["ModelLatency"]
    assert (failures["Statistic"], failures["Threshold"], failures["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert failures["Namespace"] == naming.handler_metric_namespace(name) and "Dimensions" not in failures
    assert latency["Namespace"] == "AWS/SageMaker"
    assert latency["Dimensions"] == [
        {"Name": "EndpointName", "Value": name},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    # ModelLatency is in microseconds; the stage configures milliseconds.
    assert latency["Threshold"] == synth.config.endpoint.latency_alarm_ms * 1000
    assert (latency["ExtendedStatistic"], latency["ComparisonOperator"]) == ("p90", "GreaterThanThreshold")

    _, endpoint = synth.only("AWS::SageMaker::Endpoint")
    rollback = endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert sorted(alarm["AlarmName"]["Ref"] for alarm in rollback) == sorted(a["id"] for a in alarms.values())


@pytest.mark.parametrize("stage", ["prod", "local", "dev"])
def test_the_endpoint_log_group_is_created_encrypted_with_the_handler_outcome_filters(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    name = naming.endpoint_name(synth.prefix, NETWORK)
    group_id, group = synth.only("AWS::Logs::LogGroup")
    assert group["LogGroupName"] == naming.endpoint_log_group_name(name)
    assert group["RetentionInDays"] == 365
    imported_export(synth, group["KmsKeyId"], "storage", "ProjectKey")
    filters = {
        f["Properties"]["MetricTransformations"][0]["MetricName"]: f["Properties"]
        for f in synth.resources("AWS::Logs::MetricFilter").values()
    }
    assert set(filters) == {"ModelFailures", "BadInput"}
    for metric, outcome in (("ModelFailures", "model_failure"), ("BadInput", "bad_input")):
        assert filters[metric]["LogGroupName"] == {"Ref": group_id}
        assert filters[metric]["FilterPattern"] == f'{{ $.handler_outcome = "{outcome}" }}'
    # Created before the endpoint, which would otherwise have SageMaker create the group first.
    endpoint_id, _ = synth.only("AWS::SageMaker::Endpoint")
    assert group_id in synth.endpoint_template["Resources"][endpoint_id]["DependsOn"]


def test_prod_shifts_a_one_instance_canary_and_bakes(synths: dict[str, Synth]) -> None:
    _, endpoint = synths["prod"].only("AWS::SageMaker::Endpoint")
    policy = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
        "WaitIntervalInSeconds": 600,
    }
    assert policy["TerminationWaitInSeconds"] > 0
    # SageMaker requires the timeout to exceed the waits it contains.
    assert policy["MaximumExecutionTimeoutInSeconds"] > 2 * 600 + policy["TerminationWaitInSeconds"]


def test_a_one_instance_fleet_shifts_all_at_once_and_still_bakes(synths: dict[str, Synth]) -> None:
    assert synths["local"].config.endpoint.min_instances == 1
    _, endpoint = synths["local"].only("AWS::SageMaker::Endpoint")
    routing = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}


def test_endpoint_has_the_shared_name_and_uses_the_config(synths: dict[str, Synth]) -> None:
    synth = synths["prod"]
    config_id, _ = synth.only("AWS::SageMaker::EndpointConfig")
    _, endpoint = synth.only("AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == "mlops-prod-cnn" == naming.endpoint_name(synth.prefix, NETWORK)
    assert endpoint["EndpointConfigName"] == {"Fn::GetAtt": [config_id, "EndpointConfigName"]}


@pytest.mark.parametrize("stage", ["prod", "local"])
def test_an_update_keeps_the_scaled_instance_count_only(synths: dict[str, Synth], stage: str) -> None:
    _, endpoint = synths[stage].only("AWS::SageMaker::Endpoint")
    assert endpoint["RetainAllVariantProperties"] is True
    assert endpoint["ExcludeRetainedVariantProperties"] == [
        {"VariantPropertyType": "DesiredWeight"},
        {"VariantPropertyType": "DataCaptureConfig"},
    ]


# --- autoscaling ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["prod", "local"])
def test_target_tracking_on_invocations_per_instance_of_the_variant(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    endpoint = synth.config.endpoint
    target_id, target = synth.only("AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ResourceId"] == f"endpoint/{synth.prefix}-cnn/variant/AllTraffic"
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == (
        "sagemaker",
        "sagemaker:variant:DesiredInstanceCount",
    )
    assert (target["MinCapacity"], target["MaxCapacity"]) == (endpoint.min_instances, endpoint.max_instances)
    assert render(target["RoleARN"]).endswith(
        ":role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )
    # The variant has to exist before it can be registered.
    endpoint_id, _ = synth.only("AWS::SageMaker::Endpoint")
    assert endpoint_id in synth.endpoint_template["Resources"][target_id]["DependsOn"]

    _, policy = synth.only("AWS::ApplicationAutoScaling::ScalingPolicy")
    assert policy["ScalingTargetId"] == {"Ref": target_id}
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == endpoint.target_invocations_per_instance
    assert tracking["ScaleInCooldown"] > tracking["ScaleOutCooldown"] > 0
    # The one role of the stack is its drift monitor schedule's (tests/test_drift_stacks.py).
    assert [logical_id[: len("MonitorSchedule")] for logical_id in synth.resources("AWS::IAM::Role")] == [
        "MonitorSchedule"
    ]


# --- serverless -------------------------------------------------------------------------------


def test_serverless_stage_has_none_of_the_instance_only_features(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    serverless = synth.config.endpoint.serverless
    assert serverless is not None
    _, config = synth.only("AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": serverless.memory_size_mb,
        "MaxConcurrency": serverless.max_concurrency,
    }
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert "DataCaptureConfig" not in config
    imported_export(synth, config["KmsKeyId"], "storage", "ProjectKey")

    _, endpoint = synth.only("AWS::SageMaker::Endpoint")
    assert set(endpoint) == {"EndpointName", "EndpointConfigName", "Tags"}
    assert {resource["Type"] for resource in synth.endpoint_template["Resources"].values()} == {
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
        "AWS::Logs::LogGroup",  # and its metric filters: the handler's outcomes are counted there too
        "AWS::Logs::MetricFilter",
    }


# --- when the app has an endpoint stack -------------------------------------------------------


def test_no_endpoint_stack_without_an_approved_package(tmp_path: Path) -> None:
    app, config = compose("local", tmp_path)
    stack_names = {child.node.id for child in app.node.children if isinstance(child, cdk.Stack)}
    assert naming.monitoring_stack_name(config.prefix()) in stack_names
    assert not [name for name in stack_names if "-endpoint-" in name]


def test_storage_and_role_templates_do_not_depend_on_endpoint_stacks(synths: dict[str, Synth], tmp_path: Path) -> None:
    # `mlops deploy` deploys the endpoint stack alone: its imports must already be exported.
    app, config = compose("prod", tmp_path)
    assembly = app.synth()
    for suffix in ("storage", "execution-role"):
        name = naming.stack_name(config.prefix(), suffix)
        assert assembly.get_stack_by_name(name).template == synths["prod"].template(name)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"model_package.lstm": package_arn("local")}, "model_package.lstm: not a network of stage local"),
        ({"model_package.cnn": "mlops-local-cnn/3"}, "model_package.cnn: expected a model package version ARN"),
        ({"model_package.cnn": package_arn("local", network="rnn")}, "is a version of mlops-local-rnn"),
    ],
)
def test_bad_model_package_context_names_the_key(context: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        compose("local", tmp_path, **context)


# --- cdk-nag, cfn-lint, moto ------------------------------------------------------------------


def test_cdk_nag_clean_with_no_acknowledgement_for_these_stacks(synths: dict[str, Synth]) -> None:
    # Synth already raised on any unacknowledged finding; the report also lists acknowledged ones.
    for synth in synths.values():
        report = json.loads((synth.outdir / "validation-report.json").read_text())
        (nag,) = report["pluginReports"]
        assert nag["conclusion"] == "success"
        ours = (naming.endpoint_stack_name(synth.prefix, NETWORK), naming.monitoring_stack_name(synth.prefix))
        acknowledged_here = [
            violation["ruleName"]
            for violation in nag["suppressedViolations"]
            for construct in violation["violatingConstructs"]
            if construct["constructPath"].startswith(ours)
        ]
        assert not acknowledged_here


def test_cfn_lint_clean(synths: dict[str, Synth]) -> None:
    templates = [
        template
        for synth in synths.values()
        for pattern in ("*-endpoint-*", "*-monitoring")
        for template in synth.outdir.glob(f"{pattern}.template.json")
    ]
    assert len(templates) == 7
    findings = [f"{template.name}: {match}" for template in templates for match in lint_file(template)]
    assert not findings


def test_endpoint_stack_creates_in_moto(synths: dict[str, Synth]) -> None:
    """The unmodified local template, its imports served by a stand-in producer stack."""
    synth = synths["local"]
    template = synth.endpoint_template
    imports = sorted({json.dumps(value) for value in _find_imports(template)})
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        group = naming.model_package_group_name(synth.prefix, NETWORK)
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
        for _ in range(3):
            registered = sagemaker.create_model_package(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                InferenceSpecification=_inference_specification(),
            )["ModelPackageArn"]
        assert registered == package_arn("local")

        role_arn = boto3.client("iam").create_role(RoleName="execution", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        key_arn = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
        values = {"SageMakerExecutionRole": role_arn, "ProjectKey": key_arn}
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="producer", TemplateBody=json.dumps(_producer_of(imports, values)))

        name = naming.endpoint_stack_name(synth.prefix, NETWORK)
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[
                {
                    "ParameterKey": "MonitoredModelDataUrl",
                    "ParameterValue": "s3://artifacts/models/cnn/job/model.tar.gz",
                },
                {
                    "ParameterKey": "MonitoredBaselineUri",
                    "ParameterValue": "s3://artifacts/pipelines/cnn/x/baseline.json",
                },
            ],
        )
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"

        # moto lists the resources it skipped too, with an empty type.
        created = {
            r["ResourceType"]
            for r in cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
            if r["ResourceType"]
        }
        assert created == {
            "AWS::SageMaker::Model",
            "AWS::SageMaker::EndpointConfig",
            "AWS::SageMaker::Endpoint",
            "AWS::IAM::Role",
            "AWS::Events::Rule",
            "AWS::Logs::LogGroup",
        }
        # What moto skips (alarms, autoscaling) is asserted on the template above.
        skipped = {r["Type"] for r in template["Resources"].values()} - created
        assert skipped == {
            "AWS::CloudWatch::Alarm",
            "AWS::ApplicationAutoScaling::ScalableTarget",
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            "AWS::Logs::MetricFilter",  # tests/test_rollback_alarm.py evaluates it from the template
        }

        outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
        assert outputs["ModelPackageArn"] == registered
        endpoint = sagemaker.describe_endpoint(EndpointName=outputs["EndpointName"])
        assert endpoint["EndpointStatus"] == "InService"
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        assert config["KmsKeyId"] == key_arn == config["DataCaptureConfig"]["KmsKeyId"]
        assert config["DataCaptureConfig"]["DestinationS3Uri"] == (
            f"s3://mlops-local-artifacts-{ACCOUNT}-us-east-1/data-capture/cnn/"
        )
        (variant,) = config["ProductionVariants"]
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        assert model["PrimaryContainer"]["ModelPackageName"] == registered
        assert model["ExecutionRoleArn"] == role_arn


def _inference_specification() -> dict:
    return {
        "Containers": [
            {
                "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19-cpu",
                "ModelDataUrl": "s3://bucket/models/model.tar.gz",
            }
        ],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }


def _find_imports(value: Any) -> list[dict]:
    if isinstance(value, dict):
        if set(value) == {"Fn::ImportValue"}:
            return [value]
        return [found for item in value.values() for found in _find_imports(item)]
    if isinstance(value, list):
        return [found for item in value for found in _find_imports(item)]
    return []


def _producer_of(imports: list[str], values: dict[str, str]) -> dict:
    """A stack exporting each imported name with the value of the resource the name refers to."""
    outputs = {}
    for index, text in enumerate(imports):
        export = json.loads(text)["Fn::ImportValue"]
        (value,) = [value for resource, value in values.items() if f"FnGetAtt{resource}" in export]
        outputs[f"Export{index}"] = {"Value": value, "Export": {"Name": export}}
    return {"Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
