"""What a daily user of the CLI reaches for, where it can be checked in this process: the default
stage refused for a real account's credentials, a step's log read as it grows (a job folder) and
from CloudWatch Logs as SageMaker names it, and a stage torn down in the order CloudFormation
requires, with what it empties and what it keeps. In-process moto (`mock_aws`) stands in for AWS."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from cli_support import run_mlops
from moto import mock_aws

from mlops.step_logs import FileSource, cloudwatch_source
from mlops.teardown import plan

OTHER_ACCOUNT = "111122223333"
NOW_MS = int(time.time() * 1000)  # CloudWatch Logs refuses events older than 14 days


@pytest.fixture
def real_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell with credentials of another account than the local stage's, and no local AWS."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", OTHER_ACCOUNT)  # STS answers for this account


@pytest.mark.usefixtures("real_account")
@pytest.mark.parametrize(
    "command",
    [("runs", "cnn"), ("models", "cnn"), ("train", "cnn"), ("logs", "cnn", "Train"), ("undeploy", "cnn", "--yes")],
)
def test_the_local_stage_is_not_the_default_for_a_real_accounts_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: tuple[str, ...]
) -> None:
    with mock_aws():
        code, _, err = run_mlops(monkeypatch, capsys, *command)
    assert code == 2, err
    assert err.strip() == (
        "error: no --stage given: the default stage local is for a local AWS (mlops up), but this shell's "
        f"credentials belong to AWS account {OTHER_ACCOUNT}; give --stage (one of dev, local, prod)"
    )


@pytest.mark.usefixtures("real_account")
def test_with_the_stage_named_the_command_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with mock_aws():
        code, _, err = run_mlops(monkeypatch, capsys, "runs", "cnn", "--stage", "local")
    assert code == 2 and "pipeline mlops-local-cnn does not exist" in err  # it asked SageMaker


def test_a_log_file_is_read_as_it_grows_a_partial_line_once_complete(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    source = FileSource(log)
    assert list(source.new_lines()) == []
    log.write_text("epoch 1\nepoch 2 loss=")
    assert list(source.new_lines()) == ["epoch 1"]
    with log.open("a") as file:
        file.write("0.5\nsaving")
    assert list(source.new_lines()) == ["epoch 2 loss=0.5"]
    assert list(source.new_lines(final=True)) == ["saving"]
    assert list(source.new_lines(final=True)) == []


@mock_aws
def test_a_jobs_cloudwatch_log_is_read_from_every_instance_stream_as_sagemaker_names_them() -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    group = "/aws/sagemaker/TrainingJobs"
    logs.create_log_group(logGroupName=group)
    for stream, messages in {"job-a/algo-1-1765000000": ["one", "two"], "job-a/algo-2-1765000000": ["three"]}.items():
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        events = [{"timestamp": NOW_MS + i, "message": message} for i, message in enumerate(messages)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    logs.create_log_stream(logGroupName=group, logStreamName="job-ab/algo-1-1765000000")  # another job
    source = cloudwatch_source(logs, "TrainingJob", "job-a")
    assert list(source.new_lines()) == [
        "[algo-1-1765000000] one",
        "[algo-1-1765000000] two",
        "[algo-2-1765000000] three",
    ]
    logs.put_log_events(
        logGroupName=group,
        logStreamName="job-a/algo-1-1765000000",
        logEvents=[{"timestamp": NOW_MS + 10, "message": "four"}],
    )
    assert list(source.new_lines()) == ["[algo-1-1765000000] four"]


def _template(resources: dict, outputs: dict | None = None) -> str:
    return json.dumps({"Resources": resources, "Outputs": outputs or {}})


@mock_aws
def test_a_stage_is_torn_down_importers_first_emptying_what_goes_and_naming_what_stays() -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    storage = _template(
        {
            "Data": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Delete"},
            "Logs": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
        },
        {"DataName": {"Value": {"Ref": "Data"}, "Export": {"Name": "stage-data"}}},
    )
    endpoint = _template(
        {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::ImportValue": "stage-data"}}}}
    )
    cloudformation.create_stack(StackName="stage-storage", TemplateBody=storage)
    cloudformation.create_stack(StackName="stage-endpoint", TemplateBody=endpoint)
    teardown = plan(cloudformation, ["stage-storage", "stage-endpoint"])
    assert teardown.stacks == ["stage-endpoint", "stage-storage"]
    (bucket,) = teardown.buckets
    assert bucket.startswith("stage-storage-data")
    (kept,) = teardown.kept
    assert kept.startswith("AWS::S3::Bucket stage-storage-logs") and kept.endswith("(stage-storage)")
