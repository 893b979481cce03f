"""A network's model registry group: its versions, which one is approved, and approving one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops.errors import RunFailed, UsageError

APPROVED = "Approved"


@dataclass(frozen=True)
class ModelVersion:
    arn: str
    version: int
    status: str


def model_versions(sagemaker: Any, group: str, status: str | None = None) -> list[ModelVersion]:
    """Versions of `group` (optionally only those with approval `status`), newest first."""
    query = {"ModelPackageGroupName": group}
    if status:
        query["ModelApprovalStatus"] = status
    try:
        pages = sagemaker.get_paginator("list_model_packages").paginate(**query)
        summaries = [summary for page in pages for summary in page["ModelPackageSummaryList"]]
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot read the model registry group {group}: {error}") from None
    versions = [
        ModelVersion(s["ModelPackageArn"], s["ModelPackageVersion"], s["ModelApprovalStatus"]) for s in summaries
    ]
    # Version numbers only grow, while creation times can tie.
    return sorted(versions, key=lambda v: v.version, reverse=True)


def approved_version(sagemaker: Any, group: str, version: int | None = None) -> ModelVersion:
    """The newest approved version of `group`, or the given `version` if it is approved."""
    if version is None:
        approved = model_versions(sagemaker, group, APPROVED)
        if not approved:
            raise UsageError(f"no approved version in model package group {group}: approve one first (mlops approve)")
        return approved[0]
    matching = [found for found in model_versions(sagemaker, group) if found.version == version]
    if not matching:
        raise UsageError(f"model package group {group} has no version {version}")
    if matching[0].status != APPROVED:
        raise UsageError(f"version {version} of {group} is {matching[0].status}, not {APPROVED}")
    return matching[0]


def set_approval(sagemaker: Any, version: ModelVersion, status: str) -> ModelVersion:
    """Sets the version's approval status (what `mlops approve` / `reject` do); returns it updated."""
    try:
        sagemaker.update_model_package(
            ModelPackageArn=version.arn, ModelApprovalStatus=status, ApprovalDescription=f"set {status} with mlops"
        )
    except (BotoCoreError, ClientError) as error:
        raise RunFailed(f"cannot update {version.arn}: {error}") from None
    return ModelVersion(version.arn, version.version, status)
