"""The local batch transform on all 10,000 MNIST test images, beside the real-time endpoint, same run.

    .venv/bin/mlops local --network cnn           # first: trains, evaluates and registers the CNN
    .venv/bin/python benchmarks/batch_transform.py [--report mlops-local-report/cnn] [--gigabytes 1]

On the model `mlops local` registered (its report folder's model/model.tar.gz) and the accuracy its
Evaluate step measured on the same 10,000 test images (metrics.json):

1. the test images as JSON Lines (`{"id", "features"}`) and as CSV rows (`id,<784 pixels>`), each
   scored by the local batch transform job (mlops/local/transform_job.py: the local endpoint's
   server and handlers under SAGEMAKER_BATCH, MultiRecord mini-batches of MaxPayloadInMB 6, 2
   requests in flight), input and output in a moto server's S3: as many output lines as input
   lines, each joined to its input's id, accuracy against the labels beside the Evaluate step's;
2. the same images through the real-time endpoint (the same model and handlers, 2 workers), one PNG
   per request: every label equal to the batch's, probabilities within 1e-3 (float32 kernels for
   a batch and for one image differ in the last digits); then the endpoint's 16-client figure measured
   as benchmarks/endpoint_latency.py measures it (one MNIST PNG, keep-alive, `--duration` seconds);
3. images per second of each, and their ratio (goal: batch >= 3x real time);
4. `--gigabytes` of JSON Lines (the test images repeated with new ids) through the same job: this
   process's peak RSS (VmHWM, reset before the job) and the endpoint's processes', against the
   input's size (goal: the input is never held whole).

moto runs in a process of its own, so that its copy of the input is not counted in this one's.
Exits 1 if a check fails (counts, ids, accuracy, predictions) or a goal is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import importlib.util
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mlops.datasets.mnist import load_mnist  # noqa: E402 - after the repository is on the path
from mlops.local.transform_job import TransformRuntime, run_transform_step  # noqa: E402
from training.batch_formats import CSV, JSON_LINES, RECORD_FORMATS  # noqa: E402

BUCKET = "bench"
GOAL_RATIO = 3.0
CLIENTS = 16
CONCURRENCY = 2
MAX_PAYLOAD_MB = 6
PROBABILITY_TOLERANCE = 1e-3


def load_latency_module() -> Any:
    spec = importlib.util.spec_from_file_location("endpoint_latency", REPO_ROOT / "benchmarks" / "endpoint_latency.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def serve_moto(ports: Any, stop: Any) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    ports.put(server.get_host_and_port()[1])
    stop.wait()
    server.stop()


class NoRecords:
    """The job's records: moto's SageMaker lives in the other process, and is not what is measured."""

    def start_transform_job(self, name: str, request: Any) -> dict[str, Any]:
        self.started = datetime.now(UTC)
        return {}

    def end_transform_job(self, name: str, status: str, failure_reason: str | None) -> dict[str, Any]:
        return {
            "TransformJobStatus": status,
            "FailureReason": failure_reason,
            "TransformStartTime": self.started,
            "TransformEndTime": datetime.now(UTC),
        }


def write_inputs(folder: Path, images: np.ndarray) -> dict[str, Path]:
    ids = [f"test-{index:05d}" for index in range(len(images))]
    jsonl, rows = folder / "mnist-test.jsonl", folder / "mnist-test.csv"
    with jsonl.open("w") as lines:
        for image_id, image in zip(ids, images, strict=True):
            lines.write(json.dumps({"id": image_id, "features": image.tolist()}, separators=(",", ":")) + "\n")
    with rows.open("w") as lines:
        for image_id, image in zip(ids, images, strict=True):
            lines.write(",".join([image_id, *map(str, image.ravel().tolist())]) + "\n")
    return {JSON_LINES: jsonl, CSV: rows}


def request(content_type: str, input_uri: str, output_uri: str) -> dict[str, Any]:
    record = RECORD_FORMATS[content_type]
    return {
        "ModelName": "bench",
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": MAX_PAYLOAD_MB,
        "MaxConcurrentTransforms": CONCURRENCY,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": content_type,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": record.accept, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.c7i.large", "InstanceCount": 1},
        "DataProcessing": record.data_processing(),
    }


def answers_of(content_type: str, body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(id, answer) per output line."""
    if content_type == JSON_LINES:
        return [(line["id"], line["SageMakerOutput"]) for line in map(json.loads, body.splitlines())]
    return [(row[0], json.loads(row[1])) for row in csv.reader(io.StringIO(body.decode()))]


def peak_rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            pending += [int(child) for child in children]
    return found


def cpu_line() -> str:
    info = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    notable = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if flag in flags]
    return f"{model}, {os.cpu_count()} cores ({', '.join(notable)}), Python {platform.python_version()}"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "mlops-local-report" / "cnn")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the 16-client real-time run")
    parser.add_argument("--gigabytes", type=float, default=1.0, help="size of the memory run's input (0: skip)")
    arguments = parser.parse_args()
    model_path = arguments.report / "model" / "model.tar.gz"
    metrics_path = arguments.report / "metrics.json"
    if not (model_path.is_file() and metrics_path.is_file()):
        print(f"error: no {model_path} and {metrics_path}: run `mlops local --network cnn` first", file=sys.stderr)
        return 2
    evaluated = json.loads(metrics_path.read_text())["evaluation"]["metrics"]["test_accuracy"]["value"]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu_line()}; load average {load()}", flush=True)

    import boto3

    latency = load_latency_module()
    (_, _), (images, labels) = load_mnist()
    spawn = multiprocessing.get_context("spawn")
    ports, stop = spawn.Queue(), spawn.Event()
    moto = spawn.Process(target=serve_moto, args=(ports, stop), daemon=True)
    moto.start()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as scratch:
        work = Path(scratch)
        endpoint_url = f"http://127.0.0.1:{ports.get(timeout=60)}"
        s3 = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(model_path), BUCKET, "model/model.tar.gz")
        model = {"ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz", "Environment": {}}

        def transform(content_type: str, key: str, name: str) -> tuple[Any, float]:
            """(what the job did, its seconds with its container's start)."""
            records: Any = NoRecords()
            runtime = TransformRuntime(s3, records, work / name, lambda step, line: None)
            job = request(content_type, f"s3://{BUCKET}/{key}/", f"s3://{BUCKET}/out/{name}/")
            described, result = run_transform_step("Transform", name, job, model, runtime)
            assert not result.failed, result.failed
            return result, (described["TransformEndTime"] - described["TransformStartTime"]).total_seconds()

        # 1. the 10,000 test images, both record formats.
        batch_rates, batch_answers = {}, {}
        for content_type, path in write_inputs(work, images).items():
            key = f"in/{content_type.split('/')[1]}"
            s3.upload_file(str(path), BUCKET, f"{key}/{path.name}")
            result, job_seconds = transform(content_type, key, content_type.split("/")[1])
            body = s3.get_object(Bucket=BUCKET, Key=f"out/{content_type.split('/')[1]}/{path.name}.out")["Body"].read()
            answered = answers_of(content_type, body)
            ids = [image_id for image_id, _ in answered]
            predicted = np.array([int(answer["label"]) for _, answer in answered])
            accuracy = float(np.mean(predicted == labels))
            batch_rates[content_type] = result.records / result.scoring_seconds
            batch_answers[content_type] = [answer for _, answer in answered]
            print(
                f"batch {content_type}: {len(answered)} output lines for {len(images)} input lines, ids "
                f"{'in order' if ids == [f'test-{i:05d}' for i in range(len(images))] else 'NOT joined'}; "
                f"accuracy {accuracy:.4f} (Evaluate step: {evaluated:.4f}); scoring {result.scoring_seconds:.1f} s, "
                f"{batch_rates[content_type]:,.0f} images/s; job with its container's start {job_seconds:.1f} s",
                flush=True,
            )
            if len(answered) != len(images) or ids != [f"test-{i:05d}" for i in range(len(images))]:
                failures.append(f"{content_type}: output lines or ids")
            if abs(accuracy - evaluated) > 1e-9:
                failures.append(f"{content_type}: accuracy {accuracy} != the Evaluate step's {evaluated}")

        # 2. the same images in real time, then the 16-client figure.
        from inference.local_endpoint import LocalEndpoint

        with LocalEndpoint(model_path, latency.ENDPOINT_NAME) as endpoint:
            import requests

            pngs = [latency_png(image) for image in images]
            session_per_thread: dict[int, Any] = {}

            def real_time(body: bytes) -> dict[str, Any]:
                import threading

                session = session_per_thread.setdefault(threading.get_ident(), requests.Session())
                answer = session.post(f"{endpoint.url}/invocations", data=body, headers={"Content-Type": "image/png"})
                answer.raise_for_status()
                return answer.json()["predictions"][0]

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                online = list(pool.map(real_time, pngs))
            for content_type, answers in batch_answers.items():
                same_labels = sum(a["label"] == b["label"] for a, b in zip(answers, online, strict=True))
                largest = max(
                    abs(a["probabilities"][name] - b["probabilities"][name])
                    for a, b in zip(answers, online, strict=True)
                    for name in a["probabilities"]
                )
                print(
                    f"batch {content_type} vs real time: {same_labels} of {len(online)} labels equal, "
                    f"largest probability difference {largest:.2e}",
                    flush=True,
                )
                # Same label for every image; probabilities as close as float32 batched and
                # one-by-one kernels of the same model give them (oneDNN picks by batch size).
                if same_labels != len(online) or largest > PROBABILITY_TOLERANCE:
                    failures.append(f"{content_type}: predictions differ from the real-time endpoint's")
            run = latency._Load(
                endpoint.url,
                "/invocations",
                pngs[0],
                True,
                online[0]["label"],
                latency.Run(f"keep-alive, {CLIENTS} clients", CLIENTS),
                arguments.duration,
                10**9,
            ).measure()
        realtime_rate = run.throughput
        print(
            f"real time, {CLIENTS} clients: {len(run.latencies)} images in {run.seconds:.1f} s, {realtime_rate:,.0f} "
            f"images/s, p99 {run.percentile(99):.1f} ms, {len(run.errors)} errors",
            flush=True,
        )
        for content_type, rate in batch_rates.items():
            ratio = rate / realtime_rate
            print(f"batch {content_type}: {ratio:.2f}x the real-time throughput (goal >= {GOAL_RATIO}x)")
            if ratio < GOAL_RATIO:
                failures.append(f"{content_type}: batch only {ratio:.2f}x real time")

        # 4. a large input, streamed.
        if arguments.gigabytes > 0:
            big = work / "big.jsonl"
            lines = (work / "mnist-test.jsonl").read_bytes().splitlines(keepends=True)
            written, copy = 0, 0
            with big.open("wb") as out:
                while written < arguments.gigabytes * 1024**3:
                    for line in lines:
                        record = line.replace(b'"id":"test-', f'"id":"copy{copy}-'.encode(), 1)
                        out.write(record)
                        written += len(record)
                    copy += 1
            records = copy * len(lines)
            s3.upload_file(str(big), BUCKET, "in-big/big.jsonl")
            big.unlink()
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak from here on
            before = peak_rss_kib()
            watcher = PeakWatcher()
            result, job_seconds = watcher.run(lambda: transform(JSON_LINES, "in-big", "big"))
            print(
                f"{written / 1024**3:.2f} GiB of JSON Lines ({records:,} records): {result.records:,} output lines "
                f"in {result.scoring_seconds:.1f} s ({result.records / result.scoring_seconds:,.0f} images/s); "
                f"peak RSS of this process {peak_rss_kib() / 1024:.0f} MiB (at the job's start "
                f"{before / 1024:.0f} MiB), of the endpoint's processes {watcher.server_peak_kib / 1024:.0f} MiB",
                flush=True,
            )
            # What the job may hold: its mini-batches in flight (each read, sent and answered), and room.
            allowed_kib = (CONCURRENCY + 1) * 3 * MAX_PAYLOAD_MB * 1024 + 64 * 1024
            if result.records != records or peak_rss_kib() - before > allowed_kib:
                failures.append(f"the large input: output lines, or this process grew by more than {allowed_kib} KiB")
    stop.set()
    moto.join(30)
    print(f"load average after: {load()}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def latency_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0]).save(buffer, format="PNG")
    return buffer.getvalue()


class PeakWatcher:
    """Runs a job while sampling the peak RSS (VmHWM) of the endpoint's server processes."""

    server_peak_kib = 0

    def run(self, job: Any) -> Any:
        import threading

        done = threading.Event()
        me = os.getpid()

        def sample() -> None:
            while not done.wait(0.5):
                for pid in process_tree(me)[1:]:
                    try:
                        command = Path(f"/proc/{pid}/cmdline").read_bytes()
                        if b"inference.endpoint_server" in command:  # the server and its forked workers
                            self.server_peak_kib = max(self.server_peak_kib, peak_rss_kib(pid))
                    except OSError:
                        continue

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            return job()
        finally:
            done.set()
            thread.join()


if __name__ == "__main__":
    sys.exit(main())
