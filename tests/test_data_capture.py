"""Data capture of the local endpoint (inference/capture.py) against SageMaker's documented format.

The reference is the capture line SageMaker's developer guide shows ("View Captured Data",
awsdocs/amazon-sagemaker-developer-guide, doc_source/model-monitor-data-capture.md), and the key
layout it names, `{endpoint-name}/{variant-name}/yyyy/mm/dd/hh/filename.jsonl`. No TensorFlow:
the endpoint's routes run in process with a stand-in handler, S3 is moto's.
"""

from __future__ import annotations

import base64
import json
import random
import re
from datetime import UTC, datetime

import pytest
from werkzeug.test import Client

from inference.capture import CaptureConfig, CaptureWriter, capture_line, capture_record
from inference.endpoint_app import EndpointApp

# The developer guide's sample, one line of a capture file (CSV in, CSV out).
DOCUMENTED_LINE = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"69,0,153.7,109,194.0,105,256.1,114,14.1,6,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,'
    '0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,1,0,1,0\\n",'
    '"encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv; charset=utf-8","mode":"OUTPUT",'
    '"data":"0.0254181120544672","encoding":"CSV"}},'
    '"eventMetadata":{"eventId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","inferenceTime":"2022-02-14T17:25:49Z"},'
    '"eventVersion":"0"}'
)
DOCUMENTED_FIELDS = {
    "": ["captureData", "eventMetadata", "eventVersion"],
    "captureData": ["endpointInput", "endpointOutput"],
    "endpointInput": ["observedContentType", "mode", "data", "encoding"],
    "endpointOutput": ["observedContentType", "mode", "data", "encoding"],
    "eventMetadata": ["eventId", "inferenceTime"],
}
# {endpoint}/{variant}/yyyy/mm/dd/hh/, then SageMaker's file names: mm-ss-mmm-<uuid>.jsonl
KEY_LAYOUT = re.compile(
    r"data-capture/cnn/mlops-local-cnn/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/"
    r"\d{2}-\d{2}-\d{3}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl"
)
BUCKET = "artifacts"
CONFIG = CaptureConfig(
    destination_uri=f"s3://{BUCKET}/data-capture/cnn/",
    sampling_percentage=100,
    json_content_types=("application/json",),
    csv_content_types=("text/csv",),
)


def _fields(record: dict) -> dict[str, list[str]]:
    return {
        "": list(record),
        "captureData": list(record["captureData"]),
        **{name: list(payload) for name, payload in record["captureData"].items()},
        "eventMetadata": list(record["eventMetadata"]),
    }


def test_a_capture_line_is_byte_for_byte_the_documented_one():
    documented = json.loads(DOCUMENTED_LINE)
    given = documented["captureData"]
    line = capture_line(
        capture_record(
            CONFIG,
            request=given["endpointInput"]["data"].encode(),
            request_content_type="text/csv",
            response=given["endpointOutput"]["data"].encode(),
            response_content_type="text/csv; charset=utf-8",
            event_id="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            inference_time=datetime(2022, 2, 14, 17, 25, 49, 123000, tzinfo=UTC),
        )
    )
    assert line == DOCUMENTED_LINE + "\n"
    assert _fields(json.loads(line)) == DOCUMENTED_FIELDS


@pytest.mark.parametrize(
    "content_type, body, encoding",
    [
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\xff", "BASE64"),
        ("application/json", b'{"instances": [[1, 2]]}', "JSON"),
        ("application/json; charset=utf-8", b"[1, 2]", "JSON"),
        ("text/csv", b"1,2\n3,4\n", "CSV"),
        ("application/x-npy", b"\x93NUMPY", "BASE64"),  # not listed: SageMaker's default
        ("application/json", b"\xff\xfe not utf-8", "BASE64"),  # not text: kept exactly
    ],
)
def test_encoding_follows_the_configs_content_types(content_type, body, encoding):
    record = capture_record(
        CONFIG,
        request=body,
        request_content_type=content_type,
        response=b"{}",
        response_content_type="application/json",
        event_id="e",
        inference_time=datetime.now(UTC),
    )
    captured = record["captureData"]["endpointInput"]
    assert (captured["encoding"], captured["observedContentType"], captured["mode"]) == (
        encoding,
        content_type,
        "INPUT",
    )
    decoded = base64.b64decode(captured["data"]) if encoding == "BASE64" else captured["data"].encode()
    assert decoded == body


def test_capture_options_name_what_is_written():
    config = CaptureConfig.from_api(
        {
            "EnableCapture": True,
            "InitialSamplingPercentage": 20,
            "DestinationS3Uri": "s3://b/p",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        }
    )
    assert config is not None
    record = capture_record(
        config,
        request=b"1",
        request_content_type="text/csv",
        response=b"2",
        response_content_type="text/csv",
        event_id="e",
        inference_time=datetime.now(UTC),
        inference_id="order-17",
    )
    assert list(record["captureData"]) == ["endpointInput"]
    assert record["eventMetadata"]["inferenceId"] == "order-17"
    assert (config.sampling_percentage, config.bucket_and_prefix) == (20, ("b", "p/"))
    assert (
        CaptureConfig.from_api(
            {
                "EnableCapture": False,
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "s3://b/p",
                "CaptureOptions": [],
            }
        )
        is None
    )


def _captured_lines(s3) -> tuple[list[str], list[str]]:
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    lines = [
        line for key in keys for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    ]
    return keys, lines


def test_the_endpoint_captures_runtime_invocations_into_the_key_layout(s3):
    def handler(data, context):
        if data.read() == b"bad":
            raise ValueError("cannot parse")
        return json.dumps({"predictions": [{"label": "7"}]}), "application/json"

    writer = CaptureWriter(CONFIG, "mlops-local-cnn", "AllTraffic", s3, flush_seconds=60)
    app = EndpointApp(
        "mlops-local-cnn",
        servable=None,  # type: ignore[arg-type]  # the handler answers alone: nothing asks the model
        invoke_handler=handler,
        tfs_address=("127.0.0.1", 0),
        capture=writer,
    )
    client = Client(app)
    png = b"\x89PNG\r\n\x1a\nimage"
    for body, content_type in ((png, "image/png"), (b'{"instances": [[0]]}', "application/json")):
        assert (
            client.post(
                "/endpoints/mlops-local-cnn/invocations", data=body, headers={"Content-Type": content_type}
            ).status_code
            == 200
        )
    assert client.post("/endpoints/mlops-local-cnn/invocations", data=b"bad").status_code == 424  # a ModelError
    assert client.post("/invocations", data=png, headers={"Content-Type": "image/png"}).status_code == 200
    assert _captured_lines(s3) == ([], [])  # buffered until the timer or the drain
    app.drain(timeout=5)

    keys, lines = _captured_lines(s3)
    assert len(keys) == 1 and KEY_LAYOUT.fullmatch(keys[0]), keys
    records = [json.loads(line) for line in lines]
    assert [record["captureData"]["endpointInput"]["encoding"] for record in records] == ["BASE64", "JSON"]
    assert base64.b64decode(records[0]["captureData"]["endpointInput"]["data"]) == png
    assert records[0]["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": '{"predictions": [{"label": "7"}]}',
        "encoding": "JSON",
    }
    for record in records:
        assert _fields(record) == DOCUMENTED_FIELDS
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", record["eventMetadata"]["inferenceTime"])
        hour = datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
        assert f"/{hour:%Y/%m/%d/%H}/" in keys[0]
    assert len({record["eventMetadata"]["eventId"] for record in records}) == 2


@pytest.mark.parametrize("percentage", [0, 30, 100])
def test_the_configured_percentage_is_sampled(s3, percentage):
    config = CaptureConfig(
        destination_uri=f"s3://{BUCKET}/data-capture/cnn",
        sampling_percentage=percentage,
        json_content_types=("application/json",),
    )
    writer = CaptureWriter(config, "mlops-local-cnn", "AllTraffic", s3, flush_seconds=60, chance=random.Random(7))
    sampled = sum(
        writer.record(
            request=b"[1]",
            request_content_type="application/json",
            response=b"{}",
            response_content_type="application/json",
        )
        for _ in range(1000)
    )
    writer.close()
    # 1000 draws at 30%: the binomial's 99.99% range is about 300 +- 55.
    assert {0: sampled == 0, 30: 245 <= sampled <= 355, 100: sampled == 1000}[percentage], sampled
    assert len(_captured_lines(s3)[1]) == sampled


def test_a_failed_upload_drops_captures_without_failing(s3):
    writer = CaptureWriter(
        CaptureConfig(destination_uri="s3://no-such-bucket/capture/", sampling_percentage=100),
        "e",
        "AllTraffic",
        s3,
        flush_seconds=60,
    )
    writer.record(request=b"x", request_content_type="text/plain", response=b"y", response_content_type="text/plain")
    writer.close()
    assert writer.dropped == 1
