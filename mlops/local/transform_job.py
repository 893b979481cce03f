"""A batch transform job, run on this machine as SageMaker runs one (a pipeline's Transform step).

What SageMaker does (Developer Guide, "Use Batch Transform" and "Use Your Own Inference Code with
Batch Transform"), done here the same way:

- the model's container starts with the model's Environment, the request's, and `SAGEMAKER_BATCH=true`,
  `SAGEMAKER_MAX_PAYLOAD_IN_MB`, `SAGEMAKER_BATCH_STRATEGY` (`MULTI_RECORD` / `SINGLE_RECORD`) and
  `SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`: here the local endpoint (`inference.local_endpoint`, the
  same server and `code/inference.py` handlers as a real-time endpoint) on the model's artifact;
- each object under the input prefix is processed on its own: with `SplitType: Line` split into
  records, each passed through DataProcessing's InputFilter, and (MultiRecord) as many records as
  fit in `MaxPayloadInMB` POSTed to `/invocations`, joined by newlines, with the input's
  `ContentType` and the output's `Accept`; at most `MaxConcurrentTransforms` requests at once;
- the answer is split into lines (`AssembleWith: Line`), line k joined to record k and filtered
  (DataProcessing, `mlops.local.data_processing`), and written in order to `<object>.out` under
  `S3OutputPath` (the object's path below the input prefix kept), encrypted with the output's KmsKeyId;
- an object whose request the container refuses (any non-2xx) gets no `.out`, the other objects are
  still processed, and the job ends Failed. SageMaker's FailureReason then only points at the job's
  logs, whose data log names the object and quotes the container's answer; here the FailureReason
  says it all: the object, the record's line (from the handler's `record k of n`) and the answer.

Objects are read as a stream and answers written to a file before their upload, so memory holds
at most `MaxConcurrentTransforms` + 1 mini-batches, whatever the objects' size. Data moves as the
model's execution role (`TransformRuntime.s3`).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mlops.local.data_processing import DataProcessingError, RecordProcessing
from mlops.local.moto_records import MotoRecords
from mlops.local.pipeline_jobs import JobFailed
from mlops.local.s3 import download_file, join_uri, split_uri, upload_file

MEGABYTE = 1024 * 1024
CHUNK_BYTES = MEGABYTE
LOG_FILE = "log.txt"
DATA_LOG_PREFIX = "[sagemaker logs]: "
STRATEGIES = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}
INVOCATION_TIMEOUT_SECONDS = 600  # what SageMaker allows a container per request by default
_RECORD_IN_BATCH = re.compile(r"record (\d+) of \d+")


@dataclass(frozen=True)
class TransformRuntime:
    s3: Any
    """S3 as the model's execution role: the input, the model and the output move as it."""
    records: MotoRecords
    work_dir: Path
    on_line: Callable[[str, str], None]


@dataclass
class TransformResult:
    objects: int = 0
    records: int = 0
    failed: list[str] = field(default_factory=list)
    scoring_seconds: float = 0.0
    """From each object's first read to its output uploaded: the job less its container's start."""


@dataclass(frozen=True)
class _MiniBatch:
    first_line: int
    records: list[bytes]
    body: bytes


def run_transform_step(
    step: str, job_name: str, request: Mapping[str, Any], model: Mapping[str, Any], runtime: TransformRuntime
) -> tuple[dict[str, Any], TransformResult]:
    """Runs the job `request` (a CreateTransformJob body) on `model` (its container: `ModelDataUrl`
    and `Environment`, the model package's resolved). Returns DescribeTransformJob and what it did;
    JobFailed as SageMaker fails the job."""
    from inference.local_endpoint import LocalEndpoint

    job_dir = (runtime.work_dir / step).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    runtime.records.start_transform_job(job_name, request)
    log = _DataLog(job_dir / LOG_FILE, step, runtime.on_line)
    result = TransformResult()
    try:
        job = _TransformSettings.of(request)
        model_path = download_file(runtime.s3, model["ModelDataUrl"], job_dir / "model" / "model.tar.gz")
        objects = _input_objects(runtime.s3, job.input_uri)
        environment = {**model.get("Environment", {}), **job.environment}
        endpoint = LocalEndpoint(model_path, job_name, environment=environment, log_path=log.path)
        try:
            endpoint.start()
        except Exception as error:
            raise JobFailed(f"ClientError: the model's container did not start: {error}", f"log: {log.path}") from None
        try:
            log.write(
                f"MaxConcurrentTransforms={job.concurrency}, MaxPayloadInMB={job.max_payload_mb}, "
                f"BatchStrategy={STRATEGIES[job.strategy]}"
            )
            for key, relative in objects:
                _transform_object(runtime, job, endpoint.url, key, relative, job_dir, log, result)
        finally:
            endpoint.stop()
        if result.failed:
            raise JobFailed(
                f"ClientError: {len(result.failed)} of {result.objects} objects failed: " + "; ".join(result.failed),
                f"log: {log.path}",
            )
    except DataProcessingError as error:
        runtime.records.end_transform_job(job_name, "Failed", f"ClientError: {error}")
        raise JobFailed(f"ClientError: {error}") from None
    except JobFailed as failure:
        runtime.records.end_transform_job(job_name, "Failed", failure.reason)
        raise
    except BaseException as error:
        stopped = isinstance(error, KeyboardInterrupt)
        runtime.records.end_transform_job(
            job_name, "Stopped" if stopped else "Failed", "the local run was interrupted" if stopped else repr(error)
        )
        raise
    finally:
        shutil.rmtree(job_dir / "model", ignore_errors=True)
    return runtime.records.end_transform_job(job_name, "Completed", None), result


@dataclass(frozen=True)
class _TransformSettings:
    input_uri: str
    output_uri: str
    kms_key_id: str | None
    split_lines: bool
    assemble_lines: bool
    strategy: str
    max_payload_mb: int
    concurrency: int
    processing: RecordProcessing
    environment: dict[str, str]

    @classmethod
    def of(cls, request: Mapping[str, Any]) -> _TransformSettings:
        source = request["TransformInput"]["DataSource"]["S3DataSource"]
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise JobFailed(f"ClientError: S3DataType {source['S3DataType']} is not emulated locally (S3Prefix is)")
        transform_input, output = request["TransformInput"], request["TransformOutput"]
        if transform_input.get("CompressionType", "None") != "None":
            raise JobFailed("ClientError: CompressionType Gzip is not emulated locally")
        split = transform_input.get("SplitType", "None")
        if split not in ("None", "Line"):
            raise JobFailed(f"ClientError: SplitType {split} is not emulated locally (None and Line are)")
        strategy = request.get("BatchStrategy", "MultiRecord")
        max_payload = int(request.get("MaxPayloadInMB", 6))
        if max_payload == 0:
            raise JobFailed("ClientError: MaxPayloadInMB 0 (a chunked stream to the container) is not emulated locally")
        concurrency = int(request.get("MaxConcurrentTransforms") or 1)
        return cls(
            input_uri=source["S3Uri"],
            output_uri=output["S3OutputPath"],
            kms_key_id=output.get("KmsKeyId"),
            split_lines=split == "Line",
            assemble_lines=output.get("AssembleWith", "None") == "Line",
            strategy=strategy,
            max_payload_mb=max_payload,
            concurrency=concurrency,
            processing=RecordProcessing.of(dict(request)),
            environment={
                **request.get("Environment", {}),
                "SAGEMAKER_BATCH": "true",
                "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(max_payload),
                "SAGEMAKER_BATCH_STRATEGY": STRATEGIES[strategy],
                "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(concurrency),
            },
        )

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.processing.content_type or "application/octet-stream"}
        if self.processing.accept:
            headers["Accept"] = self.processing.accept
        return headers


def _input_objects(s3: Any, uri: str) -> list[tuple[str, str]]:
    """(key, path below the prefix's folder) of every object an S3Prefix input names: every key that
    starts with the prefix, as SageMaker matches it (`batch/test` also matches `batch/test_small/x`)."""
    bucket, prefix = split_uri(uri)
    folder = prefix[: prefix.rfind("/") + 1]
    found = [
        (item["Key"], item["Key"][len(folder) :])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")
    ]
    if not found:
        raise JobFailed(f"ClientError: no S3 objects found under {uri}")
    return found


def _transform_object(
    runtime: TransformRuntime,
    job: _TransformSettings,
    url: str,
    key: str,
    relative: str,
    job_dir: Path,
    log: _DataLog,
    result: TransformResult,
) -> None:
    bucket, _ = split_uri(job.input_uri)
    out_path = job_dir / "output" / f"{relative}.out"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result.objects += 1
    started = time.perf_counter()
    session = threading.local()

    def post(batch: _MiniBatch) -> requests.Response:
        if not hasattr(session, "http"):
            session.http = requests.Session()
        return session.http.post(
            f"{url}/invocations", data=batch.body, headers=job.headers, timeout=INVOCATION_TIMEOUT_SECONDS
        )

    written = 0
    try:
        with out_path.open("wb") as out, ThreadPoolExecutor(job.concurrency, thread_name_prefix="transform") as pool:
            pending: deque[tuple[_MiniBatch, Future[requests.Response]]] = deque()
            for batch in _mini_batches(runtime.s3, bucket, key, job):
                pending.append((batch, pool.submit(post, batch)))
                if len(pending) > job.concurrency:
                    written += _write_answer(out, job, *pending.popleft(), f"{bucket}/{key}", log)
            while pending:
                written += _write_answer(out, job, *pending.popleft(), f"{bucket}/{key}", log)
    except _ObjectFailed as failure:
        out_path.unlink(missing_ok=True)
        result.failed.append(f"s3://{bucket}/{key}: {failure}")
        return
    upload_file(runtime.s3, out_path, join_uri(job.output_uri, f"{relative}.out"), kms_key_id=job.kms_key_id)
    out_path.unlink()
    result.records += written
    result.scoring_seconds += time.perf_counter() - started


class _ObjectFailed(Exception):
    """One object cannot be transformed: the message says where and why."""


def _mini_batches(s3: Any, bucket: str, key: str, job: _TransformSettings) -> Iterator[_MiniBatch]:
    """The object's records (after InputFilter), grouped as the batch strategy says, read as a stream."""
    limit = job.max_payload_mb * MEGABYTE
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    if not job.split_lines:
        whole = body.read(limit + 1)
        if len(whole) > limit:
            raise _ObjectFailed(f"the object is larger than MaxPayloadInMB ({job.max_payload_mb} MB) and is not split")
        yield _MiniBatch(1, [whole], job.processing.model_input(whole))
        return
    records: list[bytes] = []
    sent: list[bytes] = []
    size, first = 0, 1
    for number, line in enumerate(_lines(body), start=1):
        try:
            model_input = job.processing.model_input(line)
        except DataProcessingError as error:
            raise _ObjectFailed(f"line {number}: {error}") from None
        if len(model_input) + 1 > limit:
            raise _ObjectFailed(f"line {number}: the record is larger than MaxPayloadInMB ({job.max_payload_mb} MB)")
        if sent and (job.strategy == "SingleRecord" or size + len(model_input) + 1 > limit):
            yield _MiniBatch(first, records, b"\n".join(sent) + b"\n")
            records, sent, size, first = [], [], 0, number
        records.append(line)
        sent.append(model_input)
        size += len(model_input) + 1
    if sent:
        yield _MiniBatch(first, records, b"\n".join(sent) + b"\n")


def _lines(body: Any) -> Iterator[bytes]:
    """The lines of a streamed object, without their line ends; a last line needs none."""
    rest = b""
    for chunk in body.iter_chunks(CHUNK_BYTES):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line.removesuffix(b"\r")
    if rest:
        yield rest.removesuffix(b"\r")


def _write_answer(
    out: Any, job: _TransformSettings, batch: _MiniBatch, future: Future[requests.Response], where: str, log: _DataLog
) -> int:
    """Writes one mini-batch's answer (joined and filtered); returns how many records it wrote."""
    last = batch.first_line + len(batch.records) - 1
    span = f"line {batch.first_line}" if last == batch.first_line else f"lines {batch.first_line}-{last}"
    try:
        response = future.result()
    except requests.RequestException as error:
        log.write(f"{where}: ClientError: {error}")
        raise _ObjectFailed(f"{span}: the container did not answer: {error}") from None
    if not response.ok:
        text = response.text
        log.write(f"{where}: ClientError: {response.status_code}")
        log.write(f"{where}: Message:")
        log.write(f"{where}: {text}")
        found = _RECORD_IN_BATCH.search(text)
        if found:
            span = f"line {batch.first_line + int(found[1]) - 1}"
        raise _ObjectFailed(f"{span}: the container answered {response.status_code}: {text}")
    if not job.assemble_lines:
        out.write(response.content)
        return len(batch.records)
    answers = response.content.split(b"\n")
    if answers and answers[-1] == b"":
        answers.pop()
    joined = job.processing.join_input or job.processing.output_filter not in (None, "", "$")
    if joined and len(answers) != len(batch.records):
        raise _ObjectFailed(
            f"{span}: mismatched line count between the input ({len(batch.records)} records) "
            f"and the output ({len(answers)} lines) of a mini-batch"
        )
    try:
        lines = (
            [
                job.processing.output_record(record, answer)
                for record, answer in zip(batch.records, answers, strict=True)
            ]
            if joined
            else answers
        )
    except DataProcessingError as error:
        raise _ObjectFailed(f"{span}: {error}") from None
    out.write(b"".join(line + b"\n" for line in lines))
    return len(lines)


class _DataLog:
    """The job's data log (SageMaker's `[sagemaker logs]: ...` lines) beside the container's output."""

    def __init__(self, path: Path, step: str, on_line: Callable[[str, str], None]) -> None:
        self.path = path
        self._step = step
        self._on_line = on_line
        self._lock = threading.Lock()
        path.write_text("")

    def write(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}:{DATA_LOG_PREFIX}{text}"
        with self._lock, self.path.open("a") as log:
            log.write(line + "\n")
        self._on_line(self._step, line)
