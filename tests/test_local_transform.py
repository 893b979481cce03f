"""The local batch transform job (mlops/local/transform_job.py) as SageMaker runs one.

A tiny real CNN is served by the local endpoint with its own `code/inference.py`; its input and
output live in moto's S3; the job is recorded in moto's SageMaker. Every batch answer is compared
with the same handler's real-time answer to the same image. The request is what the batch transform
pipeline's Transform step sends (infra/definitions/transform_pipeline.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inference_support import Served, exported_models, tarball_of

from mlops.local.moto import LocalAws, moto_server
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_jobs import JobFailed
from mlops.local.transform_job import TransformRuntime, _mini_batches, _TransformSettings, run_transform_step
from training.batch_formats import record_format

BUCKET = "data"
RECORDS = 300


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with moto_server() as local:
        local.client("s3").create_bucket(Bucket=BUCKET)
        yield local


@pytest.fixture(scope="module")
def model(tmp_path_factory, aws: LocalAws) -> dict[str, Any]:
    folder = exported_models(tmp_path_factory)["cnn"]
    tarball = tarball_of(folder, tmp_path_factory.mktemp("model") / "model.tar.gz")
    aws.client("s3").upload_file(str(tarball), BUCKET, "models/cnn/model.tar.gz")
    return {"ModelDataUrl": f"s3://{BUCKET}/models/cnn/model.tar.gz", "Environment": {}, "served": Served(folder)}


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 1)).astype(float)


def jsonl(ids: list[str], pixels: np.ndarray) -> bytes:
    return b"".join(
        json.dumps({"id": image_id, "features": image.tolist()}).encode() + b"\n"
        for image_id, image in zip(ids, pixels, strict=True)
    )


def csv_rows(ids: list[str], pixels: np.ndarray) -> bytes:
    return b"".join(
        (",".join([image_id, *(str(int(value)) for value in image.ravel())]) + "\n").encode()
        for image_id, image in zip(ids, pixels, strict=True)
    )


def request(content_type: str, input_uri: str, output_uri: str, **overrides: Any) -> dict[str, Any]:
    """A Transform step's request as the pipeline builds it, for one record format."""
    fmt = record_format(content_type)
    return {
        "ModelName": "m",
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 1,
        "MaxConcurrentTransforms": 2,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": content_type,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": fmt.accept, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "DataProcessing": fmt.data_processing(),
        **overrides,
    }


def run(aws: LocalAws, model: dict[str, Any], tmp_path: Path, job: str, body: dict[str, Any]):
    runtime = TransformRuntime(aws.client("s3"), MotoRecords(aws), tmp_path, lambda step, line: None)
    return run_transform_step("Transform", job, body, model, runtime)


def read(aws: LocalAws, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["application/jsonlines", "text/csv"])
def test_every_record_is_answered_once_joined_to_its_id_as_the_endpoint_answers_it(aws, model, tmp_path, content_type):
    pixels = images(RECORDS)
    ids = [f"img-{index:04d}" for index in range(RECORDS)]
    body = jsonl(ids, pixels) if content_type == "application/jsonlines" else csv_rows(ids, pixels)
    name = "test.jsonl" if content_type == "application/jsonlines" else "test.csv"
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"batch/{content_type[-3:]}/{name}", Body=body)
    output = f"s3://{BUCKET}/out/{content_type[-3:]}/"
    described, result = run(
        aws,
        model,
        tmp_path,
        f"job-{content_type[-3:]}",
        request(content_type, f"s3://{BUCKET}/batch/{content_type[-3:]}/", output),
    )
    assert described["TransformJobStatus"] == "Completed"
    assert (result.objects, result.records, result.failed) == (1, RECORDS, [])
    lines = read(aws, f"{output}{name}.out").decode().splitlines()
    assert len(lines) == RECORDS
    if content_type == "application/jsonlines":
        joined = [json.loads(line) for line in lines]
        assert [record["id"] for record in joined] == ids
        answers = [record["SageMakerOutput"] for record in joined]
    else:
        rows = list(csv.reader(io.StringIO("\n".join(lines))))
        assert [row[0] for row in rows] == ids and {len(row) for row in rows} == {2}
        answers = [json.loads(row[1]) for row in rows]
    real_time = model["served"].answer(json.dumps({"instances": pixels.tolist()}), "application/json")
    assert answers == real_time
    assert (
        aws.client("sagemaker").describe_transform_job(TransformJobName=f"job-{content_type[-3:]}")[
            "TransformJobStatus"
        ]
        == "Completed"
    )


@pytest.mark.slow
def test_a_refused_record_fails_the_job_naming_the_object_the_line_and_the_handlers_message(aws, model, tmp_path):
    pixels = images(40, seed=1)
    good = jsonl([f"a{index}" for index in range(40)], pixels)
    lines = good.splitlines(keepends=True)
    lines[26] = b'{"id": "a26", "features": [1, 2, 3]}\n'
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="bad/1-broken.jsonl", Body=b"".join(lines))
    s3.put_object(Bucket=BUCKET, Key="bad/2-fine.jsonl", Body=good)
    output = f"s3://{BUCKET}/bad-out/"
    with pytest.raises(JobFailed) as failed:
        run(aws, model, tmp_path, "job-bad", request("application/jsonlines", f"s3://{BUCKET}/bad/", output))
    reason = failed.value.reason
    assert f"s3://{BUCKET}/bad/1-broken.jsonl: line 27: the container answered 500" in reason
    assert "record 27 of 40: the record has 3 values" in reason
    described = aws.client("sagemaker").describe_transform_job(TransformJobName="job-bad")
    assert described["TransformJobStatus"] == "Failed" and described["FailureReason"] == reason
    # As SageMaker: no output for the object with the bad record, the other object's is complete.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="bad-out/").get("Contents", [])
    assert [item["Key"] for item in listed] == ["bad-out/2-fine.jsonl.out"]
    assert len(read(aws, f"{output}2-fine.jsonl.out").splitlines()) == 40
    log = (tmp_path / "Transform" / "log.txt").read_text()
    assert f"[sagemaker logs]: {BUCKET}/bad/1-broken.jsonl: ClientError: 500" in log
    assert '"handler_outcome": "bad_input"' in log


def test_an_s3_prefix_matches_sibling_keys_as_sagemaker_matches_them(aws):
    from mlops.local.transform_job import _input_objects

    s3 = aws.client("s3")
    for key in ("sib/test/a.jsonl", "sib/test_small/b.jsonl", "sib/testing.jsonl"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}\n")
    assert [relative for _, relative in _input_objects(s3, f"s3://{BUCKET}/sib/test")] == [
        "test/a.jsonl",
        "test_small/b.jsonl",
        "testing.jsonl",
    ]
    assert [relative for _, relative in _input_objects(s3, f"s3://{BUCKET}/sib/test/")] == ["a.jsonl"]


class _Stream:
    """An S3 body that makes its lines as it is read, and counts what was read."""

    def __init__(self, lines: int, line: bytes) -> None:
        self.lines, self.line, self.read = lines, line, 0

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        per_chunk = max(1, size // len(self.line))
        for start in range(0, self.lines, per_chunk):
            chunk = self.line * min(per_chunk, self.lines - start)
            self.read += len(chunk)
            yield chunk


def test_an_object_is_read_as_a_stream_never_whole(monkeypatch):
    line = json.dumps({"id": "x", "features": [255.0] * 784}).encode() + b"\n"
    stream = _Stream(lines=200_000, line=line)  # about 1 GB if it were read whole
    s3 = type("S3", (), {"get_object": lambda self, **_: {"Body": stream}})()
    job = _TransformSettings.of(request("application/jsonlines", "s3://b/in/", "s3://b/out/"))
    batches = _mini_batches(s3, "b", "in/x.jsonl", job)
    first = next(batches)
    assert len(first.body) <= 1024 * 1024
    assert stream.read <= 2 * 1024 * 1024 + len(line)  # a chunk, and the one being split
    second = next(batches)
    assert second.first_line == len(first.records) + 1
    assert stream.read <= 3 * 1024 * 1024
