"""The Training and Processing steps of a pipeline, run on this machine as SageMaker would run them.

Each takes the step's resolved request (a CreateTrainingJob / CreateProcessingJob body), records
the job in moto, runs it in a subprocess of its own session, moves data between the job's folder
and S3 as SageMaker does, and returns the job's Describe* response: the step's properties.

    Training    channels downloaded from their S3 prefixes (File mode); SageMaker's own training
                toolkit runs the entry point (`mlops.local.training_job`); checkpoints synced
                from and to CheckpointConfig.S3Uri; `model.tar.gz` and `output.tar.gz` uploaded to
                `<S3OutputPath>/<job name>/output/`; MetricDefinitions applied to the log.
                `/opt/ml` (the container's folder) is this step's own folder here, in the
                hyperparameters too (a checkpoint folder, a submit directory in the code channel).
    Processing  inputs downloaded to their LocalPath, the container's command run, outputs
                uploaded from their LocalPath (EndOfJob). `/opt/ml/processing` (the container's
                folder) is this step's own folder here, in paths and in the command alike.

Data moves as the job's role (`JobRuntime.s3`), outside the job. The job gets the role's
credentials and the local AWS's endpoint only when its request does not isolate it; an isolated
job (EnableNetworkIsolation, NetworkConfig.EnableNetworkIsolation) gets neither, and no network
where this machine allows it (`mlops.local.isolation`).

A failing job raises `JobFailed` with SageMaker's kind of reason; its folder stays for a look.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mlops import processes
from mlops.local.isolation import Confinement, detect, is_isolated
from mlops.local.moto_records import MotoRecords
from mlops.local.s3 import download_prefix, join_uri, upload_file, upload_folder
from mlops.local.training_job import start_job

CONTAINER_ROOT = "/opt/ml"
PROCESSING_ROOT = "/opt/ml/processing"
DEFAULT_CHECKPOINTS = "/opt/ml/checkpoints"
LOG_FILE = "log.txt"
FAILURE_TAIL_LINES = 15
JOB_NAME_VARIABLE = "TRAINING_JOB_NAME"
# StopTrainingJob: SageMaker sends SIGTERM, and the algorithm has 120 seconds before it is killed.
STOP_GRACE_SECONDS = 120
_STOP_POLL_SECONDS = 0.1
_JOB_NAME_CHARACTERS = string.ascii_letters + string.digits


class JobFailed(Exception):
    """The job ran and failed (or could not start): `reason` is what FailureReason would say,
    `hint` what else a person needs to see why (lines of its log, where the log is)."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@dataclass(frozen=True)
class JobRuntime:
    """What every job of one execution shares."""

    s3: Any
    records: MotoRecords
    env: Mapping[str, str]
    """AWS_* of the local AWS and the role's credentials, for the calls of a job that is not
    isolated (the toolkit fetches the code bundle, the Champion step reads the registry)."""
    work_dir: Path
    on_line: Callable[[str, str], None]
    """(step name, log line) as the job prints it."""
    isolation: Confinement | None = None
    """How an isolated job is cut off here; None: what this machine allows (probed once)."""

    def confinement(self, isolated: Any) -> Confinement | None:
        """How to run a job whose request's EnableNetworkIsolation is `isolated`; None: as it is."""
        if not is_isolated(isolated):
            return None
        return self.isolation or detect()


@dataclass
class Trial:
    """What a tuning job's training job runs with beyond its request (mlops/local/tuning_job.py)."""

    tuning_job_arn: str
    folder: str
    """Its own folder in the execution's, beside the steps'."""
    label: str
    """How its log lines are labelled."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set: stop the job, as the tuning job's early stopping does."""


def run_training_step(
    step: str,
    job_name: str,
    request: Mapping[str, Any],
    runtime: JobRuntime,
    *,
    trial: Trial | None = None,
) -> dict[str, Any]:
    """Runs the training job `request` describes (a Training step's, or a tuning job's `trial`)
    and returns its DescribeTrainingJob response: Completed, or Stopped once `trial.stop` is set."""
    job_dir = (runtime.work_dir / (trial.folder if trial else step)).resolve()
    checkpoint_config = request.get("CheckpointConfig")
    confinement = runtime.confinement(request.get("EnableNetworkIsolation"))
    metrics: list[dict[str, Any]] = []
    runtime.records.start_training_job(job_name, request, tuning_job_arn=trial.tuning_job_arn if trial else None)
    status = "Completed"
    try:
        # Paths in the container are paths in this job's folder, in the hyperparameters too: the
        # entry point takes its checkpoint folder from one, the toolkit its submit directory.
        hyperparameters = {
            name: _in_job_dir(value, job_dir) if _in_container(value) else value
            for name, value in request.get("HyperParameters", {}).items()
        }
        checkpoints = Path(
            _in_job_dir(
                (checkpoint_config or {}).get("LocalPath", DEFAULT_CHECKPOINTS), job_dir, "checkpoint LocalPath"
            )
        )
        if checkpoint_config:
            download_prefix(runtime.s3, checkpoint_config["S3Uri"], checkpoints)
        channels = {
            channel["ChannelName"]: _download_channel(runtime.s3, channel, job_dir)
            for channel in request.get("InputDataConfig", [])
        }
        # SageMaker names the job in every training container's environment.
        environment = {**({} if confinement else runtime.env), JOB_NAME_VARIABLE: job_name}
        with _LogFile(job_dir, trial.label if trial else step, runtime.on_line) as log:
            job = start_job(
                job_dir,
                hyperparameters,
                channels,
                checkpoint_dir=checkpoints,
                env=environment,
                on_line=log.write,
                confinement=confinement,
            )
            if _wait(job.child, request, trial.stop if trial else None):
                status = "Stopped"
            result = job.wait()
        if checkpoint_config:
            upload_folder(runtime.s3, checkpoints, checkpoint_config["S3Uri"])
        metrics = final_metric_data(request["AlgorithmSpecification"].get("MetricDefinitions", []), result.log)
        if status == "Completed" and not result.succeeded:
            raise JobFailed(
                result.failure_reason or _exit_reason(result.exit_code, result.log),
                _log_hint(result.log, job_dir / LOG_FILE),
            )
        output = request["OutputDataConfig"]
        kms_key = output.get("KmsKeyId")
        output_uri = join_uri(output["S3OutputPath"], job_name, "output")
        model_uri = upload_file(
            runtime.s3,
            result.model_tarball(job_dir / "output" / "model.tar.gz"),
            join_uri(output_uri, "model.tar.gz"),
            kms_key_id=kms_key,
        )
        upload_file(
            runtime.s3,
            _tar_folder(result.output_dir, job_dir / "output" / "output.tar.gz"),
            join_uri(output_uri, "output.tar.gz"),
            kms_key_id=kms_key,
        )
    except BaseException as error:
        runtime.records.end_training_job(job_name, *_end_of(error), final_metrics=metrics)
        raise
    finally:
        shutil.rmtree(job_dir / "input" / "data", ignore_errors=True)  # copies of the data bucket
    # A stopped job's model is whatever it had written (StopTrainingJob: the algorithm may use its
    # 120 seconds to save it); it is uploaded all the same.
    described = runtime.records.end_training_job(job_name, status, None, final_metrics=metrics)
    # The model's location is SageMaker's rule, applied above; moto's record must agree with it.
    return {**described, "ModelArtifacts": {"S3ModelArtifacts": model_uri}}


def run_processing_step(step: str, job_name: str, request: Mapping[str, Any], runtime: JobRuntime) -> dict[str, Any]:
    step_dir = (runtime.work_dir / step).resolve()
    local_root = step_dir / "processing"

    def local(path: str) -> Path:
        if not (path == PROCESSING_ROOT or path.startswith(PROCESSING_ROOT + "/")):
            raise JobFailed(
                f"ClientError: LocalPath {path} is outside {PROCESSING_ROOT}, the only folder the local runner maps"
            )
        return Path(path.replace(PROCESSING_ROOT, str(local_root), 1))

    app = request["AppSpecification"]
    command = [
        argument.replace(PROCESSING_ROOT, str(local_root))
        for argument in [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])]
    ]
    outputs = request.get("ProcessingOutputConfig", {})
    confinement = runtime.confinement(request.get("NetworkConfig", {}).get("EnableNetworkIsolation"))
    runtime.records.start_processing_job(job_name, request)
    try:
        if not command:
            raise JobFailed(
                "ClientError: the local runner needs AppSpecification.ContainerEntrypoint "
                "(it cannot run an image's default entry point)"
            )
        for item in request.get("ProcessingInputs", []):
            source = item["S3Input"]
            if not download_prefix(runtime.s3, source["S3Uri"], local(source["LocalPath"])):
                raise JobFailed(f"ClientError: no S3 objects found under {source['S3Uri']} (input {item['InputName']})")
        for item in outputs.get("Outputs", []):
            local(item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        environment = {**_clean_environment(), **({} if confinement else runtime.env)}
        # The training image's `python3` is the one with TensorFlow: here, this venv's.
        environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
        if confinement:
            command, environment = confinement.confine(command, environment, home=step_dir / "home")
        environment.update(request.get("Environment", {}))
        with _LogFile(step_dir, step, runtime.on_line) as log:
            job = processes.start(command, env=environment, cwd=step_dir, on_line=log.write)
            _wait(job, request)
            exit_code = job.wait()
        if exit_code != 0:
            raise JobFailed(_exit_reason(exit_code, log.text()), _log_hint(log.text(), log.path))
        for item in outputs.get("Outputs", []):
            upload_folder(
                runtime.s3,
                local(item["S3Output"]["LocalPath"]),
                item["S3Output"]["S3Uri"],
                kms_key_id=outputs.get("KmsKeyId"),
            )
    except BaseException as error:
        runtime.records.end_processing_job(job_name, *_end_of(error))
        raise
    return runtime.records.end_processing_job(job_name, "Completed", None)


def final_metric_data(definitions: Sequence[Mapping[str, str]], log: str) -> list[dict[str, Any]]:
    """FinalMetricDataList as SageMaker builds it: each definition's regex over the log, the
    last value it captured; a metric that never matched is absent."""
    found = []
    for definition in definitions:
        values = re.findall(definition["Regex"], log)
        if values:
            last = values[-1][0] if isinstance(values[-1], tuple) else values[-1]
            found.append({"MetricName": definition["Name"], "Value": float(last), "Timestamp": datetime.now(UTC)})
    return found


def _end_of(error: BaseException) -> tuple[str, str]:
    """The status and FailureReason a job ends with when `error` ends it."""
    if isinstance(error, JobFailed):
        return "Failed", error.reason
    if isinstance(error, KeyboardInterrupt):
        return "Stopped", "the local run was interrupted"
    return "Failed", f"InternalServerError: {type(error).__name__}: {error}"


def _download_channel(s3: Any, channel: Mapping[str, Any], job_dir: Path) -> Path:
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    target = job_dir / "input" / "data" / channel["ChannelName"]
    shutil.rmtree(target, ignore_errors=True)
    if not download_prefix(s3, uri, target):
        raise JobFailed(
            f"ClientError: no S3 objects found under S3 URL {uri} given in input data source "
            f"(channel {channel['ChannelName']})"
        )
    return target


def _wait(job: processes.ChildProcess, request: Mapping[str, Any], stop: threading.Event | None = None) -> bool:
    """Waits for the job's end, within its MaxRuntimeInSeconds, its log read to the end; True if it
    was stopped. A job that runs longer is killed with its whole process group; one that is
    interrupted (Ctrl-C, an error here) is stopped with it before the interruption goes on. Once
    `stop` is set, the job is stopped as StopTrainingJob stops one: SIGTERM, and what is still
    running after SageMaker's grace period is killed."""
    limit = request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            job.wait(timeout=left if stop is None else min(left or _STOP_POLL_SECONDS, _STOP_POLL_SECONDS))
            return False
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                job.kill()
                raise JobFailed(f"MaxRuntimeExceeded: the job ran longer than {limit} s") from None
            if stop is not None and stop.is_set():
                job.stop(grace=STOP_GRACE_SECONDS)
                return True


def _in_container(value: Any) -> bool:
    return isinstance(value, str) and (value == CONTAINER_ROOT or value.startswith(CONTAINER_ROOT + "/"))


def _in_job_dir(path: str, job_dir: Path, what: str = "path") -> str:
    """The container's `path` (under /opt/ml) in the job's folder."""
    if not _in_container(path):
        raise JobFailed(
            f"ClientError: {what} {path} is outside {CONTAINER_ROOT}, the only folder the local runner maps"
        )
    return str(job_dir) + path[len(CONTAINER_ROOT) :]


def _clean_environment() -> dict[str, str]:
    """This process's environment without what belongs to another AWS or another job."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "SM_", "SAGEMAKER_")) and name != "TF_CONFIG"
    }


def _exit_reason(exit_code: int, log: str) -> str:
    tail = "\n".join(line for line in log.splitlines()[-FAILURE_TAIL_LINES:])
    return f"AlgorithmError: the job exited with code {exit_code}; the end of its log:\n{tail}"


def _log_hint(log: str, path: Path) -> str:
    """The script's own one-line `error: ...` messages (bad input; SageMaker's FailureReason only
    quotes exceptions), and where the whole log is."""
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    return "\n".join([*errors, f"log: {path}"])


def _tar_folder(folder: Path, destination: Path) -> Path:
    with tarfile.open(destination, "w:gz") as archive:
        for child in sorted(folder.iterdir()):
            archive.add(child, arcname=child.name)
    return destination


class _LogFile:
    """The job's log in its folder (kept after the run) and on its way to the terminal."""

    def __init__(self, folder: Path, step: str, on_line: Callable[[str, str], None]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOG_FILE
        self._step = step
        self._on_line = on_line
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> _LogFile:
        self._file = self.path.open("w")
        return self

    def __exit__(self, *_: object) -> None:
        assert self._file is not None
        self._file.close()

    def write(self, line: str) -> None:
        with self._lock:
            assert self._file is not None
            self._file.write(line)
            self._file.flush()
        self._on_line(self._step, line.rstrip("\n"))

    def text(self) -> str:
        return self.path.read_text()


def new_job_name(execution_id: str, step: str, *, limit: int = 63) -> str:
    """`pipelines-<execution id>-<step>-<random>`, as SageMaker Pipelines names its training and
    processing jobs (and as the pipeline role's IAM policy expects), within the 63 characters a name
    may have. A tuning job's name has at most 32, too few for that form; AWS does not document the
    one it uses, so here it is `<execution id>-<step>-<random>` cut to fit."""
    suffix = "".join(secrets.choice(_JOB_NAME_CHARACTERS) for _ in range(10))
    prefix = "pipelines-" if limit == 63 else ""
    room = limit - len(prefix) - len(execution_id) - len(suffix) - 2
    step_part = re.sub(r"[^A-Za-z0-9]+", "-", step).strip("-")[: max(room, 1)]
    return f"{prefix}{execution_id}-{step_part}-{suffix}"[:limit]
