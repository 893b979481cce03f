"""Data capture as SageMaker's real-time endpoints write it, for the local endpoint.

With an endpoint config's `DataCaptureConfig`, SageMaker samples `InitialSamplingPercentage` of
the invocations and writes each one as a line of JSON into S3, in files grouped by the hour of
the invocation (awsdocs/amazon-sagemaker-developer-guide, doc_source/model-monitor-data-capture.md):

    <DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl

    {"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"...",
    "encoding":"CSV"},"endpointOutput":{"observedContentType":"application/json","mode":"OUTPUT",
    "data":"...","encoding":"JSON"}},"eventMetadata":{"eventId":"<uuid>","inferenceTime":
    "2022-02-14T17:25:49Z"},"eventVersion":"0"}

`data` is the body as text for the content types the config lists under
`CaptureContentTypeHeader.JsonContentTypes` (encoding JSON) or `CsvContentTypes` (CSV), and
base64 for anything else (a PNG request), which is also SageMaker's default when no types are
listed. `eventMetadata.inferenceId` appears when the caller gave one (`InferenceId`). Only what
`CaptureOptions` names is written (`Input`, `Output`). File names start with the minute, second
and millisecond of the file within its hour folder, as in the files SageMaker writes.

SageMaker buffers captures and delivers them within minutes. Here each server process (a
gunicorn worker) buffers its captures and writes a file per hour folder every `flush_seconds`
and when the endpoint stops, signed as the endpoint's execution role, encrypted with the
config's `KmsKeyId`. Only invocations through SageMaker Runtime's path that the model answered
2xx are captured: the container path is what SageMaker calls, not what it records.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

EVENT_VERSION = "0"
INPUT_MODE, OUTPUT_MODE = "INPUT", "OUTPUT"
JSON_ENCODING, CSV_ENCODING, BASE64_ENCODING = "JSON", "CSV", "BASE64"
FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class CaptureConfig:
    """An endpoint config's DataCaptureConfig (CreateEndpointConfig's shape), as the endpoint applies it."""

    destination_uri: str
    sampling_percentage: int
    capture_input: bool = True
    capture_output: bool = True
    json_content_types: tuple[str, ...] = ()
    csv_content_types: tuple[str, ...] = ()
    kms_key_id: str | None = None

    @classmethod
    def from_api(cls, data_capture_config: Mapping[str, Any]) -> CaptureConfig | None:
        """From DescribeEndpointConfig's `DataCaptureConfig`; None when capture is off."""
        if not data_capture_config or not data_capture_config.get("EnableCapture", True):
            return None
        modes = {option["CaptureMode"] for option in data_capture_config.get("CaptureOptions", [])}
        headers = data_capture_config.get("CaptureContentTypeHeader") or {}
        return cls(
            destination_uri=data_capture_config["DestinationS3Uri"],
            sampling_percentage=int(data_capture_config["InitialSamplingPercentage"]),
            capture_input=bool(modes & {"Input", "InputAndOutput"}),
            capture_output=bool(modes & {"Output", "InputAndOutput"}),
            json_content_types=tuple(headers.get("JsonContentTypes", ())),
            csv_content_types=tuple(headers.get("CsvContentTypes", ())),
            kms_key_id=data_capture_config.get("KmsKeyId"),
        )

    def encoding(self, content_type: str | None) -> str:
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type in self.json_content_types:
            return JSON_ENCODING
        if media_type in self.csv_content_types:
            return CSV_ENCODING
        return BASE64_ENCODING

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        if not self.destination_uri.startswith("s3://"):
            raise ValueError(f"DestinationS3Uri must be an s3:// URI, got {self.destination_uri!r}")
        bucket, _, prefix = self.destination_uri[len("s3://") :].partition("/")
        return bucket, (prefix.rstrip("/") + "/") if prefix else ""


@dataclass(frozen=True)
class CaptureTarget:
    """Where an endpoint's server processes write: the config, and the AWS they sign for (the
    execution role's credentials, the endpoint URL of a local AWS). Plain data, so it crosses
    into the server process inside its JSON spec."""

    config: CaptureConfig
    aws: dict[str, str] = field(default_factory=dict)
    """endpoint_url, region_name, aws_access_key_id, aws_secret_access_key, aws_session_token."""
    flush_seconds: float = FLUSH_SECONDS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> CaptureTarget:
        config = dict(document["config"])
        for name in ("json_content_types", "csv_content_types"):
            config[name] = tuple(config[name])
        return cls(
            config=CaptureConfig(**config), aws=dict(document["aws"]), flush_seconds=float(document["flush_seconds"])
        )


def capture_record(
    config: CaptureConfig,
    *,
    request: bytes,
    request_content_type: str | None,
    response: bytes,
    response_content_type: str | None,
    event_id: str,
    inference_time: datetime,
    inference_id: str | None = None,
) -> dict[str, Any]:
    """One capture line as a dict, its keys in SageMaker's order."""
    capture: dict[str, Any] = {}
    if config.capture_input:
        capture["endpointInput"] = _payload(config, INPUT_MODE, request, request_content_type)
    if config.capture_output:
        capture["endpointOutput"] = _payload(config, OUTPUT_MODE, response, response_content_type)
    metadata = {"eventId": event_id, "inferenceTime": inference_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": EVENT_VERSION}


def capture_line(record: Mapping[str, Any]) -> str:
    """The record as SageMaker serializes it: compact, keys in order, one line."""
    return json.dumps(record, separators=(",", ":")) + "\n"


def _payload(config: CaptureConfig, mode: str, body: bytes, content_type: str | None) -> dict[str, str]:
    encoding = config.encoding(content_type)
    if encoding != BASE64_ENCODING:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:  # text that is not text is kept exactly, as base64
            encoding = BASE64_ENCODING
    if encoding == BASE64_ENCODING:
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


def hour_prefix(key_prefix: str, endpoint_name: str, variant: str, when: datetime) -> str:
    """`<prefix><endpoint>/<variant>/yyyy/mm/dd/hh/`: the folder of the captures of `when`'s hour (UTC)."""
    return f"{key_prefix}{endpoint_name}/{variant}/{when.astimezone(UTC):%Y/%m/%d/%H}/"


def capture_file_name(created: datetime) -> str:
    created = created.astimezone(UTC)
    return f"{created:%M-%S}-{created.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"


class CaptureWriter:
    """Samples invocations and writes them, buffered, as capture files (thread-safe)."""

    def __init__(
        self,
        config: CaptureConfig,
        endpoint_name: str,
        variant: str,
        s3: Any,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        chance: random.Random | None = None,
    ) -> None:
        self.config = config
        self.endpoint_name = endpoint_name
        self.variant = variant
        self._s3 = s3
        self._bucket, self._key_prefix = config.bucket_and_prefix
        self._chance = chance or random.Random()
        self._buffer: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._flush_every, args=(flush_seconds,), name="data-capture", daemon=True
        )
        self._thread.start()

    def record(
        self,
        *,
        request: bytes,
        request_content_type: str | None,
        response: bytes,
        response_content_type: str | None,
        inference_id: str | None = None,
    ) -> bool:
        """Captures one invocation with the config's sampling chance; True if it was sampled."""
        if self._chance.random() * 100 >= self.config.sampling_percentage:
            return False
        now = datetime.now(UTC)
        line = capture_line(
            capture_record(
                self.config,
                request=request,
                request_content_type=request_content_type,
                response=response,
                response_content_type=response_content_type,
                event_id=str(uuid.uuid4()),
                inference_time=now,
                inference_id=inference_id,
            )
        )
        folder = hour_prefix(self._key_prefix, self.endpoint_name, self.variant, now)
        with self._lock:
            self._buffer.setdefault(folder, []).append(line)
        return True

    def flush(self) -> None:
        """Writes what is buffered: one file per hour folder. An upload that fails is logged and
        its captures dropped (counted): capture never fails or delays an invocation."""
        with self._flushing:
            with self._lock:
                pending, self._buffer = self._buffer, {}
            for folder, lines in pending.items():
                key = folder + capture_file_name(datetime.now(UTC))
                encryption = (
                    {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.kms_key_id}
                    if self.config.kms_key_id
                    else {}
                )
                try:
                    self._s3.put_object(
                        Bucket=self._bucket,
                        Key=key,
                        Body="".join(lines).encode(),
                        ContentType="application/jsonl",
                        **encryption,
                    )
                except Exception as error:
                    self.dropped += len(lines)
                    log.warning(
                        "data capture: %d captures dropped, s3://%s/%s not written: %s",
                        len(lines),
                        self._bucket,
                        key,
                        error,
                    )

    def close(self) -> None:
        """Stops the timer and writes what is left."""
        self._stop.set()
        self._thread.join()
        self.flush()

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()


def writer_for(target: CaptureTarget, endpoint_name: str, variant: str) -> CaptureWriter:
    """The writer of one server process, with an S3 client of its own."""
    import boto3

    aws = dict(target.aws)
    endpoint_url = aws.pop("endpoint_url", None)
    s3 = boto3.session.Session(**aws).client("s3", endpoint_url=endpoint_url)
    return CaptureWriter(target.config, endpoint_name, variant, s3, flush_seconds=target.flush_seconds)
