"""Moving files between this machine and S3 the way SageMaker jobs do (File mode, EndOfJob uploads).

download_prefix(s3, "s3://data/cnn/train/", Path("input/data/train"))
upload_folder(s3, Path("output"), "s3://artifacts/pipelines/cnn/abc/evaluation", kms_key_id=key)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key")."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def join_uri(uri: str, *parts: str) -> str:
    """`join_uri("s3://b/models/cnn/", "job", "output")` -> "s3://b/models/cnn/job/output"."""
    return "/".join([uri.rstrip("/"), *(part.strip("/") for part in parts)])


def download_prefix(s3: Any, uri: str, target: Path) -> int:
    """Every object under `uri` into `target`, keeping names relative to the prefix; returns how many.

    A URI naming one object (e.g. `.../model.tar.gz`) gives that object under its own name, as
    SageMaker's S3Prefix inputs do.
    """
    bucket, prefix = split_uri(uri)
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :].lstrip("/") or Path(item["Key"]).name
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(destination))
            count += 1
    return count


def download_file(s3: Any, uri: str, path: Path) -> Path:
    bucket, key = split_uri(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(path))
    return path


def upload_file(s3: Any, path: Path, uri: str, *, kms_key_id: str | None = None) -> str:
    bucket, key = split_uri(uri)
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else None
    s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
    return uri


def upload_folder(s3: Any, folder: Path, uri: str, *, kms_key_id: str | None = None) -> int:
    """Every file under `folder` to `uri/<relative path>`; returns how many."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files:
        upload_file(s3, path, join_uri(uri, path.relative_to(folder).as_posix()), kms_key_id=kms_key_id)
    return len(files)


def read_json(s3: Any, uri: str) -> Any:
    bucket, key = split_uri(uri)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
