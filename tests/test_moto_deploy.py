"""The foundation stacks in moto: in-process through CloudFormation, and through the real CDK CLI.

moto checks wiring (the resources it implements exist and reference each other); what it
skips or ignores (bucket policies, versioning, public access blocks, lifecycle rules, access
logging, IAM semantics) is asserted on the templates in test_storage_stacks.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from synth_support import synthesized

from mlops.cdk import CdkCli
from mlops.local.moto import apply_moto_fixes, moto_server

STAGE = "local"
# slow: deploys the app into moto with the CDK CLI.
pytestmark = pytest.mark.slow


def _bucket_encryption(s3: Any, bucket: str) -> dict[str, Any]:
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    return rule["ApplyServerSideEncryptionByDefault"]


def _check_foundation(clients: Any, outputs: dict[str, dict[str, str]], prefix: str) -> None:
    """What moto can show of the storage and role stacks; `outputs` by stack name."""
    storage, role_outputs = outputs[f"{prefix}-storage"], outputs[f"{prefix}-execution-role"]
    s3, kms, iam = clients("s3"), clients("kms"), clients("iam")

    key = kms.describe_key(KeyId=storage["KeyArn"])["KeyMetadata"]
    assert key["Enabled"] and key["KeyManager"] == "CUSTOMER"
    assert kms.get_key_rotation_status(KeyId=storage["KeyArn"])["KeyRotationEnabled"] is True
    aliases = {alias["AliasName"]: alias.get("TargetKeyId") for alias in kms.list_aliases()["Aliases"]}
    assert aliases[f"alias/{prefix}"] == key["KeyId"]
    assert {"TagKey": "stage", "TagValue": STAGE} in kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]

    for output in ("DataBucketName", "ArtifactsBucketName"):
        assert _bucket_encryption(s3, storage[output]) == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": storage["KeyArn"],
        }
    assert _bucket_encryption(s3, storage["AccessLogBucketName"]) == {"SSEAlgorithm": "AES256"}

    role_name = role_outputs["ExecutionRoleArn"].rsplit("/", 1)[1]
    role = iam.get_role(RoleName=role_name)["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    sids = {statement["Sid"] for statement in document["Statement"]}
    assert {"ReadTrainingData", "WriteModelArtifacts", "UseProjectKey", "PullFrameworkImages"} <= sids
    (kms_statement,) = [s for s in document["Statement"] if s["Sid"] == "UseProjectKey"]
    assert kms_statement["Resource"] == storage["KeyArn"], "the key ARN crossed stacks intact"


# --- in-process: the synthesized templates through moto's CloudFormation ------------------------


@pytest.fixture(scope="module")
def in_process_stacks() -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    apply_moto_fixes()
    synth = synthesized(STAGE)
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        outputs = {}
        for stack in (synth.stacks.storage, synth.stacks.execution_role):
            cloudformation.create_stack(StackName=stack.stack_name, TemplateBody=json.dumps(synth.template_json(stack)))
            (described,) = cloudformation.describe_stacks(StackName=stack.stack_name)["Stacks"]
            assert described["StackStatus"] == "CREATE_COMPLETE"
            outputs[stack.stack_name] = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
        yield (lambda service: boto3.client(service, region_name="us-east-1")), outputs


def test_templates_create_the_key_buckets_and_role_in_moto(in_process_stacks: Any) -> None:
    clients, outputs = in_process_stacks
    _check_foundation(clients, outputs, synthesized(STAGE).config.prefix())


def test_bucket_names_in_moto_are_the_ones_other_stacks_build(in_process_stacks: Any) -> None:
    _, outputs = in_process_stacks
    storage = synthesized(STAGE).stacks.storage
    assert outputs[storage.stack_name]["DataBucketName"] == storage.data.bucket_name
    assert outputs[storage.stack_name]["ArtifactsBucketName"] == storage.artifacts.bucket_name


# --- the real CLI: bootstrap, deploy --all, destroy --all against a moto server ------------------


@pytest.mark.integration
def test_cdk_bootstrap_deploy_and_destroy_against_moto(tmp_path: Path) -> None:
    with moto_server() as aws:
        # One synth, beside the bootstrap, as `mlops local` runs them; deploy and destroy read its assembly.
        cli = CdkCli(target=aws, stage=STAGE, output_dir=tmp_path / "cdk.out").synth_and_bootstrap()
        outputs = cli.deploy()
        prefix = synthesized(STAGE).config.prefix()
        _check_foundation(aws.client, outputs, prefix)

        s3 = aws.client("s3")
        data_bucket = outputs[f"{prefix}-storage"]["DataBucketName"]
        s3.put_bucket_versioning(Bucket=data_bucket, VersioningConfiguration={"Status": "Enabled"})
        for body in (b"v1", b"v2"):
            s3.put_object(Bucket=data_bucket, Key="cnn/train/part-0.tfrecord", Body=body)

        cli.destroy()
        cloudformation = aws.client("cloudformation")
        for stack in cli.stack_names():
            with pytest.raises(ClientError, match="does not exist"):
                cloudformation.describe_stacks(StackName=stack)
        remaining = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
        assert not {name for name in remaining if name.startswith(prefix)}, remaining
