"""Emptying a versioned bucket, which CloudFormation must see empty before it can delete it."""

from __future__ import annotations

from typing import Any

from mlops.errors import RunFailed

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys per call


def empty_bucket(s3: Any, bucket: str) -> int:
    """Deletes every object version and delete marker in `bucket`; returns how many."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for item in page.get(kind, [])
        ]
        for start in range(0, len(versions), _DELETE_BATCH):
            batch = versions[start : start + _DELETE_BATCH]
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise RunFailed(f"could not empty s3://{bucket}: {first['Key']}: {first['Message']}")
            deleted += len(batch)
    return deleted
