"""The monitor pipeline's processing job: a window of an endpoint's captured traffic against the
drift baseline of the model version it served.

SageMaker Pipelines runs this on the training image, from the unpacked source bundle, like the
Evaluate step, and with the stage's network isolation like it:

    python3 -m processing.monitor --network cnn --model-dir /opt/ml/processing/model \\
        --baseline /opt/ml/processing/baseline/baseline.json \\
        --captures-dir /opt/ml/processing/captures --output-dir /opt/ml/processing/drift

Its captures are an input: the capture files of the window's hour folders and `window.json`,
copied by the CollectCaptures step (processing/collect_captures.py). It keeps the records whose
inferenceTime falls in the window and decodes each request with the served model's own handler
(`code/inference.py`, as the endpoint parsed it) into the model's input. Those inputs are
summarised as the baseline was (baseline.py: the task's features, the model's `embedding`
signature, its predictions) and tested against it (drift.py). A file or record that cannot be
read is counted, by reason, and reported, never fatal.

Given `--batch-dir` instead of `--captures-dir`, it monitors a batch transform's input records
(batch_inputs.py): the batch transform pipeline's MonitorBatchInput step, its window the moment it
runs. The handler then reads each record as the transform's container did (SAGEMAKER_BATCH).

Writes `drift.json` (the window, what was read and skipped, every test, the decision) and
`drift.png`; the PublishMetrics step publishes its numbers (processing/publish_drift.py). It calls
no AWS service. A window without a conclusion is not a failure; bad input (a baseline of another
model, an unreadable model, no window) exits 2 with one `error: ...` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

import contract
import drift
import drift_plots
import networks
from baseline import Summariser
from batch_inputs import BatchRecordReader
from capture_window import Window, iso
from captures import CaptureReader, RequestDecoder
from drift import Baseline, Summaries

log = logging.getLogger("monitor")
REPORT_FILE = "drift.json"
PLOT_FILE = "drift.png"
BATCH = 256


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contract.exits_on_bad_input():
        if arguments.batch_dir is not None:
            report = monitor_batch(
                arguments.network,
                arguments.model_dir,
                arguments.baseline,
                arguments.batch_dir,
                arguments.content_type,
                arguments.output_dir,
                alpha=arguments.alpha,
                model_uri=arguments.model_uri,
            )
        else:
            try:
                window = Window.read(arguments.captures_dir)
            except ValueError as error:
                raise contract.InputError(f"captures dir {arguments.captures_dir}: {error}") from None
            report = monitor(
                arguments.network,
                arguments.model_dir,
                arguments.baseline,
                arguments.captures_dir,
                window,
                arguments.output_dir,
                alpha=arguments.alpha,
                model_uri=arguments.model_uri,
            )
    log.info("window %s .. %s: %s", report["window"]["start"], report["window"]["end"], report["decision"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m processing.monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", required=True, help=f"one of {', '.join(networks.NETWORKS)}")
    parser.add_argument("--model-dir", type=Path, required=True, help="the served model.tar.gz, unpacked")
    parser.add_argument("--baseline", type=Path, required=True, help="the served version's baseline.json")
    parser.add_argument(
        "--model-uri", default="", help="where the served model is stored: must be the model the baseline names"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--captures-dir", type=Path, help="the window's capture files and window.json (CollectCaptures)"
    )
    source.add_argument("--batch-dir", type=Path, help="a batch transform's input records (batch_formats.py)")
    parser.add_argument("--content-type", default="application/jsonlines", help="the batch's record format")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--alpha", type=float, default=drift.ALPHA, help="false alarm rate per window")
    return parser


def monitor(
    network_name: str,
    model_dir: Path,
    baseline_path: Path,
    captures_dir: Path,
    window: Window,
    output_dir: Path,
    *,
    alpha: float = drift.ALPHA,
    model_uri: str = "",
) -> dict[str, Any]:
    """Writes drift.json and drift.png into `output_dir` for the captures of `window` in
    `captures_dir`; returns the report."""
    reader = CaptureReader(captures_dir)
    return _monitor(
        network_name,
        model_dir,
        baseline_path,
        reader,
        reader.records(window.start, window.end),
        window,
        output_dir,
        alpha=alpha,
        model_uri=model_uri,
    )


def monitor_batch(
    network_name: str,
    model_dir: Path,
    baseline_path: Path,
    batch_dir: Path,
    content_type: str,
    output_dir: Path,
    *,
    alpha: float = drift.ALPHA,
    model_uri: str = "",
) -> dict[str, Any]:
    """drift.json and drift.png for the input records of a batch transform in `batch_dir`."""
    try:
        reader = BatchRecordReader(batch_dir, content_type)
    except KeyError as error:
        raise contract.InputError(error.args[0]) from None
    now = datetime.now(UTC).replace(microsecond=0)
    window = Window(now, now, f"batch input, {content_type}")
    # The handler reads the records as the transform's container did (inference/model_code/batch_records.py);
    # only while they are read, so that a caller in the same process keeps its own environment.
    with mock.patch.dict(os.environ, {"SAGEMAKER_BATCH": "true"}):
        return _monitor(
            network_name,
            model_dir,
            baseline_path,
            reader,
            reader.records(),
            window,
            output_dir,
            alpha=alpha,
            model_uri=model_uri,
        )


def _monitor(
    network_name: str,
    model_dir: Path,
    baseline_path: Path,
    reader: CaptureReader | BatchRecordReader,
    requests: Any,
    window: Window,
    output_dir: Path,
    *,
    alpha: float,
    model_uri: str,
) -> dict[str, Any]:
    try:
        network = networks.get_network(network_name)
    except KeyError as error:
        raise contract.InputError(error.args[0]) from None
    try:
        baseline = Baseline.read(baseline_path)
    except ValueError as error:
        raise contract.InputError(str(error)) from None
    if baseline.document["network"] != network.name:
        raise contract.InputError(
            f"the baseline {baseline_path} is of a {baseline.document['network']!r} model, not {network.name!r}"
        )
    if model_uri and baseline.document.get("model_data_url") not in (None, model_uri):
        raise contract.InputError(
            f"the baseline describes {baseline.document['model_data_url']}, not the model given, {model_uri}"
        )
    decoder = RequestDecoder.load(model_dir, network)
    summarise = Summariser(network, decoder.description, _signatures(model_dir))

    summaries = [summarise(chunk) for batch in decoder.inputs(requests) for chunk in _chunks(batch)]
    examples = sum(len(part) for part in summaries)
    report: dict[str, Any] = {
        "network": network.name,
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "capture_uri": window.capture_uri,
        "baseline": str(baseline_path),
        "model_data_url": baseline.document.get("model_data_url"),
        "captures": {**reader.counts(), "examples": examples, "unparsable": reader.problems.merged(decoder.problems)},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    if examples < drift.MIN_EXAMPLES:
        report.update(
            decision=f"no conclusion: {examples} examples in the window, at least {drift.MIN_EXAMPLES} are needed",
            drifted=None,
            score=None,
        )
        window_summaries = None
    else:
        window_summaries = Summaries.concatenate(summaries)
        comparison = drift.compare(baseline, window_summaries, alpha=alpha)
        report.update(comparison.to_json())
        report["decision"] = (
            f"drift (p={comparison.p_value:.3g} < {alpha})"
            if comparison.drifted
            else f"no drift (p={comparison.p_value:.3g} >= {alpha})"
        )
    drift_plots.plot(baseline, window_summaries, report, output_dir / PLOT_FILE)
    # Last: the report's presence means the step's outputs are complete.
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _signatures(model_dir: Path) -> Any:
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(model_dir / contract.MODEL_VERSION)).signatures
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise contract.InputError(
            f"model dir {model_dir}: no SavedModel in {contract.MODEL_VERSION}/ ({type(error).__name__})"
        ) from None


def _chunks(batch: np.ndarray) -> list[np.ndarray]:
    return [batch[index : index + BATCH] for index in range(0, len(batch), BATCH)]


if __name__ == "__main__":
    main()
    contract.exit_at_once()
