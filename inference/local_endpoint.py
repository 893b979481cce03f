"""A local SageMaker endpoint: one exported model behind a real HTTP server on this machine.

It runs the artifact's own `code/inference.py` the way SageMaker's TensorFlow Serving container
does (imported by path; called with the request stream and the container's `Context`:
`inference.container`), and answers the handlers' `:predict` calls itself from the SavedModel's
`serving_default` signature in TensorFlow Serving's REST format (`inference.tf_serving`). As in
the container, the HTTP server is gunicorn with threaded workers (`inference.endpoint_server`),
in a process of its own; the routes are a WSGI app (`inference.endpoint_app`):

    GET  /ping                                  container health check
    POST /invocations                           container contract: 200 with the handler's answer,
                                                500 {"error": str(e)} for ANY handler exception
    POST /endpoints/<name>/invocations          SageMaker Runtime InvokeEndpoint: a non-2xx from
                                                the handler becomes 424 ModelError, as in AWS
    POST /endpoints/<name>/async-invocations    SageMaker Runtime InvokeEndpointAsync, with an
                                                `async_target` (inference.async_inference)
    POST /v1/models/model[/versions/<v>]:predict TensorFlow Serving REST
    GET  /v1/models/model[/versions/<v>]        TensorFlow Serving model status

TF Serving's routes are also served on a port of their own (`tfs_url`; the container's 8501),
which `context.rest_uri` names: there a lone `handler`'s `:predict` call has threads of its own.

With a `capture` target it records invocations of the SageMaker Runtime path as SageMaker's data
capture does (`inference.capture`). An unmodified boto3 client talks to it:
    boto3.client("sagemaker-runtime", endpoint_url=endpoint.url).invoke_endpoint(...)

    with LocalEndpoint("model.tar.gz", "mlops-local-cnn") as endpoint:
        requests.post(endpoint.url + "/invocations", data=png, headers={"Content-Type": "image/png"})
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from inference.artifact import ArtifactError, ModelArtifact
from inference.async_inference import AsyncTarget
from inference.capture import CaptureTarget
from inference.container import load_handler_module, make_handler
from inference.endpoint_app import Context

# The handler contract, where callers of the endpoint have always found it.
__all__ = ["Context", "LocalEndpoint", "load_handler_module", "make_handler"]

log = logging.getLogger(__name__)

# Two worker processes use both cores of a small machine; each has its own GIL, TensorFlow and model.
WORKERS = 2
THREADS = 8  # per worker: requests answered at once (a keep-alive connection holds none while idle)
START_SECONDS = 300.0  # a worker imports TensorFlow and loads the model: seconds, more on a busy machine
LISTEN_BACKLOG = 128  # 16 clients connecting at once must not be refused
REPO_ROOT = Path(__file__).resolve().parent.parent  # the server process imports `inference` from here


def tf_threads_per_worker(workers: int) -> int:
    """Each worker's TensorFlow thread pools: together, the workers use each core once."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


class LocalEndpoint:
    """Serves one model folder or model.tar.gz; `start()` returns once every worker has loaded it."""

    def __init__(
        self,
        model_path: str | Path,
        endpoint_name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = WORKERS,
        threads: int = THREADS,
        capture: CaptureTarget | None = None,
        log_path: str | Path | None = None,
        environment: Mapping[str, str] | None = None,
        async_target: AsyncTarget | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        # The server's output, where the container's log lines go (in AWS, the endpoint's log
        # group): appended to this file, else this process's.
        self.log_path = Path(log_path) if log_path is not None else None
        self.endpoint_name = endpoint_name
        self.host = host
        self.port = port
        self.workers = workers
        self.threads = threads
        self.capture = capture  # data capture as the endpoint config asks (inference.capture)
        # The container's environment from SageMaker: a Model's Environment, and under a batch
        # transform SAGEMAKER_BATCH, SAGEMAKER_MAX_PAYLOAD_IN_MB, ... (the handlers read them).
        self.environment = dict(environment or {})
        self.async_target = async_target  # InvokeEndpointAsync as the endpoint config asks
        self._artifact: ModelArtifact | None = None
        self._process: subprocess.Popen | None = None
        self._status: int | None = None  # the server's "ready" / "error ..." lines
        self._model_pipe: int | None = None  # the model, once known
        self._lifeline: int | None = None  # closes when this process exits: the server then stops
        self._bound_port: int | None = None
        self._tfs_port: int | None = None

    @property
    def url(self) -> str:
        return self._url(self._bound_port)

    @property
    def tfs_url(self) -> str:
        """TF Serving's own REST address, which handlers reach as `context.rest_uri`."""
        return self._url(self._tfs_port)

    def _url(self, port: int | None) -> str:
        self._started()
        return f"http://{self.host}:{port}"

    def _started(self) -> subprocess.Popen:
        if self._process is None:
            raise RuntimeError("the endpoint is not started")
        return self._process

    def prepare(self) -> LocalEndpoint:
        """Binds the port and starts the server process, which imports TensorFlow (seconds) and then
        waits for the model; `start()` then only loads it. Raises OSError if the port cannot be bound."""
        if self._process is None:
            try:
                self._spawn()
            except BaseException:
                self._end_process()
                raise
        return self

    def start(self, stop_timeout: float = 30.0) -> LocalEndpoint:
        """Raises ArtifactError if the model cannot be served, OSError if the port cannot be bound."""
        artifact = ModelArtifact.open(self.model_path)
        try:
            self.prepare()
            self._load(artifact, stop_timeout)
        except BaseException:
            self._end_process()
            artifact.cleanup()
            raise
        self._artifact = artifact
        log.info("endpoint %s serving %s at %s", self.endpoint_name, self.model_path, self.url)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Lets in-flight requests finish (new invocations get 503), closes connections, frees the port."""
        if self._process is None:
            return
        self._end_process(timeout)
        if self._artifact is not None:
            self._artifact.cleanup()
            self._artifact = None
        log.info("endpoint %s stopped", self.endpoint_name)

    def serve_until_signal(self) -> None:
        """Runs in the foreground until SIGTERM or SIGINT, then stops cleanly (main thread only)."""
        stop_requested = threading.Event()
        previous = {
            number: signal.signal(number, lambda *_: stop_requested.set()) for number in (signal.SIGTERM, signal.SIGINT)
        }
        process = self._started()
        try:
            while not stop_requested.wait(1.0):
                if process.poll() is not None:
                    log.error("the endpoint's server exited (status %s)", process.returncode)
                    break
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self.stop()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _spawn(self) -> None:
        with (
            socket.create_server((self.host, self.port), backlog=LISTEN_BACKLOG) as listener,
            socket.create_server((self.host, 0), backlog=LISTEN_BACKLOG) as tfs_listener,
        ):
            self._bound_port, self._tfs_port = listener.getsockname()[1], tfs_listener.getsockname()[1]
            self._status, status_write = os.pipe()
            model_read, self._model_pipe = os.pipe()
            lifeline_read, self._lifeline = os.pipe()
            spec = {
                "listen_fd": listener.fileno(),
                "tfs_listen_fd": tfs_listener.fileno(),
                "status_fd": status_write,
                "model_fd": model_read,
                "lifeline_fd": lifeline_read,
                "endpoint_name": self.endpoint_name,
                "tfs_address": [self.host, self._tfs_port],
                "workers": self.workers,
                "threads": self.threads,
                "tf_threads": tf_threads_per_worker(self.workers),
            }
            log = open(self.log_path, "ab") if self.log_path is not None else None  # noqa: SIM115
            try:
                # A session of its own: Ctrl-C in a terminal reaches this process, which stops the
                # server gracefully, not the server directly.
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "inference.endpoint_server", json.dumps(spec)],
                    pass_fds=(listener.fileno(), tfs_listener.fileno(), status_write, model_read, lifeline_read),
                    start_new_session=True,
                    stdout=log,
                    stderr=subprocess.STDOUT if log is not None else None,
                    cwd=REPO_ROOT,  # `-m` imports from the working directory first: this tree's server
                    env={
                        **os.environ,
                        **self.environment,
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                    },
                )
            finally:
                for end in (status_write, model_read, lifeline_read):
                    os.close(end)
                if log is not None:
                    log.close()  # the server holds its own descriptor

    def _load(self, artifact: ModelArtifact, stop_timeout: float) -> None:
        """Hands the prepared server its model, then waits until every worker has loaded it."""
        model = {
            "saved_model_dir": str(artifact.saved_model_dir.resolve()),
            "version": artifact.version,
            "handler_path": str(artifact.handler_path.resolve()),
            "graceful_timeout": stop_timeout,
            "capture": self.capture.to_json() if self.capture else None,
            "async": self.async_target.to_json() if self.async_target else None,
        }
        model_pipe, status = self._model_pipe, self._status
        if model_pipe is None or status is None:
            raise RuntimeError("the endpoint's server is not prepared")
        try:
            os.write(model_pipe, (json.dumps(model) + "\n").encode())
        except BrokenPipeError:
            pass  # the server exited while preparing: the status pipe's end of file says so
        finally:
            os.close(model_pipe)
            self._model_pipe = None
        self._wait_until_ready(status)

    def _wait_until_ready(self, status: int) -> None:
        deadline = time.monotonic() + START_SECONDS
        received, ready = b"", 0
        while ready < self.workers:
            readable, _, _ = select.select([status], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise TimeoutError(f"the endpoint did not load {self.model_path} within {START_SECONDS:.0f} s")
            chunk = os.read(status, 4096)
            if not chunk:
                raise RuntimeError(
                    f"the endpoint's server exited while loading {self.model_path} "
                    f"(status {self._started().wait()}); its log is {self.log_path or 'above'}"
                )
            *lines, received = (received + chunk).split(b"\n")
            for line in (line.decode() for line in lines):
                if line.startswith("error "):
                    raise ArtifactError(f"{self.model_path} cannot be served: {line.removeprefix('error ')}")
                ready += line == "ready"

    def _end_process(self, timeout: float = 30.0) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout + 5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        for name in ("_status", "_model_pipe", "_lifeline"):
            if getattr(self, name) is not None:
                os.close(getattr(self, name))
                setattr(self, name, None)
