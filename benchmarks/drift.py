"""The drift monitor's false alarms and detections on held-out data, per network (not a pytest).

    .venv/bin/python benchmarks/drift.py                                # every network, 50 requests per window
    .venv/bin/python benchmarks/drift.py --networks cnn rnn --window-sizes 25 50 100 --windows 60

For each network: train it on its offline dataset with the `local` stage's hyperparameters
(through SageMaker's own launcher, as `mlops local` does; cached in --work), draw its drift
baseline from the validation channel exactly as the Evaluate step does (training/baseline.py),
then send --windows windows of held-out traffic through the monitor's statistics, in process
and without AWS: each window is a random draw (without replacement) of requests from the test
channel, one example per request, encoded as TF Serving JSON, decoded by the served model's
own handler (training/captures.py), summarised with the model's signatures and tested against
the baseline (training/drift.py). Unshifted windows measure the false alarm rate (goal <= 5%);
the same windows changed by each of the task's shifts (`Task.drift_shifts`: inverted or rotated
images, a level step or amplified swings of a series, rescaled or offset features, rescaled or
truncated sequences) measure the detection rate (goal >= 95%). Seconds per window is the
decode + summarise + test time of one window (the monitor job's own work; its start-up, which
imports TensorFlow and loads the model, is once per job and not in it).

The held-out traffic is the test examples whose label occurs in the validation channel: for the
anomaly detector, whose validation channel (like its training data) is normal examples only,
that is the normal test examples; the test channel's anomaly share is the test's design, not the
traffic the model is meant for. Exits 1 if a goal is missed.

Figures: the table this prints; docs/benchmarks.md quotes the last run with its date, CPU and load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "training"))

from mlops.datasets import prepare  # noqa: E402
from mlops.local.drift import held_out_pool  # noqa: E402
from mlops.local.samples import json_value  # noqa: E402
from mlops.local.training_job import run_training_job  # noqa: E402
from mlops.stages import LOCAL_STAGE, stage_config  # noqa: E402
from training.networks import NETWORKS, get_network  # noqa: E402

FALSE_ALARM_GOAL = 0.05
DETECTION_GOAL = 0.95


def trained(network: str, work: Path) -> tuple[Path, dict[str, Path]]:
    """(model dir, channels), trained once per --work folder."""
    data = work / network / "data"
    channels = (
        {channel: data / channel for channel in get_network(network).channels if (data / channel).exists()}
        if data.exists()
        else prepare(network, data)
    )
    job_dir = work / network / "job"
    model_dir = job_dir / "model"
    if not (model_dir / "1" / "saved_model.pb").exists():
        hyperparameters = stage_config(LOCAL_STAGE).hyperparameters_for(network)
        result = run_training_job(network, channels, job_dir, hyperparameters=hyperparameters)
        if not result.succeeded:
            print(result.log[-3000:])
            raise SystemExit(f"training {network} failed with exit code {result.exit_code}")
        model_dir = result.model_dir
    return model_dir, channels


def measure(network: str, work: Path, window_sizes: list[int], windows: int, seed: int) -> list[dict]:
    import tensorflow as tf

    import baseline
    import drift
    from captures import CapturedRequest, RequestDecoder

    spec = get_network(network)
    model_dir, channels = trained(network, work)
    description = json.loads((model_dir / "code" / "serving.json").read_text())
    signatures = tf.saved_model.load(str(model_dir / "1")).signatures
    baseline_dir = work / network / "baseline"
    baseline.write_baseline(spec, description, signatures, channels["validation"], baseline_dir, model_uri=None)
    reference = drift.Baseline.read(baseline_dir / baseline.BASELINE_FILE)
    summarise = baseline.Summariser(spec, description, signatures)
    decoder = RequestDecoder.load(model_dir, spec)
    pool = held_out_pool(channels["test"], channels["validation"], spec)
    shifts = spec.task.drift_shifts()
    rng = np.random.default_rng(seed)
    rows = []
    for size in window_sizes:
        alarms = dict.fromkeys(["none", *shifts], 0)
        seconds: list[float] = []
        for index in range(windows):
            chosen = pool[rng.choice(len(pool), size, replace=len(pool) < size)]
            for name in alarms:
                batch = chosen if name == "none" else shifts[name](chosen, rng).astype(chosen.dtype)
                started = time.perf_counter()
                requests = [
                    CapturedRequest(
                        f"request {row}", json.dumps({"instances": [json_value(example)]}).encode(), "application/json"
                    )
                    for row, example in enumerate(batch)
                ]
                inputs = np.concatenate(list(decoder.inputs(iter(requests))))
                comparison = drift.compare(reference, summarise(inputs), seed=index)
                seconds.append(time.perf_counter() - started)
                alarms[name] += comparison.drifted
        rows.append(
            {
                "network": network,
                "window": size,
                "windows": windows,
                "pool": len(pool),
                "reference": reference.document["reference_examples"],
                "false_alarms": alarms.pop("none") / windows,
                "detection": {name: count / windows for name, count in alarms.items()},
                "seconds_per_window": statistics.median(seconds),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--window-sizes", nargs="+", type=int, default=[50])
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mlops-drift-benchmark"))
    arguments = parser.parse_args()
    started = time.perf_counter()
    rows = [
        row
        for network in arguments.networks
        for row in measure(network, arguments.work, arguments.window_sizes, arguments.windows, arguments.seed)
    ]
    print(
        f"\n{'network':<12} {'window':>6} {'windows':>7} {'pool':>6} {'ref':>5} {'false alarms':>12}  "
        f"{'detection per shift':<44} {'s/window':>8}"
    )
    missed = []
    for row in rows:
        detection = ", ".join(f"{name} {rate:.0%}" for name, rate in row["detection"].items())
        print(
            f"{row['network']:<12} {row['window']:>6} {row['windows']:>7} {row['pool']:>6} {row['reference']:>5} "
            f"{row['false_alarms']:>12.1%}  {detection:<44} {row['seconds_per_window']:>8.3f}"
        )
        if row["false_alarms"] > FALSE_ALARM_GOAL or min(row["detection"].values()) < DETECTION_GOAL:
            missed.append(f"{row['network']} at {row['window']}")
    cpu = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("model name", "flags"))]
    print(
        f"\n{cpu[0] if cpu else ''}; bf16: {'avx512_bf16' in ' '.join(cpu)}; cores: {os.cpu_count()}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {time.perf_counter() - started:.0f} s"
    )
    if missed:
        raise SystemExit(
            f"goals (false alarms <= {FALSE_ALARM_GOAL:.0%}, detection >= {DETECTION_GOAL:.0%}) "
            f"missed: {', '.join(missed)}"
        )


if __name__ == "__main__":
    main()
