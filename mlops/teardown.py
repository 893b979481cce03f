"""Tearing down what a stage deployed, as `cdk destroy` would, from what CloudFormation holds.

A stage's stacks are found by their names (`infra.naming`: the app's stacks, and an endpoint stack
per network); they are deleted through CloudFormation, each after every stack that imports one of
its exports (read from the deployed templates), so nothing is synthesized. What CloudFormation
cannot delete by itself is done first, after the caller's confirmation (docs/infrastructure.md,
"Destroying a stage"): the buckets the stacks delete are emptied, every version included, and the
model versions of the model package groups they delete are deleted. Resources a stage retains
(`removal_policy: retain`) are left, and named.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from infra import naming
from infra.config import StageConfig
from mlops.errors import RunFailed

_APP_SUFFIXES = (
    naming.STORAGE_STACK_SUFFIX,
    "execution-role",
    naming.MONITORING_STACK_SUFFIX,
    naming.PIPELINES_STACK_SUFFIX,
    naming.GITHUB_DEPLOY_STACK_SUFFIX,
)
_KEPT_POLICIES = ("Retain", "RetainExceptOnUpdate", "Snapshot")
_WAIT = {"Delay": 5, "MaxAttempts": 360}  # half an hour: an endpoint's deletion takes minutes


@dataclass
class Plan:
    stacks: list[str]
    """In the order they are deleted."""
    buckets: list[str] = field(default_factory=list)
    """Emptied first: deleted with their stack."""
    groups: list[str] = field(default_factory=list)
    """Their model versions deleted first: the groups are deleted with their stack."""
    kept: list[str] = field(default_factory=list)
    """Resources the stacks retain, as `Type LogicalId`."""


def stage_stacks(cloudformation: Any, config: StageConfig) -> list[str]:
    """The stage's stacks that are deployed, by the names the app gives them."""
    prefix = config.prefix()
    names = [naming.stack_name(prefix, suffix) for suffix in _APP_SUFFIXES]
    names += [naming.endpoint_stack_name(prefix, network) for network in config.networks]
    return deployed(cloudformation, names)


def deployed(cloudformation: Any, stacks: Sequence[str]) -> list[str]:
    """Those of `stacks` that CloudFormation holds."""
    return [name for name in stacks if _template(cloudformation, name) is not None]


def plan(cloudformation: Any, stacks: list[str]) -> Plan:
    templates = {name: _template(cloudformation, name) or {} for name in stacks}
    result = Plan(_deletion_order(cloudformation, templates))
    for stack in result.stacks:
        resources = templates[stack].get("Resources", {})
        physical = _physical_ids(cloudformation, stack)
        for logical_id, resource in sorted(resources.items()):
            kind, policy = resource["Type"], resource.get("DeletionPolicy", "Delete")
            if policy in _KEPT_POLICIES:
                result.kept.append(f"{kind} {physical.get(logical_id, logical_id)} ({stack})")
            elif kind == "AWS::S3::Bucket" and physical.get(logical_id):  # CloudFormation's default policy: Delete
                result.buckets.append(physical[logical_id])
            elif kind == "AWS::SageMaker::ModelPackageGroup":
                group = resource.get("Properties", {}).get("ModelPackageGroupName")
                if isinstance(group, str):
                    result.groups.append(group)
    return result


def delete_model_versions(sagemaker: Any, group: str) -> int | None:
    """Deletes every model version of `group` (a group holding versions cannot be deleted); how many,
    or None where DeleteModelPackage is not implemented (moto, whose CloudFormation skips the
    groups: there they do not stop the stack's deletion)."""
    try:
        pages = sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
        arns = [summary["ModelPackageArn"] for page in pages for summary in page["ModelPackageSummaryList"]]
    except ClientError:
        return 0  # no such group: nothing to delete
    for arn in arns:
        try:
            sagemaker.delete_model_package(ModelPackageName=arn)
        except ClientError as error:
            # A real SageMaker error has a name; moto answers an action it lacks with an HTML page, code "500".
            if str(error.response.get("Error", {}).get("Code", "")).isdigit():
                return None
            raise RunFailed(f"cannot delete {arn}: {error}") from None
    return len(arns)


def delete_stack(cloudformation: Any, stack: str) -> None:
    """DeleteStack, then waits until CloudFormation has deleted it; RunFailed with its reason if not."""
    cloudformation.delete_stack(StackName=stack)
    try:
        cloudformation.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig=_WAIT)
    except WaiterError as error:
        stacks = error.last_response.get("Stacks") or [{}]
        raise RunFailed(f"deleting stack {stack} failed: {stacks[0].get('StackStatusReason', error)}") from None


def _deletion_order(cloudformation: Any, templates: dict[str, dict[str, Any]]) -> list[str]:
    """Each stack after every stack that imports one of its exports (CloudFormation refuses the
    other order); ties keep the given order."""
    exporters = {}
    for page in cloudformation.get_paginator("list_exports").paginate():
        for export in page["Exports"]:
            exporters[export["Name"]] = export["ExportingStackId"]
    stack_ids = {name: _stack_id(cloudformation, name) for name in templates}
    importers: dict[str, set[str]] = {name: set() for name in templates}
    for name, template in templates.items():
        for imported in _imports(template):
            for exporter, stack_id in stack_ids.items():
                if exporters.get(imported) == stack_id and exporter != name:
                    importers[exporter].add(name)
    ordered: list[str] = []
    while len(ordered) < len(templates):
        ready = [name for name in templates if name not in ordered and importers[name] <= set(ordered)]
        if not ready:
            raise RunFailed(f"stacks {', '.join(sorted(set(templates) - set(ordered)))} import from each other")
        ordered.append(ready[0])
    return ordered


def _imports(template: dict[str, Any]) -> set[str]:
    """Export names the template imports (literal ones, as the app writes them)."""
    text = json.dumps(template)
    return set(re.findall(r'"Fn::ImportValue": "([^"]+)"', text))


def _template(cloudformation: Any, stack: str) -> dict[str, Any] | None:
    try:
        body = cloudformation.get_template(StackName=stack)["TemplateBody"]
    except ClientError:
        return None
    return json.loads(body) if isinstance(body, str) else dict(body)


def _stack_id(cloudformation: Any, stack: str) -> str:
    return str(cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackId"])


def _physical_ids(cloudformation: Any, stack: str) -> dict[str, str]:
    pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
    return {
        summary["LogicalResourceId"]: summary.get("PhysicalResourceId", "")
        for page in pages
        for summary in page["StackResourceSummaries"]
    }
