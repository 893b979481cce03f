"""The endpoint's server process: gunicorn with threaded workers, as in SageMaker's TF Serving container.

    python -m inference.endpoint_server SPEC_JSON      (started by `LocalEndpoint.start()`)

The caller binds the two listening sockets, the endpoint's and TF Serving's own (`context.rest_uri`,
port 8501 in the container), and passes them in (`fd://N`), so a busy port is the caller's error
and port 0 is resolved before this process starts. The process imports TensorFlow first, then
waits for the model (one JSON line on the model pipe, which the caller may send seconds later),
then gunicorn forks its workers. TensorFlow's modules survive a fork; its runtime
(thread pools, created on first use) would not, so the master never runs anything: each worker
sizes its thread pools, loads the SavedModel and the handlers itself, then writes "ready" (or
"error <message>") to the status pipe. SIGTERM, or the caller going away (its end of the
lifeline pipe closes), stops the server gracefully.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from inference.endpoint_app import EndpointApp

log = logging.getLogger(__name__)

# Idle keep-alive connections are closed after this long, so no thread waits forever on a client.
KEEP_ALIVE_SECONDS = 60


class DrainingWorker(ThreadWorker):
    """gunicorn's threaded worker, stopping as the local endpoint always has.

    gunicorn's own graceful stop stops accepting at once. This one first lets in-flight requests
    finish while still accepting, answering new invocations 503 (and serving `:predict`, which an
    in-flight lone `handler` may still call through a new connection), then stops as gunicorn does
    and closes idle keep-alive connections instead of waiting for their timeout.

    TF Serving's socket has a thread pool of its own: a lone `handler` waits for its `:predict`
    call, which must not queue behind the invocations holding every thread of the endpoint's pool.
    """

    def init_process(self) -> None:
        self.tfs_pool = ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="tfs")
        self.tfs_port = self.app.spec["tfs_address"][1]
        super().init_process()

    def enqueue_req(self, conn) -> None:
        if conn.server[1] != self.tfs_port:
            return super().enqueue_req(conn)
        done = self.tfs_pool.submit(self.handle, conn)
        done.add_done_callback(lambda future: self.method_queue.defer(self.finish_request, conn, future))

    def handle(self, conn):
        keep_alive = super().handle(conn)
        if not keep_alive:
            # gunicorn would close it on the worker's main thread, lingering there until the client
            # has closed its end too, while no other connection is accepted or read.
            conn.close(graceful=True)
            conn.closed_in_its_thread = True
        return keep_alive

    def finish_request(self, conn, future) -> None:
        if getattr(conn, "closed_in_its_thread", False):
            self.nr_conns -= 1  # all that is left of gunicorn's own closing
        else:
            super().finish_request(conn, future)

    def handle_exit(self, sig, frame) -> None:
        if self.alive and not self.app.endpoint_app.draining:
            threading.Thread(target=self._stop_when_idle, name="drain", daemon=True).start()

    def _stop_when_idle(self) -> None:
        self.app.endpoint_app.drain(self.cfg.graceful_timeout)
        self.method_queue.defer(self._close_idle_connections)
        super().handle_exit(signal.SIGTERM, None)

    def run(self) -> None:
        super().run()
        self.tfs_pool.shutdown(wait=False)
        # Every connection is closed: nothing is left to save, and tearing TensorFlow down takes
        # seconds on a busy machine, which the caller of stop() would wait for.
        os._exit(0)

    def _close_idle_connections(self) -> None:
        while self.keepalived_conns:
            connection = self.keepalived_conns.popleft()
            self.poller.unregister(connection.sock)
            self.nr_conns -= 1
            connection.close()


class _Server(BaseApplication):
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.endpoint_app: EndpointApp | None = None  # in a worker, once loaded
        super().__init__()

    def load_config(self) -> None:
        spec = self.spec
        for name, value in {
            "bind": [f"fd://{spec['listen_fd']}", f"fd://{spec['tfs_listen_fd']}"],
            "worker_class": DrainingWorker,
            "workers": spec["workers"],
            "threads": spec["threads"],
            "keepalive": KEEP_ALIVE_SECONDS,
            "graceful_timeout": math.ceil(spec["graceful_timeout"]),
            "pre_fork": share_out_cores,
            "post_fork": keep_to_its_cores,
            # Loading TensorFlow and the model takes longer than gunicorn's 30 s heartbeat on a busy
            # machine; a worker's main loop beats every second once it serves.
            "timeout": 0,
            "loglevel": "warning",
            "accesslog": None,
            "proc_name": spec["endpoint_name"],
        }.items():
            self.cfg.set(name, value)

    def load(self) -> Callable:
        """Runs in each worker after the fork: TensorFlow, the SavedModel, the handlers."""
        try:
            self.endpoint_app = build_app(self.spec)
        except Exception as error:
            _report(self.spec, f"error {type(error).__name__}: {error}")
            raise
        _report(self.spec, "ready")
        return _closing_when_asked(self.endpoint_app)


def share_out_cores(server, worker) -> None:
    """In the master, before a worker forks: the cores no live worker has (a replaced worker's)."""
    cores = sorted(os.sched_getaffinity(0))
    share = len(cores) // server.num_workers
    if share == 0:
        return  # fewer cores than workers: nothing to share out
    taken = {getattr(other, "cores", None) for other in server.WORKERS.values()}
    shares = (frozenset(cores[index * share : (index + 1) * share]) for index in range(server.num_workers))
    worker.cores = next(free for free in shares if free not in taken)


def keep_to_its_cores(server, worker) -> None:
    """Each worker (and its TensorFlow threads, sized to its share) stays on its own cores: left
    to the scheduler, workers moving between the cores served 16 clients about a fifth fewer
    requests per second, at about 1.4 times the median latency (benchmarks/endpoint_latency.py,
    2 cores)."""
    if hasattr(worker, "cores"):
        os.sched_setaffinity(0, worker.cores)


def _closing_when_asked(app: Callable) -> Callable:
    """The app's `Connection: close` made gunicorn's own: WSGI leaves that header to the server,
    and gunicorn drops it from an app's answer (`start_response` is its Response's method)."""

    def closing_app(environ: dict, start_response: Callable):
        def start(status: str, headers: list, exc_info=None):
            if ("Connection", "close") in headers:
                start_response.__self__.force_close()  # type: ignore[attr-defined]  # gunicorn's Response method
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return closing_app


def build_app(spec: dict) -> EndpointApp:
    from inference.async_inference import AsyncInvocations, AsyncTarget
    from inference.capture import CaptureTarget, writer_for
    from inference.container import load_handler_module, make_handler
    from inference.endpoint_app import MAX_PAYLOAD_BYTES, PRODUCTION_VARIANT
    from inference.tf_serving import SavedModelServable

    # The container puts code/ on the Python path, so a handler may import its siblings.
    sys.path.insert(0, os.path.dirname(spec["handler_path"]))
    servable = SavedModelServable(spec["saved_model_dir"], spec["version"], intra_op_threads=spec["tf_threads"])
    handler = make_handler(load_handler_module(spec["handler_path"]), servable)
    capture = None
    if spec.get("capture"):
        capture = writer_for(CaptureTarget.from_json(spec["capture"]), spec["endpoint_name"], PRODUCTION_VARIANT)
    app = EndpointApp(
        spec["endpoint_name"],
        servable,
        handler,
        tuple(spec["tfs_address"]),
        capture=capture,
        container_max_payload=batch_max_payload() or MAX_PAYLOAD_BYTES,
    )
    if spec.get("async"):
        app.async_invocations = AsyncInvocations(
            spec["endpoint_name"], AsyncTarget.from_json(spec["async"]), app.call_container
        )
    return app


def batch_max_payload() -> int | None:
    """Under a batch transform (SAGEMAKER_BATCH, set in this process's environment as SageMaker sets
    it in the container), the largest body SageMaker sends: MaxPayloadInMB."""
    if os.environ.get("SAGEMAKER_BATCH", "").lower() != "true":
        return None
    return int(os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB") or 6) * 1024 * 1024


def _report(spec: dict, line: str) -> None:
    os.write(spec["status_fd"], (" ".join(line.split()) + "\n").encode())


def _stop_when_the_caller_goes(lifeline_fd: int) -> None:
    """The caller holds the other end; EOF means it exited, even by SIGKILL: stop gracefully."""
    while os.read(lifeline_fd, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _model_sent(model_fd: int) -> dict | None:
    """The model the caller sends once it is known; None if it closes the pipe without one."""
    with os.fdopen(model_fd, "rb") as pipe:
        line = pipe.readline()
    return json.loads(line) if line else None


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    threading.Thread(target=_stop_when_the_caller_goes, args=(spec["lifeline_fd"],), daemon=True).start()
    # Most of a worker's start-up: imported once here, before the model is known, instead of
    # after it in every worker.
    import inference.tf_serving  # noqa: F401

    model, status = _model_sent(spec["model_fd"]), 0
    if model is not None:
        try:
            _Server({**spec, **model}).run()
        except SystemExit as stopped:  # how gunicorn's master ends
            status = stopped.code if isinstance(stopped.code, int) else 1
    # Without unloading TensorFlow's modules, as a worker exits: seconds, with nothing left to save.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
