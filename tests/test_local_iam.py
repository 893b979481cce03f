"""IAM enforced in the embedded moto server (`mlops.local.iam`): the administrator, roles assumed
as SageMaker assumes them, and a job stopped by its role's deployed policy.

The execution role's policy is the one the `local` stage synthesizes, its values filled in as
CloudFormation fills them in moto (no CDK deploy needed: tests/policy_documents.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from policy_documents import policy_documents
from synth_support import synthesized
from training_support import TRAINING_DIR

from mlops.local.authorization import Where, authorized_resources
from mlops.local.iam import ADMINISTRATOR, AccessDenied, enforced_iam
from mlops.local.moto import moto_server
from mlops.local.permissions import write_permissions_report
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed
from mlops.local.training_job import start_job

# slow: synthesizes the local stage and deploys it into moto with IAM enforced.
pytestmark = pytest.mark.slow

ACCOUNT, REGION = "123456789012", "us-east-1"
DATA = f"mlops-local-data-{ACCOUNT}-{REGION}"
ARTIFACTS = f"mlops-local-artifacts-{ACCOUNT}-{REGION}"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def execution_role_policy() -> dict[str, Any]:
    synth = synthesized("local")
    (document,) = [
        document
        for document in policy_documents(synth.template_files, account=ACCOUNT, region=REGION)
        if "execution-role" in document.where and document.kind == "identity"
    ]
    return document.policy


@pytest.fixture(scope="module")
def aws():
    with moto_server() as server:
        admin = server.client("s3")
        for bucket in (DATA, ARTIFACTS):
            admin.create_bucket(Bucket=bucket)
        admin.put_object(Bucket=DATA, Key="cnn/train/spec.json", Body=b"{}")
        admin.put_object(Bucket=DATA, Key="shared/notes.txt", Body=b"not a network's data")
        admin.put_object(Bucket=ARTIFACTS, Key="models/cnn/old/model.tar.gz", Body=b"model")
        role_arn = server.client("iam").create_role(RoleName="execution-role", AssumeRolePolicyDocument=TRUST)["Role"][
            "Arn"
        ]
        server.client("iam").put_role_policy(
            RoleName="execution-role", PolicyName="Deployed", PolicyDocument=json.dumps(execution_role_policy())
        )
        with enforced_iam(server) as iam:
            yield server, iam, role_arn


def test_the_harness_signs_as_the_administrator_and_strangers_are_refused(aws) -> None:
    server, _, _ = aws
    assert [user["UserName"] for user in server.client("iam").list_users()["Users"]] == [ADMINISTRATOR]
    assert server.client("s3").list_objects_v2(Bucket=DATA)["KeyCount"] == 2
    stranger = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=REGION,
        aws_access_key_id="AKIASTRANGER0000000",
        aws_secret_access_key="x",
    )
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        stranger.list_objects_v2(Bucket=DATA)


def test_a_role_reads_what_its_policy_allows_and_nothing_else(aws) -> None:
    _, iam, role_arn = aws
    s3 = iam.client(role_arn, "s3", session="training-job")
    assert s3.get_object(Bucket=DATA, Key="cnn/train/spec.json")["Body"].read() == b"{}"
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=DATA, Key="shared/notes.txt")
    message = denied.value.response["Error"]["Message"]
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert (
        f"assumed-role/execution-role/training-job is not authorized to perform: s3:GetObject on resource: "
        f"arn:aws:s3:::{DATA}/shared/notes.txt" in message
    )
    last = iam.decisions[-1]
    assert (last.role_name, last.action, last.allowed) == ("execution-role", "s3:GetObject", False)


JOB_SCRIPT = """
import sys
import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3")
s3.get_object(Bucket="{data}", Key="cnn/train/spec.json")   # its own network's data: allowed
try:
    {call}
except ClientError as error:
    print(f"denied: {{error.response['Error']['Code']}} {{error.response['Error']['Message']}}", flush=True)
    sys.exit(3)
print("allowed", flush=True)
"""


@pytest.mark.parametrize(
    ("call", "action"),
    [
        (f"s3.get_object(Bucket='{DATA}', Key='shared/notes.txt')", "s3:GetObject"),
        (f"s3.put_object(Bucket='{DATA}', Key='cnn/train/extra.json', Body=b'x')", "s3:PutObject"),
        (f"s3.delete_object(Bucket='{ARTIFACTS}', Key='models/cnn/old/model.tar.gz')", "s3:DeleteObject"),
    ],
    ids=["read-outside-the-data-prefixes", "write-into-the-data-bucket", "delete-a-model"],
)
def test_a_job_whose_entry_point_oversteps_its_role_is_stopped(aws, tmp_path: Path, call: str, action: str) -> None:
    server, iam, role_arn = aws
    source = tmp_path / "source"
    source.mkdir()
    (source / "job.py").write_text(JOB_SCRIPT.format(data=DATA, call=call))
    bundle = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(source / "job.py", arcname="job.py")
    env = {**server.env, **iam.credentials(role_arn, session="pipelines-job")}
    job = start_job(
        tmp_path / "job",
        {"sagemaker_program": "job.py", "sagemaker_submit_directory": str(bundle)},
        {},
        checkpoint_dir=tmp_path / "checkpoints",
        env=env,
    )
    result = job.wait(timeout=180)
    assert result.exit_code != 0, result.log
    assert "denied: AccessDenied" in result.log, result.log[-1500:]
    assert f"assumed-role/execution-role/pipelines-job is not authorized to perform: {action}" in result.log
    assert any(d.action == action and not d.allowed and d.role_name == "execution-role" for d in iam.decisions)


# --- the pipeline's own calls, as its role ------------------------------------------------------

CNN_GROUP = "mlops-local-cnn"
REGISTER = {
    "Name": "Register",
    "Type": "RegisterModel",
    "Arguments": {
        "ModelPackageGroupName": CNN_GROUP,
        "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {
            "Containers": [{"Image": "image", "ModelDataUrl": f"s3://{ARTIFACTS}/models/m.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    },
}


class QuietReporter:
    def step_started(self, *_: Any) -> None: ...

    def step_log(self, *_: Any) -> None: ...

    def step_ended(self, *_: Any) -> None: ...

    def trial_update(self, *_: Any) -> None: ...


def cnn_pipeline_role_policies() -> dict[str, dict[str, Any]]:
    synth = synthesized("local")
    return {
        document.where.rsplit("/", 1)[1]: document.policy
        for document in policy_documents(synth.template_files, account=ACCOUNT, region=REGION)
        if "TrainingPipelinecnnPipelineRole" in document.where and document.kind == "identity"
    }


@pytest.mark.parametrize("removed", [None, "RegisterModelVersions"])
def test_registering_runs_as_the_pipeline_role_and_fails_without_its_statement(
    aws, tmp_path: Path, removed: str | None
) -> None:
    server, iam, _ = aws
    admin_iam = server.client("iam")
    role_name = f"pipeline-role-without-{removed}"
    role_arn = admin_iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    for name, policy in cnn_pipeline_role_policies().items():
        if name != removed:
            admin_iam.put_role_policy(RoleName=role_name, PolicyName=name, PolicyDocument=json.dumps(policy))
    sagemaker = server.client("sagemaker")
    if not sagemaker.list_model_package_groups(NameContains=CNN_GROUP)["ModelPackageGroupSummaryList"]:
        sagemaker.create_model_package_group(ModelPackageGroupName=CNN_GROUP)
    pipeline = f"register-{removed}"
    sagemaker.create_pipeline(
        PipelineName=pipeline,
        RoleArn=role_arn,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": [REGISTER]}),
    )
    executor = LocalPipelineExecutor(server, tmp_path, QuietReporter(), roles=iam)
    run = executor.start(pipeline, {})
    if removed is None:
        executor.execute(run)
        assert run.registered_model_arn
        return
    with pytest.raises(StepFailed) as failed:
        executor.execute(run)
    assert failed.value.step == "Register"
    assert (
        f"assumed-role/{role_name}/SageMakerPipelines is not authorized to perform: sagemaker:CreateModelPackage "
        "on resource: *"
    ) in failed.value.reason


def _evaluate_step(role_arn: str) -> dict[str, Any]:
    """A processing step that writes a report, which the runner uploads as the job's role when it ends."""
    return {
        "Name": "Evaluate",
        "Type": "Processing",
        "Arguments": {
            "RoleArn": role_arn,
            "AppSpecification": {
                "ImageUri": "image",
                "ContainerEntrypoint": [
                    "python3",
                    "-c",
                    "import pathlib; pathlib.Path('/opt/ml/processing/evaluation/evaluation.json').write_text('{}')",
                ],
            },
            "ProcessingResources": {
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
            },
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "evaluation",
                        "S3Output": {
                            "S3Uri": f"s3://{ARTIFACTS}/pipelines/cnn/run/evaluation",
                            "LocalPath": "/opt/ml/processing/evaluation",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
        },
    }


def test_an_output_upload_the_role_may_not_make_fails_the_step_naming_the_action(aws, tmp_path: Path) -> None:
    server, iam, _ = aws
    admin_iam = server.client("iam")
    policy = execution_role_policy()
    policy["Statement"] = [statement for statement in policy["Statement"] if statement["Sid"] != "WritePipelineOutputs"]
    role_arn = admin_iam.create_role(
        RoleName="execution-role-without-WritePipelineOutputs", AssumeRolePolicyDocument=TRUST
    )["Role"]["Arn"]
    admin_iam.put_role_policy(
        RoleName="execution-role-without-WritePipelineOutputs", PolicyName="Deployed", PolicyDocument=json.dumps(policy)
    )
    # The pipeline's own role may do anything: what is checked here is the job's.
    pipeline_role = admin_iam.create_role(RoleName="pipeline-role-allowed-everything", AssumeRolePolicyDocument=TRUST)[
        "Role"
    ]["Arn"]
    admin_iam.put_role_policy(
        RoleName="pipeline-role-allowed-everything",
        PolicyName="Everything",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    sagemaker = server.client("sagemaker")
    sagemaker.create_pipeline(
        PipelineName="evaluate-without-output-writes",
        RoleArn=pipeline_role,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": [_evaluate_step(role_arn)]}),
    )
    executor = LocalPipelineExecutor(server, tmp_path, QuietReporter(), roles=iam)
    run = executor.start("evaluate-without-output-writes", {})
    with pytest.raises(StepFailed) as failed:
        executor.execute(run)
    assert failed.value.step == "Evaluate"
    assert (
        "assumed-role/execution-role-without-WritePipelineOutputs/" in failed.value.reason
        and f"is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::{ARTIFACTS}/pipelines/cnn/run/"
        "evaluation/evaluation.json"
        in failed.value.reason
    ), failed.value.reason


def test_the_permissions_report_lists_each_roles_calls_and_the_statements_no_call_matched(aws, tmp_path: Path) -> None:
    _, iam, role_arn = aws
    iam.client(role_arn, "s3", session="report").get_object(Bucket=DATA, Key="cnn/train/spec.json")
    write_permissions_report(tmp_path, iam, network="cnn", networks=["cnn", "rnn"])
    report = json.loads((tmp_path / "permissions.json").read_text())
    (role,) = [role for role in report["roles"] if role["role"] == "execution-role"]
    assert {
        "action": "s3:GetObject",
        "resource": f"arn:aws:s3:::{DATA}/cnn/train/spec.json",
        "resource_from": "",
        "allowed": True,
        "count": 1,
    } in [{**call, "count": 1} for call in role["calls"]]
    statements = {statement["sid"]: statement for statement in role["statements"]}
    assert (
        statements["ReadTrainingData"]["calls_matched"] >= 1 and "why_unmatched" not in statements["ReadTrainingData"]
    )
    assert statements["UseProjectKey"]["calls_matched"] == 0
    assert "moto's S3 encrypts" in statements["UseProjectKey"]["why_unmatched"]
    assert "## execution-role" in (tmp_path / "permissions.md").read_text()


# --- the Champion step's own calls, as the execution role ---------------------------------------


def run_champion_step(server: Any, iam: Any, role_arn: str, group: str, output: Path) -> subprocess.CompletedProcess:
    """training/processing/find_champion.py as the Champion job runs it: its own process, the
    execution role's credentials."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.update({**server.env, **iam.credentials(role_arn, session="pipelines-champion")})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "processing.find_champion",
            "--group",
            group,
            "--region",
            REGION,
            "--output-dir",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=TRAINING_DIR,
    )


def register_versions(sagemaker: Any, group: str, statuses: tuple[str, ...]) -> None:
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    for status in statuses:
        sagemaker.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [{"Image": "image", "ModelDataUrl": f"s3://{ARTIFACTS}/models/cnn/old/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )


def test_the_champion_step_reads_its_groups_approved_version_and_no_other_group(aws, tmp_path: Path) -> None:
    server, iam, role_arn = aws
    sagemaker = server.client("sagemaker")
    group = "mlops-local-speech"
    register_versions(sagemaker, group, ("Approved", "Approved", "Rejected"))
    found = run_champion_step(server, iam, role_arn, group, tmp_path / "mine")
    assert found.returncode == 0, found.stdout[-2000:] + found.stderr[-2000:]
    champion = json.loads((tmp_path / "mine" / "champion.json").read_text())
    assert (champion["version"], champion["model_package_arn"]) == (
        2,
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/2",
    )  # the newest approved, not the rejected 3
    assert (tmp_path / "mine" / "model.tar.gz").read_bytes() == b"model"
    assert {(d.action, d.allowed) for d in iam.decisions if d.role_name == "execution-role"} >= {
        ("sagemaker:ListModelPackages", True),
        ("sagemaker:DescribeModelPackage", True),
        ("s3:GetObject", True),
    }
    write_permissions_report(tmp_path, iam, network="speech", networks=["speech", "cnn"])
    (role,) = [
        role
        for role in json.loads((tmp_path / "permissions.json").read_text())["roles"]
        if role["role"] == "execution-role"
    ]
    statements = {statement["sid"]: statement for statement in role["statements"]}
    assert statements["ListModelVersions"]["actions_used"] == ["sagemaker:ListModelPackages"]
    assert statements["ReadModelVersionsOfMlopsLocalSpeech"]["actions_used"] == ["sagemaker:DescribeModelPackage"]
    assert statements["ReadModelVersionsOfMlopsLocalCnn"]["why_unmatched"] == (
        "another network's resources (this run trains speech)"
    )
    # The report says which resource each call was authorized against, and why (AWS's data).
    calls = {(call["action"], call["resource"]): call["resource_from"] for call in role["calls"]}
    assert calls[("sagemaker:ListModelPackages", "*")] == (
        "only optional resource types (model-package), none named by the request"
    )
    version = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/2"
    assert calls[("sagemaker:DescribeModelPackage", version)] == "model-package (required), named by the request"
    assert (
        "| sagemaker:ListModelPackages | `*` | only optional resource types (model-package)"
        in (tmp_path / "permissions.md").read_text()
    )

    # Another group's versions can be listed (List calls take no resource) but not described.
    register_versions(sagemaker, "another-project-cnn", ("Approved",))
    refused = run_champion_step(server, iam, role_arn, "another-project-cnn", tmp_path / "theirs")
    assert refused.returncode == 1
    assert (
        "is not authorized to perform: sagemaker:DescribeModelPackage on resource: "
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/another-project-cnn/1"
    ) in refused.stderr
    assert not (tmp_path / "theirs" / "champion.json").exists()


# --- which resource a call is authorized against: AWS's data, not the policy being checked -------


def role_with(server: Any, name: str, policy: dict[str, Any]) -> str:
    admin_iam = server.client("iam")
    arn = admin_iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    admin_iam.put_role_policy(RoleName=name, PolicyName="Deployed", PolicyDocument=json.dumps(policy))
    return arn


def test_listing_a_groups_versions_granted_on_their_arns_is_refused_as_aws_would(aws, tmp_path: Path) -> None:
    """ListModelPackages has only an optional resource type in AWS's data, so AWS may authorize it
    against `*`: a grant on the group's version ARNs (what the template held before) must fail
    locally, not pass because the harness asked about the very ARNs the grant names."""
    server, iam, _ = aws
    group = "mlops-local-rnn"
    policy = execution_role_policy()
    versions = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/*"
    policy["Statement"] = [statement for statement in policy["Statement"] if statement["Sid"] != "ListModelVersions"]
    policy["Statement"].append(
        {
            "Sid": "ListAndReadOneGroup",
            "Effect": "Allow",
            "Action": ["sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"],
            "Resource": versions,
        }
    )
    role_arn = role_with(server, "execution-role-listing-by-arn", policy)
    register_versions(server.client("sagemaker"), group, ("Approved",))
    refused = run_champion_step(server, iam, role_arn, group, tmp_path / "champion")
    assert refused.returncode == 1
    assert (
        "assumed-role/execution-role-listing-by-arn/pipelines-champion is not authorized to perform: "
        "sagemaker:ListModelPackages on resource: *"
    ) in refused.stderr


def test_registering_granted_on_the_groups_arns_is_refused_as_aws_would(aws, tmp_path: Path) -> None:
    """CreateModelPackage, likewise: the pipeline role's grant on the group and its versions (what
    the template held before) fails the Register step locally."""
    server, iam, _ = aws
    policies = cnn_pipeline_role_policies()
    group_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{CNN_GROUP}"
    versions = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{CNN_GROUP}/*"
    policies["RegisterModelVersions"] = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sagemaker:CreateModelPackage", "Resource": [group_arn, versions]},
        ],
    }
    admin_iam = server.client("iam")
    role_arn = admin_iam.create_role(RoleName="pipeline-role-registering-by-arn", AssumeRolePolicyDocument=TRUST)[
        "Role"
    ]["Arn"]
    for name, policy in policies.items():
        admin_iam.put_role_policy(
            RoleName="pipeline-role-registering-by-arn", PolicyName=name, PolicyDocument=json.dumps(policy)
        )
    sagemaker = server.client("sagemaker")
    if not sagemaker.list_model_package_groups(NameContains=CNN_GROUP)["ModelPackageGroupSummaryList"]:
        sagemaker.create_model_package_group(ModelPackageGroupName=CNN_GROUP)
    sagemaker.create_pipeline(
        PipelineName="register-by-arn",
        RoleArn=role_arn,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": [REGISTER]}),
    )
    executor = LocalPipelineExecutor(server, tmp_path, QuietReporter(), roles=iam)
    run = executor.start("register-by-arn", {})
    with pytest.raises(StepFailed) as failed:
        executor.execute(run)
    assert "is not authorized to perform: sagemaker:CreateModelPackage on resource: *" in failed.value.reason


@pytest.mark.parametrize(
    ("action", "request_parameters", "expected"),
    [
        (
            "sagemaker:DescribeModelPackage",
            {"ModelPackageName": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/3"},
            [
                (
                    f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/3",
                    "model-package (required), named by the request",
                )
            ],
        ),
        (
            "sagemaker:CreateTrainingJob",
            {"TrainingJobName": "pipelines-abc-Train", "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/r"},
            [
                (
                    f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/pipelines-abc-Train",
                    "training-job (required), named by the request",
                )
            ],
        ),
        (
            "iam:PassRole",
            {"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/r"},
            [(f"arn:aws:iam::{ACCOUNT}:role/r", "role (required), named by the request")],
        ),
        ("ec2:DescribeSubnets", {}, [("*", "the action has no resource types")]),
        (
            "sagemaker:CreateModelPackage",
            {"ModelPackageGroupName": "g", "ModelApprovalStatus": "Approved"},
            [("*", "only optional resource types (model-package), none named by the request")],
        ),
    ],
    ids=["a-version-named-by-arn", "a-job-named-by-name", "a-passed-role", "no-resource-types", "none-named"],
)
def test_the_resources_come_from_aws_authorization_data(
    action: str, request_parameters: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    where = Where("aws", REGION, ACCOUNT)
    assert [
        (resource.arn, resource.basis) for resource in authorized_resources(action, request_parameters, where)
    ] == expected


def test_a_call_whose_required_resource_the_request_does_not_name_is_refused(aws) -> None:
    """Rather than guess (or fall back to `*`, which no scoped grant matches), the harness refuses
    a call it cannot place, naming the resource type AWS's data requires."""
    _, iam, role_arn = aws
    with pytest.raises(AccessDenied, match=r"cannot tell what AWS authorizes it against: .*model-package \(required\)"):
        iam.authorize(role_arn, "sagemaker:DescribeModelPackage", {})
    assert iam.decisions[-1].allowed is False
