"""The drift monitor's processing jobs on a real exported model and real capture files in (moto's)
S3: CollectCaptures (training/processing/collect_captures.py) copies the window's hour folders,
the Monitor (training/processing/monitor.py) reads that copy with no S3 call of its own and flags
a planted shift but not unshifted traffic, capture that cannot be read is counted and reported,
never fatal; PublishMetrics (training/processing/publish_drift.py) publishes the report; bad input
exits 2 in one line.

The model is a tiny autoencoder exported as training exports every model (training/export.py:
serving_default, the `embedding` signature, the serving handlers in code/); its baseline is
drawn from a validation channel as the Evaluate step draws it (training/baseline.py); the
captures are written as the local endpoint writes them (inference/capture.py).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest
from training_support import entry_point_logging

import baseline
import contract
import drift
import records
from capture_window import WINDOW_FILE, Window
from inference.capture import CaptureConfig, capture_line, capture_record, hour_prefix
from processing import collect_captures, monitor, publish_drift
from training.networks import get_network

NETWORK = get_network("autoencoder")
N_FEATURES, ENCODING = 6, 3
BUCKET = "artifacts"
CAPTURE_PREFIX = "data-capture/autoencoder/"
CAPTURE_URI = f"s3://{BUCKET}/{CAPTURE_PREFIX}mlops-local-autoencoder/AllTraffic/"
CONFIG = CaptureConfig(
    destination_uri=f"s3://{BUCKET}/{CAPTURE_PREFIX}",
    sampling_percentage=100,
    json_content_types=("application/json",),
    csv_content_types=("text/csv",),
)
START = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
END = START + timedelta(hours=1)  # the window spans two hour folders


def normal_rows(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, N_FEATURES)) * np.arange(1, N_FEATURES + 1) + 10).astype(np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model dir, baseline.json) of a tiny autoencoder, exported and baselined as training does."""
    import keras
    import tensorflow as tf

    import export

    root = tmp_path_factory.mktemp("drift-model")
    keras.utils.set_random_seed(3)
    features = keras.Input((N_FEATURES,), name=NETWORK.input_name)
    encoder = keras.layers.Dense(ENCODING, activation="tanh")
    decoder = keras.layers.Dense(N_FEATURES)
    model = keras.Model(features, decoder(encoder(features)))

    def serve(rows):
        code = encoder(rows)
        error = tf.reduce_mean(tf.square(rows - decoder(code)), axis=-1)
        return {"reconstruction_error": error, "threshold": tf.fill(tf.shape(error), 1.0), "embedding": code}

    description = {
        "network": NETWORK.name,
        "input_name": NETWORK.input_name,
        "input_shape": [N_FEATURES],
        "input_dtype": "float32",
        "signature": "serving_default",
        **NETWORK.task.serving_description(),
        "n_features": N_FEATURES,
        "encoding_dim": ENCODING,
        "threshold": 1.0,
    }
    model_dir = root / "model"
    export.write_model(
        model_dir,
        serve,
        tf.TensorSpec([None, N_FEATURES], tf.float32, name=NETWORK.input_name),
        NETWORK.task.outputs,
        track=[model],
        description=description,
        embedding=encoder,
    )
    validation = root / "validation"
    records.write_channel(
        validation,
        {"features": normal_rows(400, seed=1), "label": np.zeros(400, np.int64)},
        dtypes={"features": "float32", "label": "int64"},
        class_names=("normal", "anomaly"),
    )
    signatures = tf.saved_model.load(str(model_dir / "1")).signatures
    baseline.write_baseline(
        NETWORK,
        description,
        signatures,
        validation,
        root / "evaluation",
        model_uri="s3://artifacts/models/autoencoder/job/output/model.tar.gz",
    )
    return model_dir, root / "evaluation" / baseline.BASELINE_FILE


def put_captures(s3, rows: np.ndarray, *, csv: bool = False) -> None:
    """One request per row, spread over the window (and a few outside it), in SageMaker's layout."""
    times = (
        [START - timedelta(minutes=5)]
        + [START + (END - START) * (index + 0.5) / len(rows) for index in range(len(rows))]
        + [END + timedelta(minutes=1)]
    )
    rows = np.concatenate([rows[:1], rows, rows[:1]])
    files: dict[str, list[str]] = {}
    for number, (moment, row) in enumerate(zip(times, rows, strict=True)):
        body = ",".join(f"{value:.6g}" for value in row) if csv else json.dumps({"rows": [row.tolist()]})
        record = capture_record(
            CONFIG,
            request=body.encode(),
            request_content_type="text/csv" if csv else "application/json",
            response=b'{"predictions": []}',
            response_content_type="application/json",
            event_id=f"event-{number}",
            inference_time=moment,
        )
        files.setdefault(hour_prefix(CAPTURE_PREFIX, "mlops-local-autoencoder", "AllTraffic", moment), []).append(
            capture_line(record)
        )
    for index, (folder, lines) in enumerate(files.items()):
        s3.put_object(Bucket=BUCKET, Key=f"{folder}{index:02d}-00-000-capture.jsonl", Body="".join(lines).encode())


def run_monitor(served, s3, tmp_path) -> dict:
    """CollectCaptures into a folder, then the Monitor on that folder alone, as the pipeline runs them."""
    model_dir, baseline_path = served
    window = Window(START, END, CAPTURE_URI)
    collect_captures.collect(s3, window, tmp_path / "captures")
    return monitor.monitor(NETWORK.name, model_dir, baseline_path, tmp_path / "captures", window, tmp_path / "drift")


def test_collection_copies_the_windows_hour_folders_and_names_the_window_last(s3, tmp_path):
    put_captures(s3, normal_rows(10, seed=2))
    outside = hour_prefix(CAPTURE_PREFIX, "mlops-local-autoencoder", "AllTraffic", END + timedelta(hours=1))
    s3.put_object(Bucket=BUCKET, Key=f"{outside}00-00-000-later.jsonl", Body=b"{}\n")
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{hour_prefix(CAPTURE_PREFIX, 'mlops-local-autoencoder', 'AllTraffic', START)}notes.txt",
        Body=b"x",
    )
    copied = collect_captures.collect(s3, Window(START, END, CAPTURE_URI), tmp_path / "captures")
    files = sorted(path.relative_to(tmp_path / "captures").as_posix() for path in (tmp_path / "captures").rglob("*.*"))
    assert copied == 2
    assert files == ["2026/12/01/10/00-00-000-capture.jsonl", "2026/12/01/11/01-00-000-capture.jsonl", WINDOW_FILE]
    assert Window.read(tmp_path / "captures") == Window(START, END, CAPTURE_URI)


@pytest.mark.slow
def test_unshifted_traffic_is_not_drift(served, s3, tmp_path):
    put_captures(s3, normal_rows(80, seed=2))
    report = run_monitor(served, s3, tmp_path)
    assert report["drifted"] is False, report["decision"]
    assert report["captures"] == {
        "files": 2,
        "records": 82,
        "in_window": 80,
        "examples": 80,
        "unparsable": {"count": 0, "by_reason": {}, "examples": []},
    }
    assert set(report["families"]) == {"features", "embedding", "predictions"}
    assert json.loads((tmp_path / "drift" / "drift.json").read_text()) == report
    assert (tmp_path / "drift" / "drift.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("shift", list(NETWORK.task.drift_shifts()))
def test_a_planted_shift_is_drift(served, s3, tmp_path, shift):
    rows = NETWORK.task.drift_shifts()[shift](normal_rows(80, seed=2), np.random.default_rng(0))
    put_captures(s3, rows.astype(np.float32), csv=True)  # CSV requests, decoded by the served handler
    report = run_monitor(served, s3, tmp_path)
    assert report["drifted"] is True, report["decision"]
    assert report["score"] >= drift.threshold_score() and report["p_value"] < drift.ALPHA
    assert report["captures"]["examples"] == 80


@pytest.mark.slow
def test_unreadable_capture_is_counted_and_reported(served, s3, tmp_path):
    put_captures(s3, normal_rows(40, seed=2))
    folder = hour_prefix(CAPTURE_PREFIX, "mlops-local-autoencoder", "AllTraffic", START + timedelta(minutes=10))
    good = capture_line(
        capture_record(
            CONFIG,
            request=b"[[1, 2]]",
            request_content_type="application/json",
            response=b"{}",
            response_content_type="application/json",
            event_id="short",
            inference_time=START + timedelta(minutes=10),
        )
    )
    broken = good.replace('"encoding":"JSON"', '"encoding":"ROT13"')
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{folder}59-59-999-bad.jsonl",
        Body=(
            '{"captureData": \n'  # not JSON
            '{"eventVersion": "0"}\n' + broken + good  # no captureData
        ).encode(),
    )  # an unknown encoding; a request of 2 features for a model of 6
    s3.put_object(Bucket=BUCKET, Key=f"{folder}59-59-998-binary.jsonl", Body=b"\xff\xfe\x00")

    report = run_monitor(served, s3, tmp_path)
    unparsable = report["captures"]["unparsable"]
    assert unparsable["count"] == 5, unparsable
    assert set(unparsable["by_reason"]) == {
        "file is not UTF-8 text",
        "line is not JSON",
        "unknown encoding 'ROT13'",
        "record lacks captureData.endpointInput or eventMetadata.inferenceTime",
        "the served handler refuses the request",
    }
    assert any("59-59-999-bad.jsonl:1" in example for example in unparsable["examples"])
    assert report["captures"]["examples"] == 40 and report["drifted"] is False


@pytest.mark.slow
def test_too_few_examples_conclude_nothing(served, s3, tmp_path):
    put_captures(s3, normal_rows(drift.MIN_EXAMPLES - 1, seed=2))
    report = run_monitor(served, s3, tmp_path)
    assert (report["drifted"], report["score"]) == (None, None)
    assert report["decision"].startswith("no conclusion")


@pytest.mark.slow
def test_the_report_is_published_as_metrics(served, s3, tmp_path):
    put_captures(s3, normal_rows(40, seed=2))
    report = run_monitor(served, s3, tmp_path)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    publish_drift.publish(publish_drift.metric_data(report), "mlops-local/drift", cloudwatch)
    listed = cloudwatch.list_metrics(Namespace="mlops-local/drift")["Metrics"]
    assert {metric["MetricName"] for metric in listed} == {
        "DriftScore",
        "DriftDetected",
        "CapturedExamples",
        "UnparsableCaptures",
    }
    assert all(metric["Dimensions"] == [{"Name": "Network", "Value": "autoencoder"}] for metric in listed)


def batch_file(path, rows: np.ndarray, content_type: str) -> None:
    """A batch transform input of `rows`, in the project's record formats (training/batch_formats.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if content_type == "text/csv":
        lines = [",".join([f"row-{index}", *(f"{value:.6g}" for value in row)]) for index, row in enumerate(rows)]
    else:
        lines = [json.dumps({"id": f"row-{index}", "features": row.tolist()}) for index, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["application/jsonlines", "text/csv"])
def test_a_batch_transforms_inputs_are_monitored_like_captured_traffic(served, tmp_path, monkeypatch, content_type):
    """The batch transform pipeline's MonitorBatchInput step: its records read as the transform's
    container read them, the same tests against the same baseline, a planted shift found."""
    monkeypatch.delenv("SAGEMAKER_BATCH", raising=False)  # this process is no transform's container
    model_dir, baseline_path = served
    shift = next(iter(NETWORK.task.drift_shifts().values()))
    normal, shifted = normal_rows(80, seed=2), normal_rows(80, seed=2)
    batch_file(tmp_path / "normal" / "part-1.txt", normal[:50], content_type)
    batch_file(tmp_path / "normal" / "part-2.txt", normal[50:], content_type)
    (tmp_path / "normal" / "part-2.txt").write_text((tmp_path / "normal" / "part-2.txt").read_text() + "garbage\n")
    batch_file(tmp_path / "shifted" / "part-1.txt", shift(shifted, np.random.default_rng(0)), content_type)
    arguments = (NETWORK.name, model_dir, baseline_path)
    calm = monitor.monitor_batch(*arguments, tmp_path / "normal", content_type, tmp_path / "drift-normal")
    assert "SAGEMAKER_BATCH" not in os.environ, "the next real-time request in this process would be read as a batch"
    assert calm["drifted"] is False, calm["decision"]
    assert calm["captures"]["files"] == 2 and calm["captures"]["examples"] == 80
    assert calm["captures"]["unparsable"]["by_reason"] == {"the record is not of the batch's format": 1}
    moved = monitor.monitor_batch(*arguments, tmp_path / "shifted", content_type, tmp_path / "drift-shifted")
    assert moved["drifted"] is True, moved["decision"]
    assert publish_drift.metric_data(moved)[0]["Dimensions"] == [{"Name": "Network", "Value": "autoencoder"}]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--window-start", "yesterday"), "bad window start 'yesterday'"),
        (
            ("--window-start", "2026-12-01T11:00:00Z", "--window-end", "2026-12-01T10:00:00Z"),
            "the window starts at 2026-12-01T11:00:00+00:00, not before its end",
        ),
        (("--window-minutes", "0"), "bad window minutes 0"),
        (("--capture-uri", "artifacts/data-capture/"), "bad capture uri 'artifacts/data-capture/'"),
    ],
)
def test_a_bad_window_exits_2_with_one_line_and_copies_nothing(tmp_path, capsys, arguments, message):
    given = {"--region": "us-east-1", "--capture-uri": CAPTURE_URI, "--output-dir": str(tmp_path / "captures")}
    pairs = dict(zip(arguments[::2], arguments[1::2], strict=True))
    with pytest.raises(SystemExit) as exited, entry_point_logging():
        collect_captures.main([item for pair in {**given, **pairs}.items() for item in pair])
    assert exited.value.code == contract.EXIT_BAD_INPUT == collect_captures.EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "captures").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--network", "cnn"), "is of a 'autoencoder' model, not 'cnn'"),
        (("--model-uri", "s3://artifacts/models/autoencoder/other/model.tar.gz"), "the baseline describes"),
        (("--captures-dir", "nowhere"), "no readable window in nowhere/window.json"),
    ],
)
def test_bad_input_exits_2_with_one_line(served, tmp_path, capsys, arguments, message):
    model_dir, baseline_path = served
    (tmp_path / "captures").mkdir()
    Window(START, END, CAPTURE_URI).write(tmp_path / "captures")
    given = {
        "--network": "autoencoder",
        "--model-dir": str(model_dir),
        "--baseline": str(baseline_path),
        "--captures-dir": str(tmp_path / "captures"),
        "--output-dir": str(tmp_path / "drift"),
    }
    pairs = dict(zip(arguments[::2], arguments[1::2], strict=True))
    with pytest.raises(SystemExit) as exited, entry_point_logging():
        monitor.main([item for pair in {**given, **pairs}.items() for item in pair])
    assert exited.value.code == contract.EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "drift" / "drift.json").exists()


def test_an_unreadable_report_is_not_published(tmp_path, capsys):
    (tmp_path / "drift.json").write_text('{"network": "autoencoder"}')
    with pytest.raises(SystemExit) as exited, entry_point_logging():
        publish_drift.main(
            [
                "--region",
                "us-east-1",
                "--report",
                str(tmp_path / "drift.json"),
                "--metric-namespace",
                "mlops-local/drift",
            ]
        )
    assert exited.value.code == publish_drift.EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot read the drift report" in errors[0], errors


@pytest.mark.slow
@pytest.mark.integration
def test_the_monitor_pipeline_runs_with_its_monitor_network_isolated(served, tmp_path):
    """The local stage's monitor pipeline, as deployed, through the local executor against moto:
    CollectCaptures copies the window, the Monitor (isolated, as the stage says) reads only its
    inputs, PublishMetrics puts the report's numbers into CloudWatch."""
    from test_local_pipeline import LOCAL, RecordingReporter
    from test_pipeline_definition import SAMPLE_VALUES

    from infra.definitions import monitor_pipeline
    from infra.definitions import training_pipeline as definition
    from infra.source_bundle import build_source_bundle
    from mlops.local.moto import moto_server
    from mlops.local.pipeline_executor import LocalPipelineExecutor

    class Reporter(RecordingReporter):
        def __init__(self) -> None:
            super().__init__()
            self.details: dict[str, str] = {}

        def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
            self.details[step] = detail

    model_dir, baseline_path = served
    model_uri = json.loads(baseline_path.read_text())["model_data_url"]
    pipeline = "mlops-local-autoencoder-monitor"
    with moto_server() as aws:
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        put_captures(s3, normal_rows(40, seed=2))
        with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
            for path in sorted(model_dir.iterdir()):
                archive.add(path, arcname=path.name)
        s3.upload_file(str(tmp_path / "model.tar.gz"), BUCKET, model_uri.removeprefix(f"s3://{BUCKET}/"))
        s3.upload_file(str(baseline_path), BUCKET, "pipelines/autoencoder/run/evaluation/baseline.json")
        s3.upload_file(str(build_source_bundle(tmp_path / "bundle")), BUCKET, "assets/sourcedir.tar.gz")
        values = {
            **SAMPLE_VALUES,
            definition.ARTIFACTS_BUCKET: BUCKET,
            definition.KEY_ARN: aws.client("kms").create_key()["KeyMetadata"]["Arn"],
            definition.SOURCE_BUNDLE_URI: f"s3://{BUCKET}/assets/sourcedir.tar.gz",
            definition.SOURCE_BUNDLE_FILE: "sourcedir.tar.gz",
        }
        aws.client("sagemaker").create_pipeline(
            PipelineName=pipeline,
            RoleArn=values[definition.EXECUTION_ROLE_ARN],
            PipelineDefinition=definition.substitute_placeholders(
                monitor_pipeline.monitor_definition_body(LOCAL, NETWORK.name), values
            ),
        )
        reporter = Reporter()
        executor = LocalPipelineExecutor(aws, tmp_path / "runs", reporter)
        run = executor.start(
            pipeline,
            {
                monitor_pipeline.MODEL_DATA_URL: model_uri,
                monitor_pipeline.BASELINE_URI: f"s3://{BUCKET}/pipelines/autoencoder/run/evaluation/baseline.json",
                monitor_pipeline.WINDOW_START: "2026-12-01T10:30:00Z",
                monitor_pipeline.WINDOW_END: "2026-12-01T11:30:00Z",
            },
        )
        executor.execute(run)
        assert [outcome.step for outcome in run.outcomes] == ["CollectCaptures", "Monitor", "PublishMetrics"]
        report_uri = run.context.property_files[monitor_pipeline.MONITOR_STEP][monitor_pipeline.DRIFT_REPORT]
        bucket, _, key = report_uri.removeprefix("s3://").partition("/")
        report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        metrics = aws.client("cloudwatch").list_metrics(Namespace="mlops-local/drift")["Metrics"]
    assert report["captures"]["examples"] == 40 and report["drifted"] is False, report["decision"]
    assert report["window"] == {"start": "2026-12-01T10:30:00Z", "end": "2026-12-01T11:30:00Z"}
    assert {metric["MetricName"] for metric in metrics} == {
        "DriftScore",
        "DriftDetected",
        "CapturedExamples",
        "UnparsableCaptures",
    }
    isolated = {step for step, detail in reporter.details.items() if "network isolated" in detail}
    assert isolated == {"Monitor"}, reporter.details
