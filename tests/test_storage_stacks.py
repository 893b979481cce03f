"""The storage and execution-role stacks, asserted on the synthesized templates.

Everything moto skips or ignores (bucket policies, versioning, public access blocks,
lifecycle rules, IAM semantics) is only checked here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk.assertions import Template
from synth_support import CDK_CONTEXT, Synthesized, logical_id_of, new_app, synthesized

from infra.config import parse_stage_config
from infra.constructs.artifacts_bucket import ArtifactsBucket
from infra.constructs.buckets import bucket_name
from infra.constructs.data_bucket import DataBucket, channel_prefix, network_prefix
from infra.nag import flatten_cfn_reference
from infra.source_bundle import build_source_bundle
from infra.stacks.execution_role_stack import ExecutionRoleStack
from infra.stacks.storage_stack import StorageStack
from mlops.local.authorization import Where, authorized_resources

STAGES = ("local", "dev", "prod")


def _resources(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_statements(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            statements += properties["PolicyDocument"]["Statement"]
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                statements += policy["PolicyDocument"]["Statement"]
    return statements


def _flat(value: Any) -> str:
    return flatten_cfn_reference(value)


class Storage:
    """The storage stack's template, with its resources found by construct, not by logical id."""

    def __init__(self, synth: Synthesized) -> None:
        self.synth = synth
        stack: StorageStack = synth.stacks.storage
        self.json = synth.template_json(stack)
        self.key_id = logical_id_of(stack.key.key)
        self.buckets = {
            purpose: logical_id_of(construct.bucket)
            for purpose, construct in (
                ("data", stack.data),
                ("artifacts", stack.artifacts),
                ("access-logs", stack.access_logs),
            )
        }

    def bucket(self, purpose: str) -> dict[str, Any]:
        return self.json["Resources"][self.buckets[purpose]]

    def bucket_policy(self, purpose: str) -> list[dict[str, Any]]:
        (policy,) = [
            resource
            for resource in _resources(self.json, "AWS::S3::BucketPolicy").values()
            if resource["Properties"]["Bucket"] == {"Ref": self.buckets[purpose]}
        ]
        return policy["Properties"]["PolicyDocument"]["Statement"]


@pytest.fixture(scope="module", params=STAGES)
def storage(request: pytest.FixtureRequest) -> Storage:
    return Storage(synthesized(request.param))


@pytest.fixture(scope="module")
def local() -> Synthesized:
    return synthesized("local")


def _role_statements(synth: Synthesized) -> dict[str, dict[str, Any]]:
    statements = _identity_statements(synth.template_json(synth.stacks.execution_role))
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert len(by_sid) == len(statements), "every statement of the role has its own Sid"
    return by_sid


# --- key ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_key_rotates_and_has_the_stage_alias(storage: Storage) -> None:
    assert storage.json["Resources"][storage.key_id]["Properties"]["EnableKeyRotation"] is True
    (alias,) = _resources(storage.json, "AWS::KMS::Alias").values()
    assert alias["Properties"] == {
        "AliasName": f"alias/{storage.synth.config.prefix()}",
        "TargetKeyId": {"Fn::GetAtt": [storage.key_id, "Arn"]},
    }


# --- buckets -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("purpose", ["data", "artifacts", "access-logs"])
def test_bucket_is_private_versioned_and_owner_enforced(storage: Storage, purpose: str) -> None:
    properties = storage.bucket(purpose)["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


@pytest.mark.slow
@pytest.mark.parametrize("purpose", ["data", "artifacts", "access-logs"])
def test_bucket_denies_plain_http_and_old_tls(storage: Storage, purpose: str) -> None:
    bucket_arn = {"Fn::GetAtt": [storage.buckets[purpose], "Arn"]}
    everything = [bucket_arn, {"Fn::Join": ["", [bucket_arn, "/*"]]}]
    denials = [statement for statement in storage.bucket_policy(purpose) if statement["Effect"] == "Deny"]
    assert {
        "Action": "s3:*",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": everything,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    } in denials
    assert {
        "Action": "s3:*",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": everything,
        "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
    } in denials


@pytest.mark.slow
@pytest.mark.parametrize("purpose", ["data", "artifacts"])
def test_project_buckets_use_the_project_key(storage: Storage, purpose: str) -> None:
    assert storage.bucket(purpose)["Properties"]["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "KMSMasterKeyID": {"Fn::GetAtt": [storage.key_id, "Arn"]},
                    "SSEAlgorithm": "aws:kms",
                },
            }
        ]
    }


@pytest.mark.slow
def test_access_log_bucket_uses_sse_s3_because_log_delivery_cannot_use_kms(storage: Storage) -> None:
    assert storage.bucket("access-logs")["Properties"]["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }


@pytest.mark.slow
@pytest.mark.parametrize("purpose", ["data", "artifacts"])
def test_project_buckets_log_into_the_access_log_bucket(storage: Storage, purpose: str) -> None:
    assert storage.bucket(purpose)["Properties"]["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": storage.buckets["access-logs"]},
        "LogFilePrefix": f"{purpose}/",
    }
    delivery = [
        statement
        for statement in storage.bucket_policy("access-logs")
        if statement.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
    ]
    assert {"Fn::GetAtt": [storage.buckets[purpose], "Arn"]} in [
        statement["Condition"]["ArnLike"]["aws:SourceArn"] for statement in delivery
    ]
    assert all(statement["Action"] == "s3:PutObject" and statement["Effect"] == "Allow" for statement in delivery)


@pytest.mark.slow
def test_access_log_bucket_does_not_log_into_itself(storage: Storage) -> None:
    assert "LoggingConfiguration" not in storage.bucket("access-logs")["Properties"]


@pytest.mark.slow
def test_lifecycle_rules_follow_the_stage_config(storage: Storage) -> None:
    config = storage.synth.config
    housekeeping = {
        "Id": "AbortIncompleteUploadsAndExpireOldVersions",
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        "NoncurrentVersionExpiration": {"NoncurrentDays": config.noncurrent_version_expiry_days},
    }

    def rules(purpose: str) -> list[dict[str, Any]]:
        return storage.bucket(purpose)["Properties"]["LifecycleConfiguration"]["Rules"]

    assert rules("data") == [housekeeping]
    assert rules("artifacts") == [
        housekeeping,
        {
            "Id": "ExpireCheckpoints",
            "Status": "Enabled",
            "Prefix": "checkpoints/",
            "ExpirationInDays": config.checkpoint_expiry_days,
        },
        # Each monitor run's copy of its window's captures outlives its run by at most a day.
        {"Id": "ExpireCaptureWindows", "Status": "Enabled", "Prefix": "capture-windows/", "ExpirationInDays": 1},
    ]
    assert rules("access-logs") == [
        housekeeping,
        {"Id": "ExpireAccessLogs", "Status": "Enabled", "ExpirationInDays": config.log_retention_days},
    ]


@pytest.mark.slow
def test_removal_policy_follows_the_stage(storage: Storage) -> None:
    expected = "Delete" if storage.synth.config.destroy_on_removal else "Retain"
    for logical_id in [storage.key_id, *storage.buckets.values()]:
        resource = storage.json["Resources"][logical_id]
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (expected, expected), logical_id


@pytest.mark.slow
def test_no_auto_delete_custom_resource_moto_could_not_run(storage: Storage) -> None:
    types = {resource["Type"] for resource in storage.json["Resources"].values()} - {"AWS::CDK::Metadata"}
    assert types == {"AWS::KMS::Key", "AWS::KMS::Alias", "AWS::S3::Bucket", "AWS::S3::BucketPolicy"}


@pytest.mark.slow
def test_bucket_names_are_built_from_stage_account_and_region(storage: Storage) -> None:
    config = storage.synth.config
    for purpose in storage.buckets:
        name = _flat(storage.bucket(purpose)["Properties"]["BucketName"])
        account = config.account or "<AWS::AccountId>"
        assert name == f"{config.prefix()}-{purpose}-{account}-{config.region}"


def test_bucket_name_rejects_what_s3_would() -> None:
    stack = cdk.Stack(cdk.App(), "Probe", env=cdk.Environment(account="123456789012", region="us-east-1"))
    upper = parse_stage_config({"Dev": {"region": "us-east-1", "networks": ["cnn"]}}, "Dev")
    with pytest.raises(ValueError, match="lowercase letters, digits and hyphens"):
        bucket_name(upper, stack, "data")
    long = parse_stage_config({"dev": {"region": "us-east-1", "networks": ["cnn"]}}, "dev", project="x" * 40)
    with pytest.raises(ValueError, match="exceed 63 characters"):
        bucket_name(long, stack, "artifacts")


@pytest.mark.slow
def test_resources_are_tagged_with_project_and_stage(storage: Storage) -> None:
    config = storage.synth.config
    expected = [{"Key": "project", "Value": config.project}, {"Key": "stage", "Value": config.name}]
    for logical_id in [storage.key_id, *storage.buckets.values()]:
        assert storage.json["Resources"][logical_id]["Properties"]["Tags"] == expected, logical_id
    role_template = storage.synth.template_json(storage.synth.stacks.execution_role)
    (role,) = _resources(role_template, "AWS::IAM::Role").values()
    assert role["Properties"]["Tags"] == expected


# --- prefixes -----------------------------------------------------------------------------------


def test_prefixes_are_constants_and_helpers() -> None:
    assert (
        ArtifactsBucket.MODELS_PREFIX,
        ArtifactsBucket.CHECKPOINTS_PREFIX,
        ArtifactsBucket.PIPELINES_PREFIX,
        ArtifactsBucket.DATA_CAPTURE_PREFIX,
    ) == ("models/", "checkpoints/", "pipelines/", "data-capture/")
    assert network_prefix("cnn") == "cnn/"
    assert [channel_prefix("transfer", channel) for channel in ("train", "validation", "test", "pretrained")] == [
        "transfer/train/",
        "transfer/validation/",
        "transfer/test/",
        "transfer/pretrained/",
    ]
    with pytest.raises(KeyError, match="unknown network 'gan'"):
        network_prefix("gan")
    with pytest.raises(ValueError, match="unknown channel 'holdout'"):
        channel_prefix("cnn", "holdout")


@pytest.mark.slow
def test_uris_point_into_the_named_buckets(local: Synthesized) -> None:
    storage: StorageStack = local.stacks.storage
    data: DataBucket = storage.data
    assert data.channel_uri("rnn", "validation") == "s3://mlops-local-data-123456789012-us-east-1/rnn/validation/"
    assert (
        storage.artifacts.s3_uri(ArtifactsBucket.MODELS_PREFIX)
        == "s3://mlops-local-artifacts-123456789012-us-east-1/models/"
    )


# --- outputs ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_outputs_name_buckets_key_and_role(local: Synthesized) -> None:
    storage_outputs = local.template_json(local.stacks.storage)["Outputs"]
    role_outputs = local.template_json(local.stacks.execution_role)["Outputs"]
    assert {"KeyArn", "DataBucketName", "ArtifactsBucketName", "AccessLogBucketName"} <= set(storage_outputs)
    assert "ExecutionRoleArn" in role_outputs


MOTO_SKIPPED_TYPES = {
    "AWS::S3::BucketPolicy",
    "AWS::SageMaker::Pipeline",
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::CDK::Metadata",
}


@pytest.mark.slow
def test_nothing_reads_an_attribute_of_a_resource_moto_skips(local: Synthesized) -> None:
    """moto's create_stack fails ("Fn::GetAtt references undefined resource") on any Fn::GetAtt,
    in a resource or an output, whose resource type it skips: `mlops local` could not deploy."""
    for path in local.template_files:
        template = json.loads(path.read_text())
        for section in ("Resources", "Outputs"):
            for name, body in template.get(section, {}).items():
                for logical_id in _get_att_targets(body):
                    resource_type = template["Resources"][logical_id]["Type"]
                    skipped = resource_type in MOTO_SKIPPED_TYPES or resource_type.startswith(
                        "AWS::ApplicationAutoScaling::"
                    )
                    assert not skipped, f"{path.name}: {name} reads {logical_id} ({resource_type})"


def _get_att_targets(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["Fn::GetAtt"][0]] if "Fn::GetAtt" in value else []
        return found + [target for item in value.values() for target in _get_att_targets(item)]
    if isinstance(value, list):
        return [target for item in value for target in _get_att_targets(item)]
    return []


# --- execution role -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_role_is_trusted_by_sagemaker_in_this_account_only(stage: str) -> None:
    synth = synthesized(stage)
    (role,) = _resources(synth.template_json(synth.stacks.execution_role), "AWS::IAM::Role").values()
    account = synth.config.account or {"Ref": "AWS::AccountId"}
    assert role["Properties"]["AssumeRolePolicyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_no_managed_policies(stage: str) -> None:
    synth = synthesized(stage)
    for stack in (synth.stacks.storage, synth.stacks.execution_role):
        template = synth.template_json(stack)
        assert not _resources(template, "AWS::IAM::ManagedPolicy")
        assert all(
            "ManagedPolicyArns" not in role["Properties"] for role in _resources(template, "AWS::IAM::Role").values()
        )


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_no_wildcard_actions_and_no_delete(stage: str) -> None:
    synth = synthesized(stage)
    for stack in (synth.stacks.storage, synth.stacks.execution_role):
        for statement in _identity_statements(synth.template_json(stack)):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, (stack.stack_name, statement.get("Sid"), action)
                assert "Delete" not in action, (stack.stack_name, statement.get("Sid"), action)


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_resource_star_only_where_no_resource_level_permission_exists(stage: str) -> None:
    synth = synthesized(stage)
    unscoped = {
        statement["Sid"]: statement
        for stack in (synth.stacks.storage, synth.stacks.execution_role)
        for statement in _identity_statements(synth.template_json(stack))
        if "*" in _as_list(statement["Resource"])
    }
    assert set(unscoped) == {"PutSageMakerMetrics", "GetRegistryToken", "ListModelVersions"}
    for sid, statement in unscoped.items():
        for action in _as_list(statement["Action"]):
            # AWS's service authorization data lists no required resource type for it.
            assert authorized_resources(action, {}, Where("aws", "us-east-1", "123456789012"))[0].arn == "*", (
                sid,
                action,
            )
    assert unscoped["PutSageMakerMetrics"]["Action"] == "cloudwatch:PutMetricData"
    assert unscoped["PutSageMakerMetrics"]["Condition"] == {
        "StringEquals": {
            "cloudwatch:namespace": [
                "/aws/sagemaker/TrainingJobs",
                "/aws/sagemaker/ProcessingJobs",
                "/aws/sagemaker/Endpoints",
                f"mlops-{stage}/drift",
            ]
        }
    }  # the drift monitor's DriftScore
    assert unscoped["GetRegistryToken"]["Action"] == "ecr:GetAuthorizationToken"


@pytest.mark.slow
def test_role_s3_access_is_exactly_its_prefixes_and_the_code_bundle(local: Synthesized) -> None:
    statements = _role_statements(local)
    data = "arn:<AWS::Partition>:s3:::mlops-local-data-123456789012-us-east-1"
    artifacts = "arn:<AWS::Partition>:s3:::mlops-local-artifacts-123456789012-us-east-1"
    expected = {
        "ReadTrainingData": (["s3:GetObject"], [f"{data}/{net}/*" for net in local.config.networks]),
        "ListReadTrainingData": (["s3:ListBucket"], [data]),
        "WriteModelArtifacts": (["s3:PutObject", "s3:AbortMultipartUpload"], [f"{artifacts}/models/*"]),
        "ReadModelArtifacts": (["s3:GetObject"], [f"{artifacts}/models/*"]),
        "ListReadModelArtifacts": (["s3:ListBucket"], [artifacts]),
        "ReadWriteCheckpoints": (
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            [f"{artifacts}/checkpoints/*"],
        ),
        "ListReadWriteCheckpoints": (["s3:ListBucket"], [artifacts]),
        "WritePipelineOutputs": (["s3:PutObject", "s3:AbortMultipartUpload"], [f"{artifacts}/pipelines/*"]),
        "ReadPipelineOutputs": (["s3:GetObject"], [f"{artifacts}/pipelines/*"]),
        "ListReadPipelineOutputs": (["s3:ListBucket"], [artifacts]),
        "WriteDataCapture": (["s3:PutObject"], [f"{artifacts}/data-capture/*"]),
        # The drift monitor's CollectCaptures step copies the capture files of its window...
        "ReadDataCapture": (["s3:GetObject"], [f"{artifacts}/data-capture/*"]),
        "ListReadDataCapture": (["s3:ListBucket"], [artifacts]),
        # ...which SageMaker uploads as its output and lists and reads into the Monitor's input.
        "ReadWriteCaptureWindows": (
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            [f"{artifacts}/capture-windows/*"],
        ),
        "ListReadWriteCaptureWindows": (["s3:ListBucket"], [artifacts]),
        # A batch transform job uploads its outputs (multipart) as the model's execution role.
        "WriteBatchTransformOutputs": (["s3:PutObject", "s3:AbortMultipartUpload"], [f"{artifacts}/batch-transform/*"]),
        # Granted by the pipelines stack (allow_read_source_bundle): the one training code object.
        "ReadSourceBundle": (
            ["s3:GetObject"],
            [
                "arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-123456789012-us-east-1/"
                f"{local.stacks.pipelines.source_bundle.s3_object_key}"
            ],
        ),
        # The Evaluate step's S3Prefix input of the bundle is listed first: only its own key.
        "ListSourceBundle": (
            ["s3:ListBucket"],
            ["arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-123456789012-us-east-1"],
        ),
    }
    s3_statements = {
        sid: statement
        for sid, statement in statements.items()
        if any(action.startswith("s3:") for action in _as_list(statement["Action"]))
    }
    assert set(s3_statements) == set(expected)
    for sid, (actions, resources) in expected.items():
        statement = s3_statements[sid]
        assert _as_list(statement["Action"]) == actions, sid
        assert [_flat(resource) for resource in _as_list(statement["Resource"])] == resources, sid
    listed = {
        sid: statement["Condition"]["StringLike"]["s3:prefix"]
        for sid, statement in s3_statements.items()
        if sid.startswith("List") and sid != "ListSourceBundle"
    }
    assert s3_statements["ListSourceBundle"]["Condition"] == {
        "StringEquals": {"s3:prefix": local.stacks.pipelines.source_bundle.s3_object_key}
    }
    assert listed == {
        "ListReadTrainingData": [f"{net}/*" for net in local.config.networks],
        "ListReadModelArtifacts": ["models/*"],
        "ListReadWriteCheckpoints": ["checkpoints/*"],
        "ListReadPipelineOutputs": ["pipelines/*"],
        "ListReadDataCapture": ["data-capture/*"],
        "ListReadWriteCaptureWindows": ["capture-windows/*"],
    }


@pytest.mark.slow
def test_role_s3_arns_are_built_from_names_not_imported(local: Synthesized) -> None:
    """Exports pin the producer; only the key ARN (random id) may cross stacks as an import."""
    for sid, statement in _role_statements(local).items():
        imports = [
            resource
            for resource in _as_list(statement["Resource"])
            if isinstance(resource, dict) and "Fn::ImportValue" in resource
        ]
        assert not imports or sid == "UseProjectKey", sid


@pytest.mark.slow
def test_role_uses_the_key_through_one_statement(local: Synthesized) -> None:
    kms = {
        sid: statement
        for sid, statement in _role_statements(local).items()
        if any(action.startswith("kms:") for action in _as_list(statement["Action"]))
    }
    assert set(kms) == {"UseProjectKey"}
    statement = kms["UseProjectKey"]
    assert statement["Action"] == ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
    key_export = local.stacks.storage.resolve(local.stacks.storage.key.key_arn)
    assert statement["Resource"]["Fn::ImportValue"].startswith("mlops-local-storage:")
    assert key_export == {"Fn::GetAtt": [logical_id_of(local.stacks.storage.key.key), "Arn"]}


@pytest.mark.slow
def test_role_writes_only_sagemaker_log_groups_of_its_account(local: Synthesized) -> None:
    statement = _role_statements(local)["WriteSageMakerLogs"]
    prefix = "arn:<AWS::Partition>:logs:us-east-1:123456789012:log-group:"
    assert [_flat(resource) for resource in statement["Resource"]] == [
        f"{prefix}/aws/sagemaker/TrainingJobs",
        f"{prefix}/aws/sagemaker/ProcessingJobs",
        f"{prefix}/aws/sagemaker/TrainingJobs:log-stream:*",
        f"{prefix}/aws/sagemaker/ProcessingJobs:log-stream:*",
        f"{prefix}/aws/sagemaker/Endpoints/*",
    ]
    assert statement["Action"] == [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    ]


@pytest.mark.slow
def test_role_pulls_only_the_tensorflow_framework_images(local: Synthesized) -> None:
    statement = _role_statements(local)["PullFrameworkImages"]
    assert statement["Action"] == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert [_flat(resource) for resource in statement["Resource"]] == [
        "arn:<AWS::Partition>:ecr:us-east-1:763104351884:repository/tensorflow-inference",
        "arn:<AWS::Partition>:ecr:us-east-1:763104351884:repository/tensorflow-training",
    ]


# --- grants on fresh apps (they add statements, so never on the shared synthesized app) -----------


def _fresh_storage(tmp_path: Path) -> tuple[cdk.App, StorageStack]:
    app = new_app("local", tmp_path)
    config = parse_stage_config(CDK_CONTEXT["stages"], "local")
    return app, StorageStack(app, config)


def test_key_actions_follow_the_grants_and_collect_in_one_statement(tmp_path: Path) -> None:
    app, storage = _fresh_storage(tmp_path)
    consumer = cdk.Stack(app, "Consumer", env=cdk.Environment(account="123456789012", region="us-east-1"))
    reader = iam.Role(consumer, "Reader", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    writer = iam.Role(consumer, "Writer", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    for role in (reader, writer):
        storage.artifacts.allow_read_model_artifacts(role)
        storage.data.allow_read_training_data(role, ["cnn"])
    storage.artifacts.allow_write_data_capture(writer)

    template = Template.from_stack(consumer).to_json()
    key_actions = {}
    for policy in _resources(template, "AWS::IAM::Policy").values():
        (role_ref,) = policy["Properties"]["Roles"]
        (kms,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Sid"] == "UseProjectKey"]
        key_actions[role_ref["Ref"]] = kms["Action"]
    assert key_actions == {
        logical_id_of(reader): ["kms:Decrypt", "kms:DescribeKey"],
        logical_id_of(writer): [
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:Encrypt",
            "kms:GenerateDataKey",
        ],
    }


def test_source_bundle_read_is_one_object_and_adds_no_cross_stack_reference(tmp_path: Path) -> None:
    app, storage = _fresh_storage(tmp_path / "app")
    config = parse_stage_config(CDK_CONTEXT["stages"], "local")
    role_stack = ExecutionRoleStack(app, config, storage=storage)
    owner = cdk.Stack(app, "BundleOwner", env=cdk.Environment(account="123456789012", region="us-east-1"))
    bundle = s3_assets.Asset(owner, "SourceBundle", path=str(build_source_bundle(tmp_path / "bundle")))
    role_stack.execution_role.allow_read_source_bundle(bundle)

    statements = _identity_statements(Template.from_stack(role_stack).to_json())
    (statement,) = [s for s in statements if s["Sid"] == "ReadSourceBundle"]
    assert statement["Action"] == "s3:GetObject"
    assert _flat(statement["Resource"]) == (
        f"arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-123456789012-us-east-1/{bundle.s3_object_key}"
    )
    assert owner not in role_stack.dependencies
