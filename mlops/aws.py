"""Which AWS a command talks to: one description, two kinds.

- `ShellAws`: whatever this shell's environment points at (a profile, SSO, `AWS_ENDPOINT_URL` of a
  moto server), through boto3's default credential chain, in the stage's region;
- `mlops.local.moto.LocalAws`: the embedded moto server that `mlops local` starts.

Both are an `AwsTarget`: the environment a subprocess (the CDK CLI, a training launcher) needs to
reach that AWS, the CDK environment `cdk bootstrap` takes, and boto3 clients for the same place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config


class AwsTarget(Protocol):
    @property
    def env(self) -> dict[str, str]: ...

    @property
    def environment(self) -> str: ...

    def client(self, service: str, config: Config | None = None) -> Any: ...


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
