"""SageMaker Runtime's InvokeEndpointAsync, as an asynchronous endpoint answers it, for the local endpoint.

`POST /endpoints/<name>/async-invocations` (botocore's `sagemaker-runtime` model: the request's
`X-Amzn-SageMaker-InputLocation`, `-Content-Type`, `-Accept`, `-Custom-Attributes`,
`-Inference-Id`, `-S3OutputPathExtension`, `-Filename` headers, or an inline body of at most
128,000 bytes instead of the input location) is accepted at once with HTTP 202: the body
`{"InferenceId": ...}` and the headers `X-Amzn-SageMaker-OutputLocation` and
`X-Amzn-SageMaker-FailureLocation`. The request is then queued and answered in the background
by as many threads as the endpoint config's `MaxConcurrentInvocationsPerInstance`, each as an
instance of the endpoint does it:

1. the input is read from S3 (as the endpoint's execution role);
2. the container's handler answers it, through the same path as InvokeEndpoint;
3. a 2xx answer is written to `<S3OutputPath>/[<extension>/]<Filename or inference id>.out`, any
   other to `<S3FailurePath>/[<extension>/]<inference id>-error.out` (the container's body), each
   encrypted with the config's `KmsKeyId`;
4. a notification is published to the config's `SuccessTopic` or `ErrorTopic`: the JSON message
   of the Developer Guide's "Check prediction results" (`awsRegion`, `eventTime`, `receivedTime`,
   `invocationStatus`, `requestParameters`, `responseParameters`, `inferenceId`, `eventVersion`,
   `eventSource`, `eventName`, and `failureReason` on failure).

An input that cannot be read fails the request the same way (failure file and error topic).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

INPUT_LOCATION = "X-Amzn-SageMaker-InputLocation"
CONTENT_TYPE = "X-Amzn-SageMaker-Content-Type"
ACCEPT = "X-Amzn-SageMaker-Accept"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID = "X-Amzn-SageMaker-Inference-Id"
OUTPUT_PATH_EXTENSION = "X-Amzn-SageMaker-S3OutputPathExtension"
FILENAME = "X-Amzn-SageMaker-Filename"
OUTPUT_LOCATION = "X-Amzn-SageMaker-OutputLocation"
FAILURE_LOCATION = "X-Amzn-SageMaker-FailureLocation"
MAX_INLINE_BODY_BYTES = 128_000  # botocore's documentation of the inline Body
DEFAULT_CONCURRENCY = 1
STOP_SECONDS = 60.0

Invoke = Callable[[bytes, str | None, str | None, str | None], tuple[int, bytes, str]]
"""(body, content type, accept, custom attributes) -> (status, body, content type): the container."""


@dataclass(frozen=True)
class AsyncConfig:
    """An endpoint config's AsyncInferenceConfig (CreateEndpointConfig's shape)."""

    output_path: str
    failure_path: str | None = None
    success_topic: str | None = None
    error_topic: str | None = None
    kms_key_id: str | None = None
    max_concurrent_invocations: int = DEFAULT_CONCURRENCY

    @classmethod
    def from_api(cls, config: Mapping[str, Any] | None) -> AsyncConfig | None:
        """From DescribeEndpointConfig's `AsyncInferenceConfig`; None for a real-time endpoint."""
        if not config:
            return None
        output = config["OutputConfig"]
        notification = output.get("NotificationConfig") or {}
        client = config.get("ClientConfig") or {}
        return cls(
            output_path=output["S3OutputPath"],
            failure_path=output.get("S3FailurePath"),
            success_topic=notification.get("SuccessTopic"),
            error_topic=notification.get("ErrorTopic"),
            kms_key_id=output.get("KmsKeyId"),
            max_concurrent_invocations=int(client.get("MaxConcurrentInvocationsPerInstance", DEFAULT_CONCURRENCY)),
        )


@dataclass(frozen=True)
class AsyncTarget:
    """The config and the AWS the endpoint's server signs for (the execution role's credentials, a
    local AWS's URL). Plain data, so that it crosses into the server process in its JSON spec."""

    config: AsyncConfig
    aws: dict[str, str] = field(default_factory=dict)
    """endpoint_url, region_name, aws_access_key_id, aws_secret_access_key, aws_session_token."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> AsyncTarget:
        return cls(AsyncConfig(**document["config"]), dict(document["aws"]))


@dataclass(frozen=True)
class AsyncRequest:
    inference_id: str
    endpoint_name: str
    input_location: str | None
    body: bytes | None
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    output_location: str
    failure_location: str | None
    received: datetime


class RequestRefused(ValueError):
    """What SageMaker Runtime answers 400 ValidationError with: the message says why."""


class AsyncInvocations:
    """Accepts InvokeEndpointAsync requests and answers them in the background (thread-safe)."""

    def __init__(self, endpoint_name: str, target: AsyncTarget, invoke: Invoke, clients: Any = None) -> None:
        self.endpoint_name = endpoint_name
        self.config = target.config
        self._region = target.aws.get("region_name", "us-east-1")
        self._s3, self._sns = clients or _clients(target.aws)
        self._invoke = invoke
        self._queue: queue.Queue[AsyncRequest | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"async-{index}", daemon=True)
            for index in range(max(1, self.config.max_concurrent_invocations))
        ]
        for thread in self._threads:
            thread.start()

    def accept(self, headers: Any, body: bytes) -> AsyncRequest:
        """Checks and queues one request (RequestRefused if SageMaker Runtime would refuse it);
        `headers` is the HTTP request's (a mapping read with `.get`)."""
        location = headers.get(INPUT_LOCATION)
        if (location is None) == (not body):
            raise RequestRefused("Provide exactly one of InputLocation and Body.")
        if location is not None and not location.startswith("s3://"):
            raise RequestRefused(f"InputLocation {location} is not an S3 URI (s3://bucket/key).")
        if body and len(body) > MAX_INLINE_BODY_BYTES:
            raise RequestRefused(f"The inline Body is larger than {MAX_INLINE_BODY_BYTES} bytes; use InputLocation.")
        inference_id = headers.get(INFERENCE_ID) or str(uuid.uuid4())
        extension = (headers.get(OUTPUT_PATH_EXTENSION) or "").strip("/")
        name = headers.get(FILENAME) or f"{inference_id}.out"
        request = AsyncRequest(
            inference_id=inference_id,
            endpoint_name=self.endpoint_name,
            input_location=location,
            body=body or None,
            content_type=headers.get(CONTENT_TYPE),
            accept=headers.get(ACCEPT),
            custom_attributes=headers.get(CUSTOM_ATTRIBUTES),
            output_location=_join(self.config.output_path, extension, name),
            failure_location=(
                _join(self.config.failure_path, extension, f"{inference_id}-error.out")
                if self.config.failure_path
                else None
            ),
            received=datetime.now(UTC),
        )
        self._queue.put(request)
        return request

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Answers what is queued (within `timeout`), then stops the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while (request := self._queue.get()) is not None:
            try:
                self._answer(request)
            except Exception:
                log.exception("async inference %s: the answer could not be delivered", request.inference_id)

    def _answer(self, request: AsyncRequest) -> None:
        try:
            body = request.body if request.body is not None else self._read(request.input_location or "")
        except Exception as error:
            status, answer, content_type = 400, json.dumps({"error": f"cannot read the input: {error}"}).encode(), ""
        else:
            status, answer, content_type = self._invoke(
                body, request.content_type, request.accept, request.custom_attributes
            )
        if 200 <= status < 300:
            self._write(request.output_location, answer, content_type)
            self._notify(self.config.success_topic, _message(request, self._region, status, content_type))
        else:
            if request.failure_location:
                self._write(request.failure_location, answer, content_type or "application/json")
            self._notify(self.config.error_topic, _message(request, self._region, status, content_type))

    def _read(self, uri: str) -> bytes:
        bucket, key = _split(uri)
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _write(self, uri: str, body: bytes, content_type: str) -> None:
        bucket, key = _split(uri)
        encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.kms_key_id} if self.config.kms_key_id else {}
        )
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **encryption)

    def _notify(self, topic: str | None, message: dict[str, Any]) -> None:
        if topic:
            self._sns.publish(TopicArn=topic, Message=json.dumps(message))


def _message(request: AsyncRequest, region: str, status: int, content_type: str) -> dict[str, Any]:
    """The notification SageMaker publishes for one async inference."""
    succeeded = 200 <= status < 300
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": _iso(datetime.now(UTC)),
        "receivedTime": _iso(request.received),
        "invocationStatus": "Completed" if succeeded else "Failed",
    }
    if not succeeded:
        message["failureReason"] = (
            f"ClientError: Received server error ({status}) from model. "
            "See the SageMaker Endpoint logs in your account for more information."
        )
    parameters = {"endpointName": request.endpoint_name, "inputLocation": request.input_location or "inline"}
    if request.content_type:
        parameters["contentType"] = request.content_type
    message["requestParameters"] = parameters
    if succeeded:
        message["responseParameters"] = {"contentType": content_type, "outputLocation": request.output_location}
    elif request.failure_location:
        message["responseParameters"] = {"contentType": content_type, "failureLocation": request.failure_location}
    message.update(
        inferenceId=request.inference_id, eventVersion="1.0", eventSource="aws:sagemaker", eventName="InferenceResult"
    )
    return message


def _clients(aws: Mapping[str, str]) -> tuple[Any, Any]:
    import boto3

    settings = dict(aws)
    endpoint_url = settings.pop("endpoint_url", None)
    session = boto3.session.Session(**settings)
    return session.client("s3", endpoint_url=endpoint_url), session.client("sns", endpoint_url=endpoint_url)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(part for part in parts if part)])


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
