"""Which AWS a command talks to: one description, two kinds.

- `ShellAws`: whatever this shell's environment points at (a profile, SSO, `AWS_ENDPOINT_URL` of a
  moto server), through boto3's default credential chain, in the stage's region;
- `mlops.local.moto.LocalAws`: the embedded moto server that `mlops local` starts.

Both are an `AwsTarget`: the environment a subprocess (the CDK CLI, a training launcher) needs to
reach that AWS, the CDK environment `cdk bootstrap` takes, boto3 clients for the same place, and
whether it is a moto server (whose gaps the CDK CLI must work around, `mlops.cdk`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

import boto3
import requests
from botocore.config import Config

# AWS's own endpoints: no need to ask them whether they are moto.
_AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


class AwsTarget(Protocol):
    @property
    def env(self) -> dict[str, str]: ...

    @property
    def environment(self) -> str: ...

    def client(self, service: str, config: Config | None = None) -> Any: ...

    @property
    def is_moto(self) -> bool: ...


@dataclass(frozen=True)
class ShellAws:
    """The AWS this shell's environment points at: a real account, or a moto server."""

    region: str

    @property
    def env(self) -> dict[str, str]:
        return {
            **{key: value for key, value in os.environ.items() if key.startswith("AWS_")},
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def environment(self) -> str:
        account = self.client("sts").get_caller_identity()["Account"]
        return f"aws://{account}/{self.region}"

    def client(self, service: str, config: Config | None = None) -> Any:
        return boto3.client(service, region_name=self.region, config=config)

    @functools.cached_property
    def is_moto(self) -> bool:
        """Whether the CloudFormation endpoint this shell points at (AWS_ENDPOINT_URL, a
        service-specific one, or a profile's endpoint_url, as boto3 resolves them) is a moto server."""
        return answers_as_moto(self.client("cloudformation").meta.endpoint_url)


def answers_as_moto(endpoint_url: str) -> bool:
    """Whether `endpoint_url` is a moto server: moto's own API answers there (`GET /moto-api/config`,
    which reads its settings and changes nothing). AWS's endpoints are not asked."""
    host = urlparse(endpoint_url).hostname or ""
    if host.endswith(_AWS_DOMAINS):
        return False
    try:
        answer = requests.get(f"{endpoint_url.rstrip('/')}/moto-api/config", timeout=5)
        return answer.ok and isinstance(answer.json(), dict)
    except (requests.RequestException, ValueError):
        return False
