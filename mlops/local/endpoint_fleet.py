"""The endpoints of the local AWS that `mlops up` keeps: what SageMaker hosting does with a deployed
endpoint, done on this machine.

moto's CloudFormation records an endpoint stack's endpoint (InService at once) and runs nothing.
So, for as long as the environment is up, every network's endpoint stack is looked at each
second: while one is deployed, a local endpoint (`inference.local_endpoint`) serves the model
version its stack names (its `ModelPackageArn` output: what the stack's model references), under
the endpoint's name as AWS would name it (`infra.naming.endpoint_name`; moto makes up its own),
with the data capture of the deployed endpoint config, and the model downloaded as the execution
role, as `mlops local` serves it. When `mlops deploy` points the stack at another version, the new
version's endpoint is started first and takes the traffic once it has loaded the model, then the
old one stops (a blue/green update without its bake time); when the stack is deleted (`mlops
undeploy`), its endpoint stops. InvokeEndpoint reaches it through the local AWS
(`mlops.local.moto_service`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moto.backends import get_backend

from infra import naming
from infra.config import StageConfig
from mlops.local.drift import capture_target
from mlops.local.iam import RoleSessions
from mlops.local.moto import LocalAws
from mlops.local.s3 import download_file

if TYPE_CHECKING:
    from inference.local_endpoint import LocalEndpoint

log = logging.getLogger(__name__)
DEPLOYED = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")


@dataclass
class Served:
    model_arn: str
    endpoint: LocalEndpoint


class EndpointFleet:
    def __init__(
        self, aws: LocalAws, roles: RoleSessions, config: StageConfig, folder: Path, say: Callable[[str], None]
    ) -> None:
        self._aws = aws
        self._roles = roles
        self._config = config
        self._folder = folder
        self._say = say
        self._served: dict[str, Served] = {}
        self._lock = threading.Lock()
        self._closed = False

    def adopt(self, network: str, model_arn: str, endpoint: LocalEndpoint) -> None:
        """An endpoint already serving `model_arn` for `network` (the one `mlops up`'s phases started)."""
        with self._lock:
            self._served[naming.endpoint_name(self._config.prefix(), network)] = Served(model_arn, endpoint)

    def url(self, name: str) -> str | None:
        """Where the local endpoint of endpoint `name` listens, or None if none serves it."""
        with self._lock:
            served = self._served.get(name)
        return served.endpoint.url if served else None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._served)

    def reconcile(self) -> None:
        """Starts, replaces or stops local endpoints so that each serves what its stack deploys."""
        prefix = self._config.prefix()
        for network in self._config.networks:
            name = naming.endpoint_name(prefix, network)
            outputs = stack_outputs(self._aws, naming.endpoint_stack_name(prefix, network))
            wanted = (outputs or {}).get("ModelPackageArn")
            with self._lock:
                current = self._served.get(name)
            if (current.model_arn if current else None) == wanted:
                continue
            if wanted is not None and outputs is not None:
                try:
                    replacement = self._start(name, wanted, outputs["EndpointName"])
                except Exception as error:  # a model that cannot be served: the old one goes on
                    self._say(f"endpoint {name}: cannot serve {wanted}: {error}")
                    continue
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._served[name] = Served(wanted, replacement)
                if closed:  # stopped while it started
                    replacement.stop()
                    return
                self._say(f"endpoint {name} serves {wanted} at {replacement.url}")
            else:
                with self._lock:
                    self._served.pop(name, None)
                self._say(f"endpoint {name} deleted: its local endpoint stops")
            if current is not None:
                current.endpoint.stop()

    def stop(self) -> None:
        with self._lock:
            served, self._served, self._closed = list(self._served.values()), {}, True
        for item in served:
            item.endpoint.stop()

    def _start(self, name: str, model_arn: str, moto_endpoint: str) -> LocalEndpoint:
        from inference.local_endpoint import LocalEndpoint

        package = self._aws.client("sagemaker").describe_model_package(ModelPackageName=model_arn)
        model_data = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        role_outputs = stack_outputs(self._aws, naming.stack_name(self._config.prefix(), "execution-role")) or {}
        execution_role = role_outputs["ExecutionRoleArn"]
        version = model_arn.rsplit("/", 1)[-1]
        model_path = self._folder / "endpoints" / name / version / "model.tar.gz"
        # SageMaker downloads the endpoint's model as the model's execution role.
        download_file(self._roles.client(execution_role, "s3", "endpoint"), model_data, model_path)
        endpoint = LocalEndpoint(
            model_path,
            name,
            workers=1,
            capture=capture_target(self._aws, self._roles, moto_endpoint, execution_role),
            log_path=self._folder / "logs" / f"endpoint-{name}-{version}.log",
        )
        return endpoint.start()


def stack_outputs(aws: LocalAws, stack_name: str) -> dict[str, str] | None:
    """The outputs of `stack_name` while it is deployed in the local AWS, else None. Read from moto's
    state in this process (as the service knows its own), not through calls that IAM would record."""
    backend: Any = get_backend("cloudformation")[aws.account][aws.region]
    for stack in list(backend.stacks.values()):
        if stack.name == stack_name and stack.status in DEPLOYED:
            return {output["OutputKey"]: output["OutputValue"] for output in stack.outputs or []}
    return None
