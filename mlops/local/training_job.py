"""Runs a training entry point exactly as SageMaker's TensorFlow training container does.

The job folder is laid out like the container's `/opt/ml`:

    input/config/hyperparameters.json   every value a string, as CreateTrainingJob stores them
    input/config/resourceconfig.json    hosts (`localhost`: the toolkit waits until names resolve)
    input/config/inputdataconfig.json   one entry per channel
    input/data/<channel>/               the channel (a link to a local folder, or downloaded from s3://)
    model/  output/  code/

then the toolkit's own `train` console script runs with `SAGEMAKER_BASE_DIR=<job folder>` and
`SAGEMAKER_TRAINING_MODULE=sagemaker_tensorflow_container.training:main`. It extracts the source
bundle (`sagemaker_submit_directory`) into `code/`, sets every `SM_*` variable and runs
`python <entry point> --name value ...`, as in the container.

    result = run_training_job("cnn", {"train": ..., "validation": ..., "test": ...}, Path("runs/cnn"),
                              hyperparameters={"epochs": 5})
    result.succeeded, result.final_metrics["test_accuracy"], result.model_dir

`start_job` takes the hyperparameters exactly as a CreateTrainingJob request holds them (the
local pipeline executor passes a pipeline's Training step through it); `start_training_job`
writes them for a network of the registry.

Several workers: the toolkit's own TF_CONFIG (with `sagemaker_multi_worker_mirrored_strategy_enabled`)
puts every host on port 8890, and TensorFlow's gRPC server listens on that port on every
address, so two workers on one machine collide ("Could not start gRPC server", also with hosts
127.0.0.1 and 127.0.0.2). `run_multi_worker_training_job` therefore names the hosts 127.0.0.1,
127.0.0.2, ... (distinct SM_HOSTS / SM_CURRENT_HOST) and writes TF_CONFIG itself, one free
port per worker; the toolkit passes it through to the entry point unchanged.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from infra.source_bundle import build_source_bundle
from mlops import processes
from mlops.local.isolation import Confinement
from mlops.local.s3 import download_prefix
from training.hyperparameters import HyperparameterValue
from training.networks import METRICS_LINE_PREFIX, Network, get_network

TRAINING_MODULE = "sagemaker_tensorflow_container.training:main"
HyperparameterEncoding = Literal["raw", "json"]
_METRIC = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class TrainingJobResult:
    exit_code: int
    job_dir: Path
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    log: str
    metrics: tuple[dict[str, float], ...]
    """Every `[metrics]` line, parsed, in order (epoch lines carry `epoch`)."""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    @property
    def final_metrics(self) -> dict[str, float]:
        """The last value printed for each metric (what SageMaker's FinalMetricDataList holds)."""
        final: dict[str, float] = {}
        for line in self.metrics:
            final.update(line)
        return final

    @property
    def epochs(self) -> list[int]:
        return [int(line["epoch"]) for line in self.metrics if "epoch" in line]

    @property
    def failure_reason(self) -> str | None:
        """What the toolkit wrote to `output/failure` (SageMaker's FailureReason)."""
        failure = self.job_dir / "output" / "failure"
        return failure.read_text() if failure.is_file() else None

    def model_tarball(self, destination: Path) -> Path:
        """`model.tar.gz` as SageMaker uploads it: the model dir's contents at the archive root."""
        with tarfile.open(destination, "w:gz") as archive:
            for child in sorted(self.model_dir.iterdir()):
                archive.add(child, arcname=child.name)
        return destination


@dataclass
class RunningTrainingJob:
    """A started job: its process (the toolkit and the entry point it starts), and its log as it arrives."""

    child: processes.ChildProcess
    job_dir: Path
    checkpoint_dir: Path
    lines: list[str] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.child.poll()

    def wait(self, timeout: float | None = None) -> TrainingJobResult:
        """Waits for the end (killing the job after `timeout` seconds) and collects the result."""
        try:
            exit_code = self.child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            exit_code = self.kill()
        log = "".join(self.lines)
        return TrainingJobResult(
            exit_code=exit_code,
            job_dir=self.job_dir,
            model_dir=self.job_dir / "model",
            output_dir=self.job_dir / "output" / "data",
            checkpoint_dir=self.checkpoint_dir,
            log=log,
            metrics=parse_metrics(log),
        )

    def kill(self) -> int:
        """SIGKILL to the toolkit and the entry point it started, like a reclaimed spot instance."""
        return self.child.kill()


def parse_metrics(log: str) -> tuple[dict[str, float], ...]:
    return tuple(
        {name: float(value) for name, value in _METRIC.findall(line.split(METRICS_LINE_PREFIX, 1)[1])}
        for line in log.splitlines()
        if line.startswith(METRICS_LINE_PREFIX)
    )


def start_training_job(
    network: str | Network,
    channels: Mapping[str, Path | str],
    job_dir: Path,
    *,
    hyperparameters: Mapping[str, HyperparameterValue] | None = None,
    checkpoint_dir: Path | None = None,
    source: Path | None = None,
    hosts: Sequence[str] = ("localhost",),
    current_host: str = "localhost",
    env: Mapping[str, str] | None = None,
    hyperparameter_encoding: HyperparameterEncoding = "raw",
    on_line: Callable[[str], None] | None = None,
) -> RunningTrainingJob:
    """Lays out `job_dir` and starts SageMaker's launcher on it; see `run_training_job`."""
    network = get_network(network) if isinstance(network, str) else network
    job_dir = job_dir.resolve()
    checkpoint_dir = (checkpoint_dir or job_dir / "checkpoints").resolve()
    values = _hyperparameters(
        network,
        dict(hyperparameters or {}),
        checkpoint_dir=checkpoint_dir,
        source=(source or build_source_bundle(job_dir / "bundle")).resolve(),
        encoding=hyperparameter_encoding,
    )
    return start_job(
        job_dir,
        values,
        channels,
        checkpoint_dir=checkpoint_dir,
        hosts=hosts,
        current_host=current_host,
        env=env,
        on_line=on_line,
    )


def start_job(
    job_dir: Path,
    hyperparameters: Mapping[str, str],
    channels: Mapping[str, Path | str],
    *,
    checkpoint_dir: Path,
    hosts: Sequence[str] = ("localhost",),
    current_host: str = "localhost",
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    confinement: Confinement | None = None,
) -> RunningTrainingJob:
    """Starts a job as CreateTrainingJob describes one: `hyperparameters` go into
    hyperparameters.json verbatim (they must name `sagemaker_program` and
    `sagemaker_submit_directory`); each channel is a local folder (linked, unless the job
    folder holds it already) or an `s3://` prefix (downloaded, as File mode does). With a
    `confinement` the job runs network-isolated (`mlops.local.isolation`)."""
    job_dir = job_dir.resolve()
    _lay_out(job_dir, hyperparameters, channels, hosts=hosts, current_host=current_host)
    train = Path(sys.executable).with_name("train")
    if not train.exists():
        raise FileNotFoundError(f"{train} is missing: install sagemaker-training (pyproject.toml: ./dev.sh setup)")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SM_", "SAGEMAKER_")) and name != "TF_CONFIG"
    }
    environment.update(
        SAGEMAKER_BASE_DIR=str(job_dir), SAGEMAKER_TRAINING_MODULE=TRAINING_MODULE, PYTHONUNBUFFERED="1", **(env or {})
    )
    lines: list[str] = []

    def take(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    argv = [str(train)]
    if confinement is not None:
        argv, environment = confinement.confine(argv, environment, home=job_dir / "home")
    child = processes.start(argv, env=environment, cwd=job_dir, on_line=take)
    return RunningTrainingJob(child=child, job_dir=job_dir, checkpoint_dir=checkpoint_dir.resolve(), lines=lines)


def run_training_job(
    network: str | Network,
    channels: Mapping[str, Path | str],
    job_dir: Path,
    *,
    hyperparameters: Mapping[str, HyperparameterValue] | None = None,
    checkpoint_dir: Path | None = None,
    source: Path | None = None,
    hyperparameter_encoding: HyperparameterEncoding = "raw",
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> TrainingJobResult:
    """Runs `network`'s entry point through SageMaker's training toolkit, as a training job would.

    channels: channel name -> a local folder (linked) or an `s3://` prefix (downloaded, as File mode does).
    hyperparameters: the network's knobs; the rest keep their registry defaults.
    checkpoint_dir: the job's `/opt/ml/checkpoints` (default `job_dir/checkpoints`); reuse it to resume.
    source: the source bundle (`sourcedir.tar.gz` or a folder); default: built from this checkout.
    hyperparameter_encoding: "raw" (SDK v3: `"32"`) or "json" (SDK v2: `"\\"cnn.py\\""`).
    on_line: called with each log line as it arrives.
    """
    job = start_training_job(
        network,
        channels,
        job_dir,
        hyperparameters=hyperparameters,
        checkpoint_dir=checkpoint_dir,
        source=source,
        hyperparameter_encoding=hyperparameter_encoding,
        on_line=on_line,
        env=env,
    )
    return job.wait(timeout)


def run_multi_worker_training_job(
    network: str | Network,
    channels: Mapping[str, Path | str],
    root_dir: Path,
    *,
    workers: int = 2,
    hyperparameters: Mapping[str, HyperparameterValue] | None = None,
    checkpoint_dir: Path | None = None,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
) -> list[TrainingJobResult]:
    """One job on `workers` hosts (127.0.0.1, 127.0.0.2, ...), each its own job folder under
    `root_dir/<host>`, training together with MultiWorkerMirroredStrategy. Results in host
    order; the first host is the chief. If one worker fails, the others are stopped."""
    hosts = [f"127.0.0.{index + 1}" for index in range(workers)]
    cluster = {"worker": [f"{host}:{_free_port()}" for host in hosts]}
    source = build_source_bundle(root_dir.resolve() / "bundle")
    checkpoint_dir = checkpoint_dir or root_dir / "checkpoints"
    jobs = [
        start_training_job(
            network,
            channels,
            root_dir / host,
            hyperparameters=hyperparameters,
            checkpoint_dir=checkpoint_dir,
            source=source,
            hosts=hosts,
            current_host=host,
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
            on_line=on_line,
        )
        for index, host in enumerate(hosts)
    ]
    deadline = None if timeout is None else time.monotonic() + timeout
    while any(job.poll() is None for job in jobs):
        failed = any(job.poll() not in (None, 0) for job in jobs)
        if failed or (deadline is not None and time.monotonic() > deadline):
            for job in jobs:
                job.kill()
        time.sleep(0.2)
    return [job.wait() for job in jobs]


def _hyperparameters(
    network: Network,
    hyperparameters: dict[str, HyperparameterValue],
    *,
    checkpoint_dir: Path,
    source: Path,
    encoding: HyperparameterEncoding,
) -> dict[str, str]:
    """hyperparameters.json of a job of `network`, as the SDK of `encoding` would write it."""
    unknown = sorted(set(hyperparameters) - {knob.name for knob in network.hyperparameters})
    if unknown:
        raise ValueError(f"network {network.name!r} has no hyperparameter {', '.join(unknown)}")
    values: dict[str, HyperparameterValue] = {
        "sagemaker_program": network.entry_point,
        "sagemaker_submit_directory": str(source),
        "sagemaker_job_name": f"local-{network.name}",
        "sagemaker_region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "sagemaker_container_log_level": 20,
        "checkpoint_dir": str(checkpoint_dir),
        **hyperparameters,
    }
    encode = json.dumps if encoding == "json" else str
    return {name: encode(value) for name, value in values.items()}


def _lay_out(
    job_dir: Path,
    hyperparameters: Mapping[str, str],
    channels: Mapping[str, Path | str],
    *,
    hosts: Sequence[str],
    current_host: str,
) -> None:
    config = job_dir / "input" / "config"
    for folder in (
        config,
        job_dir / "input" / "data",
        job_dir / "model",
        job_dir / "output" / "data",
        job_dir / "code",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    _write_json(config / "hyperparameters.json", dict(hyperparameters))
    _write_json(
        config / "resourceconfig.json",
        {
            "current_host": current_host,
            "hosts": list(hosts),
            "network_interface_name": "lo",
            "current_group_name": "homogeneousCluster",
            "current_instance_type": "local",
            "instance_groups": [
                {"instance_group_name": "homogeneousCluster", "instance_type": "local", "hosts": list(hosts)}
            ],
        },
    )
    _write_json(
        config / "inputdataconfig.json",
        {
            channel: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
            for channel in channels
        },
    )
    for channel, location in channels.items():
        target = job_dir / "input" / "data" / channel
        if target.is_symlink() or target.exists():
            continue
        if str(location).startswith("s3://"):
            import boto3

            download_prefix(boto3.client("s3"), str(location), target)
        else:
            target.symlink_to(Path(location).resolve(), target_is_directory=True)


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
