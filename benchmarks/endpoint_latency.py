"""Local endpoint latency for one CNN image, beside the raw in-process signature call.

    .venv/bin/python benchmarks/endpoint_latency.py                  # trains a small CNN first (~5 s)
    .venv/bin/python benchmarks/endpoint_latency.py --model runs/cnn/model.tar.gz --duration 30

1. raw: the SavedModel's `serving_default` called in this process on the decoded image;
2. endpoint, 1 client: the PNG of a digit POSTed to /invocations over one keep-alive connection,
   through the real `code/inference.py` handlers (required: p50 <= 5 ms, p99 <= 20 ms);
3. endpoint, 16 clients for `--duration` seconds: throughput, latency, errors (required: 0).
The endpoint runs in a child process, as it would beside its callers; everything is on 127.0.0.1.
Exits 1 if a requirement is not met.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

P50_LIMIT_MS, P99_LIMIT_MS = 5.0, 20.0
SINGLE_CLIENT_REQUESTS = 2000
RAW_CALLS = 2000
WARM_UP_REQUESTS = 100
CLIENTS = 16


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
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images[:1500], digits.target[:1500], epochs=8, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(images[1500:], digits.target[1500:], verbose=0)
    print(f"trained the CNN on sklearn digits: held-out accuracy {accuracy:.3f}")

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=lambda image: {"probabilities": model(image)},
                         input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")])
    archive.write_out(str(model_dir / "1"), verbose=False)
    code_dir = model_dir / "code"
    code_dir.mkdir()
    for name in ("inference.py", "requirements.txt"):
        shutil.copy(REPO_ROOT / "inference" / "model_code" / name, code_dir / name)
    (code_dir / "serving.json").write_text(json.dumps({
        "network": "cnn", "task": "image_classifier", "input_name": "image", "input_shape": [8, 8, 1],
        "input_dtype": "float32", "class_names": [str(digit) for digit in range(10)]}))
    return model_dir


def digit_png() -> tuple[bytes, np.ndarray]:
    """A held-out digit as PNG bytes, and the array the handler decodes it to."""
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[-1] * (255.0 / 16.0)).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue(), pixels.astype(np.float32).reshape(1, 8, 8, 1)


def run_endpoint(model_path: str, urls: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    from inference.local_endpoint import LocalEndpoint

    with LocalEndpoint(model_path, "mlops-local-cnn") as endpoint:
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


class Client:
    """One keep-alive HTTP/1.1 connection POSTing the PNG to /invocations."""

    def __init__(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.body = body

    def invoke(self) -> tuple[int, bytes]:
        self.connection.request("POST", "/invocations", body=self.body,
                                headers={"Content-Type": "image/png", "Accept": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read()


def single_client_ms(url: str, body: bytes) -> tuple[np.ndarray, str]:
    client = Client(url, body)
    for _ in range(WARM_UP_REQUESTS):
        status, answer = client.invoke()
        assert status == 200, answer
    times = []
    for _ in range(SINGLE_CLIENT_REQUESTS):
        start = time.perf_counter()
        status, answer = client.invoke()
        times.append(time.perf_counter() - start)
        assert status == 200, answer
    return np.array(times) * 1000, json.loads(answer)["predictions"][0]["label"]


def concurrent_load(url: str, body: bytes, duration: float, expected_label: str) -> dict:
    deadline = time.perf_counter() + duration
    lock = threading.Lock()
    times: list[float] = []
    errors: list[str] = []

    def work() -> None:
        client = Client(url, body)
        mine, failures = [], []
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                status, answer = client.invoke()
                if status != 200 or json.loads(answer)["predictions"][0]["label"] != expected_label:
                    failures.append(f"{status}: {answer[:200]!r}")
            except (OSError, http.client.HTTPException) as error:
                failures.append(repr(error))
                client = Client(url, body)
            mine.append(time.perf_counter() - start)
        with lock:
            times.extend(mine)
            errors.extend(failures)

    threads = [threading.Thread(target=work) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = np.array(times) * 1000
    return {"requests": len(times), "errors": errors, "seconds": elapsed,
            "throughput": len(times) / elapsed, "p50": np.percentile(latencies, 50),
            "p99": np.percentile(latencies, 99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a trained CNN artifact (folder or model.tar.gz); "
                                                    "default: train one on sklearn digits")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the 16-client run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="endpoint-latency-") as scratch:
        model_path = args.model or train_cnn(Path(scratch) / "cnn")
        body, image = digit_png()
        raw = raw_signature_ms(model_path, image)

        spawn = multiprocessing.get_context("spawn")
        urls, stop = spawn.Queue(), spawn.Event()
        server = spawn.Process(target=run_endpoint, args=(str(model_path), urls, stop))
        server.start()
        try:
            url = urls.get(timeout=120)
            endpoint, label = single_client_ms(url, body)
            load = concurrent_load(url, body, args.duration, label)
        finally:
            stop.set()
            server.join(60)

    print(f"\nCNN, one 8x8 digit PNG ({len(body)} bytes), predicted label {label}")
    print(f"raw signature call (in-process, {RAW_CALLS} calls):   "
          f"p50 {np.percentile(raw, 50):6.2f} ms   p99 {np.percentile(raw, 99):6.2f} ms")
    print(f"endpoint, 1 client ({SINGLE_CLIENT_REQUESTS} requests, keep-alive): "
          f"p50 {np.percentile(endpoint, 50):6.2f} ms   p99 {np.percentile(endpoint, 99):6.2f} ms   "
          f"(limits {P50_LIMIT_MS} / {P99_LIMIT_MS} ms)")
    print(f"endpoint, {CLIENTS} clients for {load['seconds']:.1f} s: {load['requests']} requests, "
          f"{load['throughput']:.0f} requests/s, p50 {load['p50']:.2f} ms, p99 {load['p99']:.2f} ms, "
          f"{len(load['errors'])} errors")
    for error in load["errors"][:5]:
        print(f"  error: {error}")
    met = (np.percentile(endpoint, 50) <= P50_LIMIT_MS and np.percentile(endpoint, 99) <= P99_LIMIT_MS
           and not load["errors"])
    print("requirements met" if met else "REQUIREMENTS NOT MET")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
