"""What the explanations cost the Evaluate step, per network, and how much they depend on the weights.

For each network: its offline dataset (the full test channel), a model trained briefly by its entry
point (the figures are about time, not quality), then the Evaluate step exactly as its processing
job runs it (processing/evaluate.py from the unpacked source bundle, on model.tar.gz unpacked, in its own
process), twice: as a first run (no approved champion) and with the same model as an approved
champion (which scores the test channel a second time). Printed per network: the step's wall
time, the seconds its explanations took (explanations.json `seconds`, measured around the task's
`explain`), their share of the step, and the step's time with a champion.

Then the cascading-randomization check (Adebayo et al., 2018) for each network: Spearman's rank
correlation between the trained model's integrated gradients and those of the same network with
its layers randomized from the output down (tests/training_support.py), of |attributions| (over
the inputs where either is non-zero) and signed. Below 0.5 means the attributions depend on what
was learned; tests/test_training_evaluate.py asserts it for the CNN.

    .venv/bin/python benchmarks/explanations.py                       # every network but transfer
    .venv/bin/python benchmarks/explanations.py --networks cnn speech

Timing figures on a shared machine are noisy: the table carries the load average before and after.

Measured 2026-12-01 on 2-core Intel Sapphire Rapids under load (load average 6.5-8): the README's
"Explanations, and champion against challenger" holds both tables. Explanations took 10-25% of
the Evaluate step (speech 25%, rnn 21%, autoencoder 19%, cnn 11%, transfer 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "training"), str(REPO_ROOT / "tests")]

from benchmarks.local_phases import cpu_description, load_average  # noqa: E402

# Epochs that give each network a model of its real size in seconds to minutes on 2 cores.
BRIEF_TRAINING: dict[str, dict[str, Any]] = {  # run_entry_point keyword arguments
    "cnn": {"epochs": 1},
    "rnn": {"epochs": 10},
    "autoencoder": {"epochs": 30},
    "speech": {"epochs": 15},
    "transfer": {"epochs": 2, "fine_tune_epochs": 1},
    "sentiment": {"epochs": 2},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--networks",
        nargs="+",
        default=[name for name in BRIEF_TRAINING if name != "transfer"],
        choices=list(BRIEF_TRAINING),
    )
    parser.add_argument("--work-dir", type=Path, help="default: a temporary folder, kept")
    options = parser.parse_args()
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="explanations-"))
    print(f"CPU: {cpu_description()}\nload average before: {load_average()}\nwork dir: {work}", flush=True)
    bundle = unpacked_bundle(work)
    rows, correlations = [], []
    for network in options.networks:
        channels, model_dir = trained(network, work / network)
        first = timed_evaluate(bundle, network, model_dir, channels["test"], work / network / "first", None)
        champion = work / network / "champion"
        write_champion(champion, model_dir)
        second = timed_evaluate(bundle, network, model_dir, channels["test"], work / network / "second", champion)
        rows.append((network, first, second))
        correlations.append((network, randomization(network, model_dir, channels["test"])))
        print(f"{network}: done (load average {load_average()})", flush=True)
    print(f"\nload average after: {load_average()}\n")
    print("| network | test examples | Evaluate step, s | explanations, s | share | with a champion, s |")
    print("|---|---|---|---|---|---|")
    for network, first, second in rows:
        print(
            f"| {network} | {first['examples']} | {first['wall']:.1f} | {first['explain']:.1f} | "
            f"{first['explain'] / first['wall']:.0%} | {second['wall']:.1f} |"
        )
    print("\n| network | Spearman of |IG|, layers randomized from the top (cumulative) | signed, all random |")
    print("|---|---|---|")
    for network, (cascade, signed) in correlations:
        print(f"| {network} | {', '.join(f'{layer} {value:.2f}' for layer, value in cascade)} | {signed:.2f} |")
    return 0


def unpacked_bundle(work: Path) -> Path:
    from inference.archives import extract_archive
    from infra.source_bundle import build_source_bundle

    extract_archive(build_source_bundle(work / "code"), work / "code" / "bundle")
    return work / "code" / "bundle"


def trained(network: str, folder: Path) -> tuple[dict[str, Path], Path]:
    """The network's offline channels and a model trained briefly, unpacked as the Evaluate step unpacks it."""
    from training_support import run_entry_point

    from inference.archives import extract_archive
    from mlops.datasets import prepare

    channels = prepare(network, folder / "data")
    finished = run_entry_point(
        network,
        channels,
        folder / "run",
        timeout=3600,
        batch_size=128 if network == "cnn" else 32,
        **BRIEF_TRAINING[network],
    )
    if finished.returncode != 0:
        raise SystemExit(f"{network}: training failed\n{finished.stderr[-3000:]}")
    tarball = pack(folder / "run" / "model", folder / "model.tar.gz")
    extract_archive(tarball, folder / "model")
    return channels, folder / "model"


def pack(model_dir: Path, tarball: Path) -> Path:
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def write_champion(folder: Path, model_dir: Path) -> None:
    """What the Champion step leaves for Evaluate, with `model_dir` as the approved version."""
    import shutil

    from champion_comparison import Champion
    from champion_comparison import write_champion as write

    shutil.copytree(model_dir, folder / "model")
    write(folder, "benchmark", Champion("benchmark", "arn:aws:sagemaker:::model-package/benchmark/1", 1, "s3://x"))


def timed_evaluate(
    bundle: Path, network: str, model_dir: Path, test_dir: Path, output: Path, champion: Path | None
) -> dict[str, float]:
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    command = [
        sys.executable,
        "-m",
        "processing.evaluate",
        "--network",
        network,
        "--model-dir",
        str(model_dir),
        "--test-dir",
        str(test_dir),
        "--output-dir",
        str(output),
    ]
    if champion:
        command += ["--champion-dir", str(champion)]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=bundle, capture_output=True, text=True, env=environment, timeout=3600)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{network}: processing/evaluate.py failed\n{finished.stderr[-3000:]}")
    explained = json.loads((output / "explanations.json").read_text())
    examples = json.loads((test_dir / "spec.json").read_text())["count"]
    return {"wall": wall, "explain": explained["seconds"], "examples": examples}


def randomization(network_name: str, model_dir: Path, test_dir: Path) -> tuple[list[tuple[str, float]], float]:
    import numpy as np
    from scipy.stats import spearmanr
    from training_support import attribution_rank_correlation, randomize_layer_by_layer

    import explanations
    import records
    from processing import evaluate
    from training.networks import get_network

    network = get_network(network_name)
    spec = records.read_spec(test_dir, "test")
    model = evaluate.load_model(network, model_dir, spec)
    sample = explanations.first_examples(evaluate.test_stream(network, test_dir, spec, 256))
    picks, original = network.task.integrated_gradients(model.outputs, sample, model.description)
    cascade = []
    for layer in randomize_layer_by_layer(model.saved_model):
        _, randomized = network.task.integrated_gradients(model.outputs, sample, model.description, examples=picks)
        cascade.append((layer, attribution_rank_correlation(original, randomized)))
    signed = float(
        np.mean(
            [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(original.values, randomized.values, strict=True)]
        )
    )
    return cascade, signed


if __name__ == "__main__":
    sys.exit(main())
