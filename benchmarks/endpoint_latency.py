"""Local endpoint latency and throughput for one CNN image, beside the raw in-process signature call.

    .venv/bin/python benchmarks/endpoint_latency.py                  # trains a small CNN first (~5 s)
    .venv/bin/python benchmarks/endpoint_latency.py --model runs/cnn/model.tar.gz --duration 30 --rounds 3
    git archive OLD inference | tar -x -C /tmp/old      # an older tree, measured in turn with this one
    .venv/bin/python benchmarks/endpoint_latency.py --compare /tmp/old/inference/local_endpoint.py --rounds 3

1. raw: the SavedModel's `serving_default` called in this process on the decoded image;
2. the PNG of a digit POSTed through the real `code/inference.py` handlers, over HTTP keep-alive
   to /invocations and with one new connection per request to SageMaker Runtime's
   /endpoints/NAME/invocations; 1 client (sequential requests) and 16 clients (in flight at once,
   for `--duration` seconds); every answer is checked (status 200, the expected label).
Required: keep-alive 1 client p50 <= 1.5 ms; keep-alive 16 clients >= 900 requests/s; new
connection 16 clients >= 800 requests/s; every run p99 <= 20 ms and no errors.
The endpoint runs in its own processes, as beside its callers; everything is on 127.0.0.1. The
clients are lean: one thread, non-blocking sockets, pre-built request bytes, so that their own
cost disturbs the server little. Exits 1 if a requirement is not met.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import multiprocessing
import os
import selectors
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

P99_LIMIT_MS = 20.0
KEEP_ALIVE_P50_LIMIT_MS = 1.5
KEEP_ALIVE_MIN_THROUGHPUT = 900.0
NEW_CONNECTION_MIN_THROUGHPUT = 800.0
SINGLE_CLIENT_REQUESTS = 2000
RAW_CALLS = 2000
WARM_UP_REQUESTS = 100
CLIENTS = 16
ANSWER_TIMEOUT_SECONDS = 30.0
ENDPOINT_NAME = "mlops-local-cnn"


def train_cnn(model_dir: Path) -> Path:
    """The training engineer's CNN (Conv2D 32 3x3, MaxPool, Dense 64, softmax) on sklearn digits, briefly."""
    import keras
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[..., np.newaxis] * (255.0 / 16.0)).astype(np.float32)
    keras.utils.set_random_seed(42)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[:1500], digits.target[:1500], epochs=8, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(images[1500:], digits.target[1500:], verbose=0)
    print(f"trained the CNN on sklearn digits: held-out accuracy {accuracy:.3f}")

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda image: {"probabilities": model(image)},
        input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")],
    )
    archive.write_out(str(model_dir / "1"), verbose=False)
    code_dir = model_dir / "code"
    code_dir.mkdir()
    for path in (REPO_ROOT / "inference" / "model_code").glob("*.py"):
        shutil.copy(path, code_dir / path.name)
    from inference.model_lib import container_wheels
    from training.model_lib import install_wheels

    install_wheels(container_wheels(), code_dir / "lib")
    from training.tasks import get_task

    # serving.json as training writes it: the task registry's description of an image classifier.
    (code_dir / "serving.json").write_text(
        json.dumps(
            {
                **get_task("image_classifier").serving_description(),
                "network": "cnn",
                "input_name": "image",
                "input_shape": [8, 8, 1],
                "input_dtype": "float32",
                "signature": "serving_default",
                "class_names": [str(digit) for digit in range(10)],
            }
        )
    )
    return model_dir


def digit_png() -> tuple[bytes, np.ndarray]:
    """A held-out digit as PNG bytes, and the array the handler decodes it to."""
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[-1] * (255.0 / 16.0)).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue(), pixels.astype(np.float32).reshape(1, 8, 8, 1)


def run_endpoint(endpoint_file: str | None, model_path: str, urls, stop) -> None:
    """In a process of its own: the endpoint (this tree's, or the LocalEndpoint in `endpoint_file`)."""
    endpoint_class: Any
    if endpoint_file is None:
        from inference.local_endpoint import LocalEndpoint as endpoint_class
    else:
        spec = importlib.util.spec_from_file_location("compared_endpoint", endpoint_file)
        if spec is None or spec.loader is None:
            raise SystemExit(f"{endpoint_file} is not a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        endpoint_class = module.LocalEndpoint

    with endpoint_class(model_path, ENDPOINT_NAME) as endpoint:
        urls.put(endpoint.url)
        stop.wait()


def raw_signature_ms(model_path: Path, image: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    from inference.artifact import ModelArtifact

    artifact = ModelArtifact.open(model_path)
    try:
        signature = tf.saved_model.load(str(artifact.saved_model_dir)).signatures["serving_default"]
        for _ in range(WARM_UP_REQUESTS):
            signature(image=tf.constant(image))
        times = []
        for _ in range(RAW_CALLS):
            start = time.perf_counter()
            signature(image=tf.constant(image))["probabilities"].numpy()
            times.append(time.perf_counter() - start)
    finally:
        artifact.cleanup()
    return np.array(times) * 1000


@dataclass
class Run:
    """What one measured run saw: latencies (ms), errors, wall time."""

    name: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("inf")


class _Client:
    """One client: a request in flight at a time, on its own connection (kept, or new per request)."""

    def __init__(self, load: _Load) -> None:
        self.load, self.received, self.started = load, b"", 0.0
        self.sock: socket.socket | None = None

    @property
    def connection(self) -> socket.socket:
        if self.sock is None:
            raise ConnectionError("the client is not connected")
        return self.sock

    def connect(self) -> None:
        self.sock = sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.started = time.perf_counter()
        sock.connect_ex(self.load.address)
        self.load.selector.register(sock, selectors.EVENT_WRITE, self)

    def on_event(self, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                error = self.connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, os.strerror(error))
                self.load.selector.modify(self.connection, selectors.EVENT_READ, self)
                self.send()
            else:
                self.receive()
        except OSError as error:
            self.fail(repr(error))

    def send(self) -> None:
        self.received = b""
        self.connection.send(self.load.request)  # a few hundred bytes: the socket buffer takes them at once

    def receive(self) -> None:
        chunk = self.connection.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before answering")
        self.received += chunk
        head_end = self.received.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.received[:head_end].decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        if len(self.received) < head_end + 4 + length:
            return
        now = time.perf_counter()
        self.load.record(now - self.started, head[9:12], self.received[head_end + 4 : head_end + 4 + length])
        if self.load.keep_alive and "connection: close" not in head:
            if self.load.another():
                self.started = now
                self.send()
            else:
                self.close()
        else:
            self.close()
            if self.load.another():
                self.connect()

    def fail(self, error: str) -> None:
        self.load.run.errors.append(error)
        self.close()
        if self.load.another():
            self.connect()

    def close(self) -> None:
        if self.sock is not None:
            self.load.selector.unregister(self.sock)
            self.sock.close()
            self.sock = None


class _Load:
    """`clients` clients in one thread (non-blocking sockets): none waits for the GIL of another."""

    def __init__(
        self,
        url: str,
        path: str,
        body: bytes,
        keep_alive: bool,
        expected_label: str | None,
        run: Run,
        duration: float,
        max_requests: int,
    ) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.keep_alive, self.expected_label, self.run = keep_alive, expected_label, run
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: image/png\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
            + "\r\n"
        ).encode() + body
        self.selector = selectors.DefaultSelector()
        self.duration, self.max_requests, self.issued = duration, max_requests, 0
        self.deadline = 0.0

    def another(self) -> bool:
        if self.issued >= self.max_requests or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True

    def record(self, seconds: float, status: str, body: bytes) -> None:
        self.run.latencies.append(seconds * 1000)
        label = json.loads(body)["predictions"][0]["label"] if status == "200" else None
        if status != "200" or (self.expected_label is not None and label != self.expected_label):
            self.run.errors.append(f"{status}: {body[:200]!r}")

    def measure(self) -> Run:
        clients = [_Client(self) for _ in range(self.run.clients)]
        started = time.perf_counter()
        self.deadline = started + self.duration
        for client in clients:
            if self.another():
                client.connect()
        give_up = self.deadline + ANSWER_TIMEOUT_SECONDS
        while self.selector.get_map() and time.perf_counter() < give_up:
            for key, mask in self.selector.select(1.0):
                key.data.on_event(mask)
        for client in clients:
            if client.sock is not None:
                client.fail(f"no answer within {ANSWER_TIMEOUT_SECONDS:.0f} s")
        self.run.seconds = time.perf_counter() - started
        self.selector.close()
        return self.run


class _Probe(_Load):
    """One request whose answer is kept."""

    answer = b""

    def record(self, seconds: float, status: str, body: bytes) -> None:
        self.answer = body


def measure_endpoint(url: str, body: bytes, duration: float) -> tuple[list[Run], str]:
    """The four runs: keep-alive and new connections, 1 and 16 clients."""
    runtime_path = f"/endpoints/{ENDPOINT_NAME}/invocations"
    warm_up = _Load(url, "/invocations", body, True, None, Run("warm-up", 1), 60.0, WARM_UP_REQUESTS).measure()
    assert not warm_up.errors, warm_up.errors[:3]
    probe = _Probe(url, "/invocations", body, True, None, Run("probe", 1), 60.0, 1)
    probe.measure()
    label = json.loads(probe.answer)["predictions"][0]["label"]
    runs = []
    for keep_alive, path, name in (
        (True, "/invocations", "keep-alive"),
        (False, runtime_path, "new connection per request"),
    ):
        runs.append(
            _Load(
                url, path, body, keep_alive, label, Run(f"{name}, 1 client", 1), 3600.0, SINGLE_CLIENT_REQUESTS
            ).measure()
        )
        runs.append(
            _Load(
                url, path, body, keep_alive, label, Run(f"{name}, {CLIENTS} clients", CLIENTS), duration, 10**9
            ).measure()
        )
    return runs, label


def serve_and_measure(endpoint_file: str | None, model_path: Path, body: bytes, duration: float) -> list[Run]:
    spawn = multiprocessing.get_context("spawn")
    urls, stop = spawn.Queue(), spawn.Event()
    started = time.perf_counter()
    server = spawn.Process(target=run_endpoint, args=(endpoint_file, str(model_path), urls, stop))
    server.start()
    try:
        url = urls.get(timeout=300)
        print(
            f"  {endpoint_file or 'this tree'}: started in {time.perf_counter() - started:.1f} s "
            f"(process start, TensorFlow, model)",
            flush=True,
        )
        runs, _ = measure_endpoint(url, body, duration)
    finally:
        stop.set()
        server.join(60)
    return runs


def requirements_met(runs: list[Run]) -> bool:
    keep_1, keep_many, _new_1, new_many = runs
    return (
        keep_1.percentile(50) <= KEEP_ALIVE_P50_LIMIT_MS
        and keep_many.throughput >= KEEP_ALIVE_MIN_THROUGHPUT
        and new_many.throughput >= NEW_CONNECTION_MIN_THROUGHPUT
        and all(run.percentile(99) <= P99_LIMIT_MS and not run.errors for run in runs)
    )


def print_runs(title: str, runs: list[Run]) -> None:
    print(f"\n{title}")
    for run in runs:
        print(
            f"  {run.name:<38} {len(run.latencies):6d} requests in {run.seconds:5.1f} s  "
            f"{run.throughput:6.0f} requests/s  p50 {run.percentile(50):6.2f} ms  "
            f"p99 {run.percentile(99):6.2f} ms  {len(run.errors)} errors"
        )
        for error in run.errors[:3]:
            print(f"    error: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        help="a trained CNN artifact (folder or model.tar.gz); default: train one on sklearn digits",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of each 16-client run")
    parser.add_argument(
        "--compare",
        metavar="FILE",
        help="another local_endpoint.py (e.g. an older version), measured in turn with this tree's",
    )
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds (with --compare: of both, interleaved)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="endpoint-latency-") as scratch:
        model_path = args.model or train_cnn(Path(scratch) / "cnn")
        body, image = digit_png()
        raw = raw_signature_ms(model_path, image)
        print(f"\nCNN, one 8x8 digit PNG ({len(body)} bytes); load average {os.getloadavg()[0]:.1f}")
        print(
            f"raw signature call (in-process, {RAW_CALLS} calls): "
            f"p50 {np.percentile(raw, 50):6.2f} ms   p99 {np.percentile(raw, 99):6.2f} ms"
        )
        contenders = [None] + ([args.compare] if args.compare else [])
        results: dict[str | None, list[list[Run]]] = {contender: [] for contender in contenders}
        for round_number in range(args.rounds):
            # Interleaved, and each round in the other order, so a busy spell hits both alike.
            order = contenders if round_number % 2 == 0 else contenders[::-1]
            for contender in order:
                load_before = os.getloadavg()[0]
                runs = serve_and_measure(contender, model_path, body, args.duration)
                results[contender].append(runs)
                # The 1-minute load average: before the round, and after it (the round's own load included).
                print_runs(
                    f"round {round_number + 1}, {contender or 'this tree'} "
                    f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)",
                    runs,
                )

    met = all(requirements_met(runs) for runs in results[None])
    print("\nrequirements met" if met else "\nREQUIREMENTS NOT MET")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
