"""The drift monitor's processing job (training/processing/monitor.py) on a real exported model and real
capture files in (moto's) S3: a planted shift is flagged and unshifted traffic is not; capture
that cannot be read is counted and reported, never fatal; bad input exits 2 in one line.

The model is a tiny autoencoder exported as training exports every model (training/export.py:
serving_default, the `embedding` signature, the serving handlers in code/); its baseline is
drawn from a validation channel as the Evaluate step draws it (training/baseline.py); the
captures are written as the local endpoint writes them (inference/capture.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pytest
from training_support import entry_point_logging

import baseline
import contract
import drift
import records
from inference.capture import CaptureConfig, capture_line, capture_record, hour_prefix
from processing import monitor
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
    model_dir, baseline_path = served
    return monitor.monitor(NETWORK.name, model_dir, baseline_path, CAPTURE_URI, START, END, tmp_path / "drift", s3=s3)


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
    monitor.publish(report, "mlops-local/drift", cloudwatch)
    listed = cloudwatch.list_metrics(Namespace="mlops-local/drift")["Metrics"]
    assert {metric["MetricName"] for metric in listed} == {
        "DriftScore",
        "DriftDetected",
        "CapturedExamples",
        "UnparsableCaptures",
    }
    assert all(metric["Dimensions"] == [{"Name": "Network", "Value": "autoencoder"}] for metric in listed)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--window-start", "yesterday"), "bad window start 'yesterday'"),
        (
            ("--window-start", "2026-12-01T11:00:00Z", "--window-end", "2026-12-01T10:00:00Z"),
            "the window starts at 2026-12-01T11:00:00+00:00, not before its end",
        ),
        (("--network", "cnn"), "is of a 'autoencoder' model, not 'cnn'"),
        (("--model-uri", "s3://artifacts/models/autoencoder/other/model.tar.gz"), "the baseline describes"),
    ],
)
def test_bad_input_exits_2_with_one_line(served, tmp_path, capsys, arguments, message):
    model_dir, baseline_path = served
    given = {
        "--network": "autoencoder",
        "--model-dir": str(model_dir),
        "--baseline": str(baseline_path),
        "--capture-uri": CAPTURE_URI,
        "--output-dir": str(tmp_path / "drift"),
    }
    pairs = dict(zip(arguments[::2], arguments[1::2], strict=True))
    with pytest.raises(SystemExit) as exited, entry_point_logging():
        monitor.main([item for pair in {**given, **pairs}.items() for item in pair])
    assert exited.value.code == contract.EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "drift" / "drift.json").exists()
