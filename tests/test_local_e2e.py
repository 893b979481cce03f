"""`mlops local` end to end: the CNN on a small slice of data, through everything the command does
(deploy to moto, prepare and upload data, the pipeline run here, registry, endpoint stack, local
endpoint, invocation, and with --drift the drift loop: captured traffic, the monitor pipeline on a
held-out and an inverted window, the alarm, the retraining it starts), right after a run that
Ctrl-C stopped during training on the same port and report folder; and a run whose training step
fails.

The command runs in this process, as the user's `mlops` would (the same `main()`): moto keeps its
state per process, so once the command has stopped its server the registry and the stacks it
left in moto can still be read here. Every process the command starts is watched while it runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from cli_support import run_mlops
from moto.backends import get_backend
from process_support import free_port, left_running, listening, watched_descendants

from inference.archives import extract_archive
from mlops.local.moto import ACCOUNT, REGION

# slow: runs whole local missions.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A slice small enough for a quick run; the gate lowered to what 3 epochs on it reach, so the
# model is registered and deployed (the quality of a full run is in docs/benchmarks.md).
QUICK_RUN = ("--limit", "300", "--param", "epochs=3", "--param", "QualityThreshold=0.3")
MLOPS = Path(sys.executable).parent / "mlops"


def interrupt_during_training(port: int, report: Path) -> None:
    """`mlops local` as a user starts it, stopped with Ctrl-C (SIGINT) once its training job runs:
    exit 130, no traceback, nothing left running, the report says where it stopped."""
    interrupted = subprocess.Popen(
        [str(MLOPS), "local", "cnn", "--port", str(port), "--report-dir", str(report), *QUICK_RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert interrupted.stdout is not None
    for line in interrupted.stdout:
        if "▶ Train (Training)" in line:
            break
    training_toolkit(psutil.Process(interrupted.pid))
    tree = psutil.Process(interrupted.pid).children(recursive=True)
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=60)

    assert interrupted.returncode == 130, err
    assert "Traceback" not in err
    assert left_running(tree) == [], "part of the process tree was left running"
    assert not listening(port), "the moto server is still listening"
    phases = json.loads((report / "phases.json").read_text())
    assert phases["outcome"] == "interrupted"
    assert phases["phases"][-1] == {
        **phases["phases"][-1],
        "phase": "Run the cnn training pipeline",
        "status": "interrupted",
    }
    assert phases["steps"][-1] == {**phases["steps"][-1], "step": "Train", "status": "Stopped"}


def training_toolkit(process: psutil.Process, timeout: float = 120) -> psutil.Process:
    """SageMaker's `train` launcher among the process's descendants, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in process.children(recursive=True):
            try:
                # `python .venv/bin/train`: the console script, run by the venv's interpreter.
                if any(Path(argument).name == "train" for argument in child.cmdline()[:2]):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError("the training job never started")


def s3_bytes(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    stored = get_backend("s3")[ACCOUNT]["global"].get_object(bucket, key)
    assert stored is not None, f"no {uri} in moto"
    return stored.value


def s3_json(uri: str) -> dict:
    return json.loads(s3_bytes(uri))


@pytest.mark.usefixtures("sigint_as_in_a_terminal")
def test_after_a_ctrl_c_the_cnn_goes_from_nothing_to_an_invoked_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    port, report = free_port(), tmp_path / "report"
    interrupt_during_training(port, report)

    # Same port, same report folder, no clean-up in between.
    before = set(psutil.Process().children(recursive=True))
    with watched_descendants(psutil.Process()) as started:
        code, out, err = run_mlops(
            monkeypatch,
            capsys,
            "local",
            "cnn",
            "--port",
            str(port),
            "--report-dir",
            str(report),
            *QUICK_RUN,
            "--drift",
        )
    assert code == 0, err[-3000:]
    assert "✓ [9/12] Invoke it with held-out test samples" in out
    assert "uploaded to s3://mlops-local-data-123456789012-us-east-1/cnn/" in out
    outputs = json.loads((report / "outputs.json").read_text())
    assert "ExecutionRoleArn" in outputs["mlops-local-execution-role"]
    # Off a terminal: plain lines. What the programs printed is in the logs, not here.
    assert "\x1b" not in out and "\r" not in out
    assert "    Train epoch 3/3 train_loss=" in out
    assert "sagemaker-training-toolkit" not in out and "Bootstrapping environment" not in out
    assert "Bootstrapping environment" in (report / "logs" / "cdk.log").read_text()
    assert "sagemaker-training-toolkit" in next(report.glob("pipeline/*/Train/log.txt")).read_text()

    # The model package, registered by the pipeline's Register step with the evaluation's metrics.
    sagemaker = get_backend("sagemaker")[ACCOUNT][REGION]
    (package,) = [
        found for found in sagemaker.model_packages.values() if found.model_package_group_name == "mlops-local-cnn"
    ]
    assert package.model_approval_status == "Approved"
    evaluation = s3_json(package.model_metrics["ModelQuality"]["Statistics"]["S3Uri"])
    accuracy = evaluation["metrics"]["test_accuracy"]["value"]
    assert 0.3 <= accuracy <= 1.0
    assert float(package.customer_metadata_properties["quality_value"]) == pytest.approx(accuracy)
    # No approved version in a fresh registry: the Champion step found none, the threshold alone decided.
    assert evaluation["champion_challenger"]["champion"] is None
    assert package.customer_metadata_properties["champion"] == "no approved champion to compare with"
    explanations = s3_json(package.model_metrics["Explainability"]["Report"]["S3Uri"])
    assert explanations["network"] == "cnn" and explanations["summary"][0]["top"]
    # The run of this command, then the retraining run the drift alarm's rule started (recorded, not run).
    execution, retraining = sagemaker.pipelines["mlops-local-cnn"].pipeline_executions.values()
    assert execution.pipeline_execution_status == "Succeeded"
    assert "started by the rule" in retraining.pipeline_execution_description
    (training_job,) = sagemaker.training_jobs.values()
    assert training_job.training_job_status == "Completed"
    assert {metric["MetricName"] for metric in training_job.final_metric_data_list} >= {"val_loss", "test_accuracy"}
    model_data = package.inference_specification["Containers"][0]["ModelDataUrl"]
    assert (
        model_data == f"{training_job.output_data_config['S3OutputPath']}{training_job.training_job_name}"
        "/output/model.tar.gz"
    )

    # The endpoint stack, deployed with that version, and its endpoint.
    cloudformation = get_backend("cloudformation")[ACCOUNT][REGION]
    (stack,) = [found for found in cloudformation.stacks.values() if found.name == "mlops-local-endpoint-cnn"]
    assert stack.status == "CREATE_COMPLETE"
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.outputs or []}
    assert outputs["ModelPackageArn"] == package.arn
    assert sagemaker.endpoints[outputs["EndpointName"]].endpoint_status == "InService"

    # The local endpoint served the registered artifact, and answered as the model itself does.
    served = report / "model" / "model.tar.gz"
    bucket = model_data.removeprefix("s3://").partition("/")[0]
    assert served.read_bytes() == s3_bytes(model_data)
    predictions = json.loads((report / "predictions.json").read_text())
    assert predictions["endpoint"] == "mlops-local-cnn" and predictions["model_package"] == package.arn
    samples = predictions["samples"]
    assert len(samples) == 10
    own = model_probabilities(served, tmp_path / "unpacked", np.array([sample["input"] for sample in samples]))
    class_names = list(samples[0]["answer"]["probabilities"])
    from_endpoint = np.array([[sample["answer"]["probabilities"][name] for name in class_names] for sample in samples])
    np.testing.assert_allclose(from_endpoint, own, rtol=0, atol=1e-6)
    assert [sample["answer"]["label"] for sample in samples] == [class_names[i] for i in own.argmax(axis=1)]

    # The report: the held-out metric, predictions beside the truth, plots, the time of each phase.
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["quality"] == {
        "metric": "test_accuracy",
        "value": accuracy,
        "comparison": ">=",
        "threshold": 0.3,
        "champion": evaluation["champion_challenger"],
        "passed": True,
    }
    assert metrics["explanations"] == explanations
    markdown = (report / "report.md").read_text()
    assert f"`test_accuracy` = **{accuracy:.4f}**" in markdown
    assert "## Why the model decides as it does" in markdown and explanations["summary"][0]["title"] in markdown
    assert markdown.index("(plots/Evaluate/explanation_attributions.png)") < markdown.index(
        "(plots/Train/training_curves.png)"
    ), "the explanations' plots come first"
    assert f"| {samples[1]['index']} | {samples[1]['truth']} | {samples[1]['prediction']} |" in markdown
    for plot in (
        "Train/training_curves.png",
        "Train/confusion_matrix.png",
        "Evaluate/confusion_matrix.png",
        "Evaluate/explanation_attributions.png",
    ):
        assert (report / "plots" / plot).read_bytes().startswith(b"\x89PNG")
    phases = json.loads((report / "phases.json").read_text())
    assert phases["outcome"] == "succeeded" and len(phases["phases"]) == 12
    assert all(phase["status"] == "done" and phase["seconds"] > 0 for phase in phases["phases"])
    assert "test_accuracy = " in out and "Time per phase" in out

    # The drift loop: captures in SageMaker's layout, a monitor run per window, the alarm's state.
    captured = [
        key
        for key in get_backend("s3")[ACCOUNT]["global"].buckets[bucket].keys
        if key.startswith("data-capture/cnn/mlops-local-cnn/AllTraffic/")
    ]
    layout = re.compile(r".*/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/[^/]+\.jsonl")
    assert captured and all(layout.fullmatch(key) for key in captured)
    held_out, inverted = (
        json.loads((report / "drift" / name / "drift.json").read_text()) for name in ("held-out", "inverted")
    )
    assert (held_out["drifted"], inverted["drifted"]) == (False, True), (held_out["decision"], inverted["decision"])
    assert held_out["captures"]["examples"] == inverted["captures"]["examples"] == 100
    monitors = sagemaker.pipelines["mlops-local-cnn-monitor"].pipeline_executions.values()
    assert [run.pipeline_execution_status for run in monitors] == ["Succeeded", "Succeeded"]
    (alarm,) = get_backend("cloudwatch")[ACCOUNT][REGION].alarms.values()
    assert (alarm.name, alarm.state_value) == ("mlops-local-cnn-drift", "ALARM")

    # Nothing it started is left: processes, the moto server, the endpoint.
    assert len(started - before) >= 3, "the CDK CLI and the jobs ran as child processes"
    assert left_running(started - before) == []
    served_at = re.search(r"served at http://127\.0\.0\.1:(\d+)", out)
    assert served_at, out
    endpoint_port = int(served_at[1])
    assert not listening(port) and not listening(endpoint_port)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("endpoint-")]


def model_probabilities(model_tarball: Path, folder: Path, images: np.ndarray) -> np.ndarray:
    """The SavedModel's own serving_default on `images`, with no endpoint in between."""
    import tensorflow as tf

    extract_archive(model_tarball, folder)
    signature = tf.saved_model.load(str(folder / "1")).signatures["serving_default"]
    return signature(image=tf.constant(images, tf.float32))["probabilities"].numpy()


def test_a_failing_training_step_is_named_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # A value the registry accepts (window >= 2) but the prepared data contradicts (24-month windows).
    port, report = free_port(), tmp_path / "report"
    before = set(psutil.Process().children(recursive=True))
    with watched_descendants(psutil.Process()) as started:
        code, out, err = run_mlops(
            monkeypatch,
            capsys,
            "local",
            "rnn",
            "--port",
            str(port),
            "--report-dir",
            str(report),
            "--limit",
            "100",
            "--param",
            "window=12",
        )

    assert code == 1
    assert err.startswith(
        "failed: the mlops-local-rnn pipeline failed at step Train (Training): ExecuteUserScriptError:"
    )
    assert "error: channel 'train': history holds windows of 24 steps but hyperparameter window is 12" in err
    assert "✗ [5/9] Run the rnn training pipeline" in out and "[6/9]" not in out

    sagemaker = get_backend("sagemaker")[ACCOUNT][REGION]
    (execution,) = sagemaker.pipelines["mlops-local-rnn"].pipeline_executions.values()
    assert execution.pipeline_execution_status == "Failed"
    assert "step Train (Training) failed" in (execution.pipeline_execution_failure_reason or "")
    (training_job,) = sagemaker.training_jobs.values()
    assert training_job.training_job_status == "Failed"
    assert not [
        found for found in sagemaker.model_packages.values() if found.model_package_group_name == "mlops-local-rnn"
    ]

    # What it produced is kept: the job's log and the report of the run so far.
    (log,) = report.glob("pipeline/*/Train/log.txt")
    assert "hyperparameter window is 12" in log.read_text()
    phases = json.loads((report / "phases.json").read_text())
    assert phases["outcome"] == "failed"
    assert [phase["status"] for phase in phases["phases"]] == ["done"] * 4 + ["failed"]
    assert phases["steps"] == [{"step": "Train", "seconds": phases["steps"][0]["seconds"], "status": "Failed"}]
    assert "**Failed**" in (report / "report.md").read_text()

    assert left_running(started - before) == []
    assert not listening(port)
