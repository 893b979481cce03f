"""`mlops transform`'s checks and summary (mlops/batch.py, mlops/commands/batch.py), against moto's S3.

The run itself is the batch transform pipeline: tests/test_local_batch_pipeline.py runs it through
the local executor, and `mlops local --transform` (tests/test_local_e2e.py's mission, docs/batch.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from mlops.batch import TransformRequest, checked_output, summarize
from mlops.cli import app
from mlops.errors import UsageError

BUCKET = "data"


def files(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text('{"id": 1, "features": [1]}\n')
    return tmp_path


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("s3://data/cnn/batch/test", {}, "does not end with '/'"),
        ("missing.jsonl", {}, "no such file or folder"),
        ("records.txt", {}, "cannot tell the record format"),
        ("mixed", {}, "cannot tell the record format"),
        ("records.jsonl", {"version": 0}, "--version 0: versions are numbered from 1"),
        ("records.jsonl", {"content_type": "application/json"}, "one of application/jsonlines, text/csv"),
    ],
)
def test_bad_input_is_one_usage_error_naming_the_problem(tmp_path, monkeypatch, source, options, message):
    monkeypatch.chdir(files(tmp_path, "records.txt", "records.jsonl", "mixed/a.jsonl", "mixed/b.csv"))
    with pytest.raises(UsageError, match=message):
        TransformRequest.of("cnn", source, version=options.get("version"), content_type=options.get("content_type"))


def test_a_folder_is_uploaded_under_a_run_folder_keeping_its_layout(tmp_path):
    folder = files(tmp_path, "in/part-1.csv", "in/more/part-2.csv")
    request = TransformRequest.of("cnn", str(folder / "in"), version=3, content_type=None)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        uri = request.upload(s3, BUCKET, "20261207T120000Z")
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert uri == f"s3://{BUCKET}/cnn/batch/runs/20261207T120000Z/"
    assert sorted(keys) == [
        "cnn/batch/runs/20261207T120000Z/more/part-2.csv",
        "cnn/batch/runs/20261207T120000Z/part-1.csv",
    ]
    assert request.parameters(uri, None) == {"ModelVersion": "3", "InputDataUri": uri, "ContentType": "text/csv"}


def test_the_output_must_be_where_the_execution_role_writes_batch_outputs():
    assert checked_output(None, "artifacts", "cnn") is None
    mine = "s3://artifacts/batch-transform/cnn/mine/"
    assert checked_output(mine, "artifacts", "cnn") == mine
    for elsewhere in (
        "s3://artifacts/models/x/",
        "s3://other/batch-transform/cnn/",
        "s3://artifacts/batch-transform/x",
    ):
        with pytest.raises(UsageError, match="may write batch outputs only under s3://artifacts/batch-transform/"):
            checked_output(elsewhere, "artifacts", "cnn")


def test_the_summary_counts_the_output_lines_of_every_object_and_the_jobs_seconds():
    start = datetime(2026, 12, 7, 12, tzinfo=UTC)
    job = {
        "TransformOutput": {"S3OutputPath": "s3://artifacts/batch-transform/cnn/run/"},
        "TransformStartTime": start,
        "TransformEndTime": start + timedelta(seconds=4),
    }
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        s3.put_object(Bucket="artifacts", Key="batch-transform/cnn/run/a.jsonl.out", Body=b"1\n2\n3\n")
        s3.put_object(Bucket="artifacts", Key="batch-transform/cnn/run/sub/b.csv.out", Body=b"4\n" * 5)
        s3.put_object(Bucket="artifacts", Key="batch-transform/cnn/run/notes.txt", Body=b"x\n")
        summary = summarize(s3, job)
    assert (summary.objects, summary.records, summary.seconds) == (2, 8, 4.0)
    assert (
        summary.line()
        == "8 records from 2 object(s) in 4.0 s (2 records/s); output in s3://artifacts/batch-transform/cnn/run/"
    )


def test_mlops_transform_against_an_account_without_the_stage_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(files(tmp_path, "records.jsonl"))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        result = CliRunner().invoke(app, ["transform", "cnn", "records.jsonl", "--stage", "local"])
    assert isinstance(result.exception, UsageError)
    assert "stack mlops-local-storage is not deployed" in str(result.exception)
