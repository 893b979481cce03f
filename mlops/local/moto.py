"""An embedded moto server: a local, in-memory AWS that the real CDK CLI can deploy to.

    with moto_server() as aws:                      # a free port on 127.0.0.1, empty
        CdkCli(target=aws, stage="local", output_dir=assembly).deploy()
        aws.client("s3").list_buckets()
        subprocess.run([...], env={**os.environ, **aws.env})   # any other AWS client

What moto implements, and what it silently skips, is in docs/local.md ("What a green local deploy proves").
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from botocore.config import Config
from moto.kms.models import Key as MotoKmsKey
from moto.server import ThreadedMotoServer

from mlops.errors import UsageError

ACCOUNT = "123456789012"  # moto's default account; the `local` stage in cdk.json names it too
REGION = "us-east-1"
HOST = "127.0.0.1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# moto loads a service's backend on the first request to it: seconds for CloudFormation (which
# imports the models of every resource type it knows), one or two for S3 or SSM. These
# read-only calls, one per service a local run uses, load them while the app synthesizes.
_WARM_UP_CALLS = (
    ("cloudformation", "list_stacks"),
    ("s3", "list_buckets"),
    ("sts", "get_caller_identity"),
    ("ssm", "describe_parameters"),
    ("iam", "list_roles"),
    ("kms", "list_keys"),
    ("ecr", "describe_repositories"),
    ("sagemaker", "list_pipelines"),
    ("cloudwatch", "list_dashboards"),
    ("events", "list_rules"),
)


@dataclass(frozen=True)
class LocalAws:
    """A running moto server: where it listens, and how to reach it."""

    port: int
    region: str = REGION
    account: str = ACCOUNT

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a subprocess (the CDK CLI, a training launcher) needs to use this server."""
        return {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            # moto resolves a CloudFormation TemplateURL path-style only when it says `localhost`.
            "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION": f"http://localhost:{self.port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @property
    def is_moto(self) -> bool:
        return True

    @property
    def environment(self) -> str:
        """The CDK environment, as `cdk bootstrap` takes it."""
        return f"aws://{self.account}/{self.region}"

    def client(self, service: str, config: Config | None = None, credentials: dict[str, str] = CREDENTIALS) -> Any:
        """A client of `service` on this server, signing with `credentials` (default: the harness's).

        Made from one session for the whole process, so that botocore parses each service model
        and the endpoint rules once (a new session per client re-read them: about 0.2 s per
        client, several seconds of every local run). The credentials are the client's own, never
        the session's; boto3 sessions are not thread-safe, hence the lock."""
        with _SESSION_LOCK:
            return _shared_session().client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=config,
                aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
            )

    def warm_up(self) -> None:
        """One read-only call per service a local run uses (see _WARM_UP_CALLS); changes nothing."""
        once = Config(retries={"total_max_attempts": 1})
        for service, operation in _WARM_UP_CALLS:
            try:
                getattr(self.client(service, once), operation)()
            except Exception:
                return


_SESSION_LOCK = threading.Lock()


@functools.cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


def apply_moto_fixes() -> None:
    """Works around moto bugs that break deploying this project's real templates. Idempotent.

    moto 5.2.5's CloudFormation handler for AWS::KMS::Key hands its properties to the KMS
    backend as they are in the template, but the backend expects the KMS API's shapes:
    - `Tags` in CloudFormation's Key/Value shape, read as TagKey/TagValue: the key is never
      created and the stack fails with "Fn::GetAtt references undefined resource";
    - `KeyPolicy` as a JSON object, kept where a JSON string belongs: DescribeKey then fails.
    The templates stay as AWS wants them; moto gets what it reads. In-process `mock_aws`
    tests call this too.
    """
    original = MotoKmsKey.__dict__["create_from_cloudformation_json"].__func__  # the classmethod's function
    if getattr(original, "translates_cloudformation_tags", False):
        return

    def create_from_cloudformation_json(
        cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        properties = dict(cloudformation_json.get("Properties", {}))
        tags = properties.get("Tags") or []
        if tags and "Key" in tags[0]:
            properties["Tags"] = [{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in tags]
        if isinstance(properties.get("KeyPolicy"), dict):
            properties["KeyPolicy"] = json.dumps(properties["KeyPolicy"])
        return original(
            cls, resource_name, {**cloudformation_json, "Properties": properties}, account_id, region_name, **kwargs
        )

    create_from_cloudformation_json.translates_cloudformation_tags = True  # type: ignore[attr-defined]
    MotoKmsKey.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[method-assign,assignment]  # moto's class, patched in place


def check_port(port: int) -> None:
    """A UsageError unless `port` is a TCP port free on 127.0.0.1 (callers check before starting anything)."""
    if not 0 < port < 65536:
        raise UsageError(f"port {port} is not a TCP port (1-65535)")
    # ThreadedMotoServer.start() waits forever if its thread cannot bind, so ask first.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            reason = "is already in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error})"
            raise UsageError(
                f"port {port} on {HOST} {reason}: choose another with --port, or leave it out to pick a free one"
            ) from None


@contextmanager
def _quiet_moto_logs() -> Iterator[None]:
    # A line per request, and one per resource type moto's CloudFormation skips (docs/local.md
    # lists those), would bury the CDK CLI's own output.
    loggers = [logging.getLogger(name) for name in ("werkzeug", "moto")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto", category=UserWarning)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def moto_server(port: int | None = None) -> Iterator[LocalAws]:
    """Starts moto on 127.0.0.1 (`port`, or a free one), empty, and stops it on exit, however exited."""
    if port is not None:
        check_port(port)
    apply_moto_fixes()
    with _quiet_moto_logs():
        # Port 0 lets the OS pick a free port at bind time, with no window for another process to take it.
        server = ThreadedMotoServer(ip_address=HOST, port=port or 0, verbose=False)
        server.start()
        warming: threading.Thread | None = None
        try:
            aws = LocalAws(port=server.get_host_and_port()[1])
            # Moto keeps its state per process: start from nothing even if an earlier server ran here.
            requests.post(f"{aws.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
            warming = threading.Thread(target=aws.warm_up, name="moto-warm-up", daemon=True)
            warming.start()
            yield aws
        finally:
            server.stop()
            if warming is not None:
                warming.join()  # its calls fail at once when the server has stopped
