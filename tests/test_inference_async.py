"""SageMaker Runtime's InvokeEndpointAsync against the local endpoint, through an unmodified boto3 client.

The endpoint serves a tiny real CNN with the artifact's own handlers; its asynchronous answers go
to moto's S3 and its notifications to moto's SNS, where SQS queues subscribed to the two topics
receive them as a subscriber in AWS would. botocore's `sagemaker-runtime` model decides what the
request and the answer look like on the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from inference_support import exported_models

from inference.async_inference import AsyncConfig, AsyncTarget
from inference.local_endpoint import LocalEndpoint
from mlops.local.moto import LocalAws, moto_server

pytestmark = pytest.mark.slow  # serves TensorFlow over HTTP

ENDPOINT = "mlops-local-cnn"
BUCKET = "artifacts"
REQUESTS = 100
MALFORMED = 37  # the one request whose input the handler refuses


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with moto_server() as local:
        yield local


@pytest.fixture(scope="module")
def topics(aws: LocalAws) -> dict[str, Any]:
    """The two topics, encrypted with a KMS key, each with an SQS queue subscribed."""
    key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    sns, sqs = aws.client("sns"), aws.client("sqs")
    found: dict[str, Any] = {"key": key}
    for kind in ("success", "error"):
        topic = sns.create_topic(Name=f"{ENDPOINT}-{kind}", Attributes={"KmsMasterKeyId": key})["TopicArn"]
        queue_url = sqs.create_queue(QueueName=f"{ENDPOINT}-{kind}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        found[kind] = (topic, queue_url)
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return found


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, aws: LocalAws, topics: dict[str, Any]) -> Iterator[LocalEndpoint]:
    target = AsyncTarget(
        AsyncConfig(
            output_path=f"s3://{BUCKET}/async/output",
            failure_path=f"s3://{BUCKET}/async/failures",
            success_topic=topics["success"][0],
            error_topic=topics["error"][0],
            kms_key_id=topics["key"],
            max_concurrent_invocations=4,
        ),
        aws={
            "endpoint_url": aws.endpoint_url,
            "region_name": aws.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        },
    )
    model = exported_models(tmp_path_factory)["cnn"]
    with LocalEndpoint(model, ENDPOINT, workers=1, async_target=target) as served:
        yield served


def runtime(endpoint: LocalEndpoint) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def messages(aws: LocalAws, queue_url: str, expected: int, timeout: float = 120) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in batch.get("Messages", []):
            received.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return received


def test_a_hundred_async_requests_land_in_the_output_path_the_failure_path_and_their_topics(aws, topics, endpoint):
    s3, client = aws.client("s3"), runtime(endpoint)
    images = np.random.default_rng(2).integers(0, 256, (REQUESTS, 8, 8, 1)).astype(float)
    accepted = {}
    for index, image in enumerate(images):
        body = {"instances": [image.tolist()]} if index != MALFORMED else {"instances": [[1, 2, 3]]}
        key = f"async/input/{index}.json"
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())
        answer = client.invoke_endpoint_async(
            EndpointName=ENDPOINT,
            InputLocation=f"s3://{BUCKET}/{key}",
            ContentType="application/json",
            InferenceId=f"request-{index}",
        )
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert answer["InferenceId"] == f"request-{index}"
        assert answer["OutputLocation"] == f"s3://{BUCKET}/async/output/request-{index}.out"
        assert answer["FailureLocation"] == f"s3://{BUCKET}/async/failures/request-{index}-error.out"
        accepted[index] = answer

    succeeded = messages(aws, topics["success"][1], REQUESTS - 1)
    failed = messages(aws, topics["error"][1], 1)
    assert sorted(message["inferenceId"] for message in succeeded) == sorted(
        f"request-{index}" for index in range(REQUESTS) if index != MALFORMED
    )
    assert [message["inferenceId"] for message in failed] == [f"request-{MALFORMED}"]
    for message in succeeded:
        assert message["invocationStatus"] == "Completed" and message["eventName"] == "InferenceResult"
        index = int(message["inferenceId"].split("-")[1])
        assert message["requestParameters"] == {
            "endpointName": ENDPOINT,
            "inputLocation": f"s3://{BUCKET}/async/input/{index}.json",
            "contentType": "application/json",
        }
        assert message["responseParameters"]["outputLocation"] == accepted[index]["OutputLocation"]
        output = s3.get_object(Bucket=BUCKET, Key=f"async/output/request-{index}.out")
        assert output["ServerSideEncryption"] == "aws:kms"
        (prediction,) = json.loads(output["Body"].read())["predictions"]
        assert prediction["label"] in [str(digit) for digit in range(10)]
    (failure,) = failed
    assert failure["invocationStatus"] == "Failed" and "(500)" in failure["failureReason"]
    error = json.loads(s3.get_object(Bucket=BUCKET, Key=f"async/failures/request-{MALFORMED}-error.out")["Body"].read())
    assert "'instances' has shape [1, 3]" in error["error"]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key=f"async/output/request-{MALFORMED}.out")


def test_runtime_refusals_are_validation_errors(endpoint):
    client = runtime(endpoint)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint_async(EndpointName="mlops-local-rnn", InputLocation=f"s3://{BUCKET}/x")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation="https://example.com/x")
    assert "not an S3 URI" in caught.value.response["Error"]["Message"]


def test_mlops_invoke_async_uploads_the_input_and_prints_the_answer_once_written(aws, endpoint, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlops.cli import app
    from mlops.errors import UsageError

    for name, value in aws.env.items():
        monkeypatch.setenv(name, value)
    image = tmp_path / "digit.json"
    image.write_text(json.dumps({"instances": [[[[7.0]] * 8] * 8]}))
    arguments = ["invoke", "cnn", str(image), "--local", endpoint.url, "--async", "--wait", "60"]
    answered = CliRunner().invoke(app, [*arguments, "--input-location", f"s3://{BUCKET}/async/input/cli.json"])
    assert answered.exit_code == 0, answered.output
    accepted, _, answer = answered.output.partition("}\n{")
    assert json.loads(accepted + "}")["OutputLocation"].startswith(f"s3://{BUCKET}/async/output/")
    (prediction,) = json.loads("{" + answer)["predictions"]
    assert prediction["label"] in [str(digit) for digit in range(10)]
    refused = CliRunner().invoke(app, arguments)  # main() turns a UsageError into one line and exit code 2
    assert isinstance(refused.exception, UsageError) and "--async needs --input-location" in str(refused.exception)
