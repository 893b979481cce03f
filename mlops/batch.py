"""A batch transform run of a network, as `mlops transform` and `mlops local --transform` start one.

    request = TransformRequest.of(network, "mnist-test.jsonl", version=None, output=None, content_type=None)
    uri = request.upload(s3, data_bucket, stamp)            # a local file goes to <network>/batch/runs/<stamp>/
    parameters = request.parameters(uri, output_uri)        # StartPipelineExecution's
    ...the pipeline runs, in AWS or through the local executor...
    summary = summarize(s3, transform_job)                  # records, seconds, where the output is

The run's input is an S3 prefix ending with `/`: SageMaker's S3Prefix also reads every key that
merely starts with it (`batch/test` reads `batch/test_small/...`), so a prefix without one is
refused. The output must be under the artifacts bucket's `batch-transform/`, the one place the
execution role may write batch outputs; each run writes below it in a folder of its execution id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.definitions import transform_pipeline as definition
from mlops.errors import UsageError
from mlops.local.s3 import split_uri
from training.batch_formats import JSON_LINES, RECORD_FORMATS, RecordFormat


@dataclass(frozen=True)
class TransformRequest:
    network: str
    files: tuple[Path, ...]
    """Local files to upload; empty when `source` is an S3 prefix already."""
    source: str | None
    record_format: RecordFormat
    version: int

    @classmethod
    def of(cls, network: str, source: str, *, version: int | None, content_type: str | None) -> TransformRequest:
        """Checks the command line's input; a UsageError naming what is wrong."""
        if version is not None and version < 1:
            raise UsageError(f"--version {version}: versions are numbered from 1")
        if content_type is not None and content_type not in RECORD_FORMATS:
            raise UsageError(f"--content-type {content_type!r}: one of {', '.join(RECORD_FORMATS)}")
        if source.startswith("s3://"):
            if not source.endswith("/"):
                raise UsageError(
                    f"{source} does not end with '/': as an S3 prefix SageMaker would also read every key that "
                    "starts with it; name a folder"
                )
            chosen = RECORD_FORMATS[content_type or JSON_LINES]
            return cls(network, (), source, chosen, version or 0)
        path = Path(source)
        if not path.exists():
            raise UsageError(f"{source}: no such file or folder")
        files = tuple(sorted(item for item in path.rglob("*") if item.is_file())) if path.is_dir() else (path,)
        if not files:
            raise UsageError(f"{source}: the folder holds no file")
        return cls(network, files, None, _format_of(files, content_type), version or 0)

    def upload(self, s3: Any, data_bucket: str, stamp: str) -> str:
        """The input's S3 prefix: the given one, or the local files uploaded under the network's runs/."""
        if self.source is not None:
            return self.source
        prefix = f"{definition.runs_prefix(self.network)}{stamp}/"
        for path in self.files:
            relative = path.name if len(self.files) == 1 else path.relative_to(_common_root(self.files)).as_posix()
            s3.upload_file(str(path), data_bucket, prefix + relative)
        return f"s3://{data_bucket}/{prefix}"

    def parameters(self, input_uri: str, output_uri: str | None) -> dict[str, str]:
        values = {
            definition.MODEL_VERSION: str(self.version),
            definition.INPUT_DATA_URI: input_uri,
            definition.CONTENT_TYPE: self.record_format.content_type,
        }
        if output_uri is not None:
            values[definition.OUTPUT_DATA_URI] = output_uri
        return values


def checked_output(output: str | None, artifacts_bucket: str, network: str) -> str | None:
    """`--output`, if it is where the execution role may write batch outputs; None: the default."""
    if output is None:
        return None
    allowed = f"s3://{artifacts_bucket}/{definition.OUTPUT_PREFIX}"
    if not (output.startswith(allowed) and output.endswith("/")):
        raise UsageError(
            f"--output {output}: the transform job writes as the execution role, which may write batch outputs "
            f"only under {allowed} (e.g. {allowed}{network}/mine/)"
        )
    return output


def _format_of(files: tuple[Path, ...], content_type: str | None) -> RecordFormat:
    if content_type is not None:
        return RECORD_FORMATS[content_type]
    found = {
        record.content_type
        for path in files
        for record in RECORD_FORMATS.values()
        if path.name.lower().endswith(record.suffixes)
    }
    if len(found) != 1:
        suffixes = ", ".join(suffix for record in RECORD_FORMATS.values() for suffix in record.suffixes)
        raise UsageError(
            f"cannot tell the record format from the file names (one kind of {suffixes}): give --content-type"
        )
    return RECORD_FORMATS[found.pop()]


def _common_root(files: tuple[Path, ...]) -> Path:
    root = files[0].parent
    while not all(root in path.parents for path in files):
        root = root.parent
    return root


@dataclass(frozen=True)
class TransformSummary:
    output_uri: str
    objects: int
    records: int
    seconds: float

    def line(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.records:,} records from {self.objects} object(s) in {self.seconds:.1f} s "
            f"({rate:,.0f} records/s); output in {self.output_uri}"
        )


def summarize(s3: Any, job: dict[str, Any]) -> TransformSummary:
    """What a finished transform job (DescribeTransformJob) did: its output's objects and lines
    (one per record, AssembleWith Line), counted by reading them as a stream, and its duration."""
    output_uri = job["TransformOutput"]["S3OutputPath"]
    bucket, prefix = split_uri(output_uri)
    objects = records = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".out"):
                continue
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"]
            records += sum(chunk.count(b"\n") for chunk in body.iter_chunks(1024 * 1024))
    seconds = (job["TransformEndTime"] - job["TransformStartTime"]).total_seconds()
    return TransformSummary(output_uri, objects, records, seconds)


def run_stamp() -> str:
    """A run's folder name under runs/: UTC time, sortable."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
