"""Calls a SageMaker endpoint with a user's input file: one in AWS, or the local endpoint.

    request = encode_input("digit.png", network.request_content_types)
    answer = invoke("mlops-dev-cnn", request, region="eu-west-1")
    answer = invoke("mlops-local-cnn", request, endpoint_url="http://127.0.0.1:8080")

Both go through boto3's `sagemaker-runtime` InvokeEndpoint, so an error from the model arrives the
same way from both: a `ModelError` carrying the container's status and message.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time InvokeEndpoint limit
JSON = "application/json"
CONTENT_TYPES_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".csv": "text/csv",
    ".json": JSON,
    ".txt": "text/plain",
}
# The local endpoint does not check signatures; placeholder keys keep real ones out of the request.
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class InputFileError(ValueError):
    """The input cannot be sent: unreadable, of an unknown kind, too large, or not taken by the network."""


class EndpointRequestError(RuntimeError):
    """The request did not reach the model: unknown endpoint, unreachable URL, no credentials, ..."""


class ModelError(RuntimeError):
    """The model container answered non-2xx (SageMaker Runtime's ModelError, HTTP 424).

    A handler's exception, bad input or not, arrives with original status 500, from AWS and from
    the local endpoint alike. `message` is the container's error text.
    """

    def __init__(self, original_status: int | None, original_message: str, log_stream_arn: str | None) -> None:
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn
        self.message = _container_error_text(original_message)
        super().__init__(f"the model answered {original_status}: {self.message}")


@dataclass(frozen=True)
class EncodedRequest:
    body: bytes
    content_type: str


def encode_input(
    source: str | Path, accepted_content_types: tuple[str, ...], stdin: BinaryIO | None = None
) -> EncodedRequest:
    """A file (or "-" for stdin) as a request body, its content type from the suffix or the bytes."""
    if str(source) == "-":
        body = (stdin or sys.stdin.buffer).read(MAX_PAYLOAD_BYTES + 1)
        origin = "stdin"
        content_type = sniff_content_type(body)
    else:
        path = Path(source)
        origin = str(path)
        try:
            with path.open("rb") as file:
                body = file.read(MAX_PAYLOAD_BYTES + 1)
        except OSError as error:
            raise InputFileError(f"cannot read {path}: {error.strerror or error}") from None
        content_type = CONTENT_TYPES_BY_SUFFIX.get(path.suffix.lower()) or sniff_content_type(body)
    if not body:
        raise InputFileError(f"{origin} is empty")
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InputFileError(f"{origin} is larger than {MAX_PAYLOAD_BYTES} bytes, SageMaker's real-time payload limit")
    if content_type is None:
        raise InputFileError(f"cannot tell what {origin} holds: send a PNG, JPEG, CSV or JSON file")
    if content_type not in accepted_content_types:
        raise InputFileError(f"{origin} is {content_type}; this network takes {', '.join(accepted_content_types)}")
    return EncodedRequest(body, content_type)


def sniff_content_type(data: bytes) -> str | None:
    """image/png, image/jpeg, application/json or text/csv from the first bytes; None if none fits."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    try:
        text = data.decode("utf-8-sig").lstrip()
    except UnicodeDecodeError:
        return None
    if text.startswith(("{", "[")):
        return JSON
    return "text/csv" if text else None


def runtime_client(endpoint_url: str | None = None, region: str | None = None):
    """A boto3 `sagemaker-runtime` client: for AWS, or for the local endpoint at `endpoint_url`."""
    try:
        if endpoint_url is None:
            return boto3.client("sagemaker-runtime", region_name=region)
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5),
            **_LOCAL_CREDENTIALS,
        )
    except BotoCoreError as error:  # e.g. NoRegionError
        raise EndpointRequestError(str(error)) from None


def invoke(
    endpoint_name: str,
    request: EncodedRequest,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    client=None,
):
    """InvokeEndpoint; the answer decoded (JSON -> Python objects, other types -> text)."""
    client = client or runtime_client(endpoint_url, region)
    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name, Body=request.body, ContentType=request.content_type, Accept=JSON
        )
    except client.exceptions.ModelError as error:
        raise ModelError(
            error.response.get("OriginalStatusCode"),
            error.response.get("OriginalMessage", ""),
            error.response.get("LogStreamArn"),
        ) from None
    except ClientError as error:
        details = error.response.get("Error", {})
        raise EndpointRequestError(f"{details.get('Code')}: {details.get('Message')}") from None
    except BotoCoreError as error:  # unreachable URL, no credentials, ...
        raise EndpointRequestError(str(error)) from None
    return decode_answer(response["Body"].read(), response.get("ContentType", ""))


def invoke_async(
    endpoint_name: str,
    input_location: str,
    content_type: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    client=None,
) -> dict[str, str]:
    """InvokeEndpointAsync of an input already in S3: its InferenceId, OutputLocation, FailureLocation."""
    client = client or runtime_client(endpoint_url, region)
    try:
        response = client.invoke_endpoint_async(
            EndpointName=endpoint_name, InputLocation=input_location, ContentType=content_type, Accept=JSON
        )
    except ClientError as error:
        details = error.response.get("Error", {})
        raise EndpointRequestError(f"{details.get('Code')}: {details.get('Message')}") from None
    except BotoCoreError as error:
        raise EndpointRequestError(str(error)) from None
    return {key: response[key] for key in ("InferenceId", "OutputLocation", "FailureLocation") if key in response}


def await_async_answer(s3, accepted: dict[str, str], timeout: float, poll_seconds: float = 1.0):
    """The answer of an accepted async request once it is written (decoded as `invoke` does), or
    ModelError with the failure file's content; TimeoutError if neither appears in time."""
    deadline = time.monotonic() + timeout
    while True:
        for key, failed in (("OutputLocation", False), ("FailureLocation", True)):
            uri = accepted.get(key)
            if not uri:
                continue
            bucket, _, object_key = uri.removeprefix("s3://").partition("/")
            try:
                found = s3.get_object(Bucket=bucket, Key=object_key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue
                raise EndpointRequestError(f"cannot read {uri}: {error}") from None
            body = found["Body"].read()
            if failed:
                raise ModelError(500, body.decode("utf-8", errors="replace"), None)
            return decode_answer(body, found.get("ContentType", ""))
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer in {accepted.get('OutputLocation')} after {timeout:.0f} s")
        time.sleep(poll_seconds)


def decode_answer(body: bytes, content_type: str):
    if content_type.split(";", 1)[0].strip().lower() == JSON:
        return json.loads(body)
    return body.decode("utf-8", errors="replace")


def _container_error_text(original_message: str) -> str:
    """The container answers {"error": "..."}; show the text, not the JSON around it."""
    try:
        return str(json.loads(original_message)["error"])
    except (ValueError, KeyError, TypeError):
        return original_message
