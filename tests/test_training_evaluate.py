"""The pipeline's Evaluate step (training/processing/evaluate.py), run as its processing job runs it: from the
unpacked source bundle, on an unpacked model.tar.gz, judging the exported signature alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_support import attribution_rank_correlation, randomize_layer_by_layer

import records
from drift import Baseline
from inference.archives import extract_archive
from infra.source_bundle import build_source_bundle
from training.networks import NETWORKS, get_network

# slow: trains a model per network, then runs the Evaluate job.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The source bundle unpacked as the Evaluate step unpacks it (`tar -xzf ... -C bundle`)."""
    root = tmp_path_factory.mktemp("code")
    extract_archive(build_source_bundle(root), root / "bundle")
    return root / "bundle"


@pytest.fixture(scope="module")
def processing_inputs(tmp_path_factory, trained):
    """`processing_inputs(network)` -> (its trained model as the Evaluate step gets it, the training
    run's own evaluation.json), made once."""
    made: dict[str, tuple[Path, dict]] = {}

    def of(network: str) -> tuple[Path, dict]:
        if network not in made:
            run = trained(network)
            assert run.returncode == 0, run.log
            made[network] = (
                _as_processing_input(run.model_dir, tmp_path_factory.mktemp(network) / "model"),
                json.loads((run.output_dir / "evaluation.json").read_text()),
            )
        return made[network]

    return of


def _as_processing_input(model_dir: Path, destination: Path) -> Path:
    """model.tar.gz as SageMaker packs the model dir, unpacked beside itself as the Evaluate step does."""
    destination.mkdir(parents=True)
    with tarfile.open(destination / "model.tar.gz", "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    extract_archive(destination / "model.tar.gz", destination)
    return destination


MODEL_URI = "s3://artifacts/models/NETWORK/pipelines-x-Train-y/output/model.tar.gz"


def run_evaluate(
    bundle: Path, network: str, model_dir: Path, test_dir: Path, output_dir: Path, *extra: str
) -> subprocess.CompletedProcess:
    # Only the bundle may supply the sibling modules, as in the processing container.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.run(
        [
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
            str(output_dir),
            *extra,
        ],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
    )


@pytest.fixture(scope="module")
def evaluated(bundle, processing_inputs, small_data, tmp_path_factory):
    """`evaluated(network)` -> the Evaluate step's output folder, run once as the pipeline runs it
    (test channel, and the validation channel for the drift baseline)."""
    made: dict[str, Path] = {}

    def evaluate(network: str) -> Path:
        if network not in made:
            output = tmp_path_factory.mktemp(f"evaluation-{network}")
            channels = small_data(network)
            finished = run_evaluate(
                bundle,
                network,
                processing_inputs(network)[0],
                channels["test"],
                output,
                "--baseline-dir",
                str(channels["validation"]),
                "--model-uri",
                MODEL_URI,
            )
            assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
            made[network] = output
        return made[network]

    return evaluate


@pytest.mark.parametrize("network", list(NETWORKS))
def test_evaluate_reports_the_training_runs_test_metrics(processing_inputs, evaluated, network):
    _, from_training = processing_inputs(network)
    output = evaluated(network)

    report = json.loads((output / "evaluation.json").read_text())
    assert report["network"] == network
    assert set(report["metrics"]) == set(from_training["metrics"])
    for name, metric in from_training["metrics"].items():
        assert report["metrics"][name]["value"] == pytest.approx(metric["value"], rel=1e-5, abs=1e-6), name
    details = set(report) - {"network", "metrics"}  # e.g. the threshold, the baseline
    assert details <= set(from_training)
    for key in details:
        expected = from_training[key]
        assert report[key] == (pytest.approx(expected, rel=1e-6) if isinstance(expected, float) else expected), key
    assert (output / f"{get_network(network).task.plot}.png").stat().st_size > 0

    explained = json.loads((output / "explanations.json").read_text())
    assert (explained["network"], explained["task"]) == (network, get_network(network).task.name)
    assert explained["summary"] and all(line["title"] and line["top"] for line in explained["summary"])
    # Integrated gradients add up to the change of the explained score from the baseline's.
    assert explained["methods"]["integrated_gradients"]["completeness_error"] <= 0.05, explained["methods"]
    for plot in explained["plots"]:
        assert (output / plot).stat().st_size > 0, plot


@pytest.mark.parametrize("network", list(NETWORKS))
def test_evaluate_writes_the_drift_baseline_of_the_validation_channel(evaluated, small_data, network):
    spec = get_network(network)
    output = evaluated(network)
    document = json.loads((output / "baseline.json").read_text())
    validation = records.read_spec(small_data(network)["validation"], "validation")
    assert (document["format"], document["network"], document["model_data_url"], document["channel"]) == (
        "mlops-drift-baseline/1",
        network,
        MODEL_URI,
        "validation",
    )
    assert document["examples"] == validation.count
    rows = min(validation.count, 500)
    assert document["reference_examples"] == rows
    reference = Baseline.read(output / "baseline.json").reference
    features, embedding, predictions = reference.features, reference.embedding, reference.predictions
    assert features.shape == (rows, len(document["features"]))
    assert embedding.shape == (rows, document["embedding_size"]) and document["embedding_size"] > 0
    assert np.isfinite(embedding).all() and np.ptp(embedding, axis=0).max() > 0  # the model's, not constant
    assert predictions.shape == (rows,) and np.isfinite(predictions).all()
    assert document["prediction_kind"] == spec.task.prediction_kind
    if spec.task.prediction_kind == "classes":
        assert len(document["class_counts"]) == len(validation.class_names)
        assert sum(document["class_counts"]) == validation.count
        assert set(predictions.astype(int)) <= set(range(len(validation.class_names)))


def test_the_cnns_attributions_depend_on_its_trained_weights(processing_inputs, small_data):
    """Cascading randomization (Adebayo et al., 2018) on the same test images: once the CNN's
    layers are random from the output down, its integrated gradients rank the pixels differently
    from the trained CNN's (Spearman below 0.5)."""
    import explanations
    from processing import evaluate

    network = get_network("cnn")
    test_dir = small_data("cnn")["test"]
    spec = records.read_spec(test_dir, "test")
    model = evaluate.load_model(network, processing_inputs("cnn")[0], spec)
    sample = explanations.first_examples(evaluate.test_stream(network, test_dir, spec, 256))
    picks, original = network.task.integrated_gradients(model.outputs, sample, model.description)
    cascade = {}
    for layer in randomize_layer_by_layer(model.saved_model):
        _, randomized = network.task.integrated_gradients(model.outputs, sample, model.description, examples=picks)
        cascade[layer] = attribution_rank_correlation(original, randomized)
    assert len(cascade) == 3 and list(cascade.values())[-1] < 0.5, cascade


def _wider_images(tmp_path: Path, test_dir: Path) -> Path:
    spec = records.read_spec(test_dir, "test")
    records.write_channel(
        tmp_path / "wide",
        {"image": np.zeros((4, 10, 10, 1)), "label": np.arange(4)},
        dtypes={"image": "uint8", "label": "int64"},
        class_names=spec.class_names,
    )
    return tmp_path / "wide"


# case -> (network, (model dir, test dir, tmp) -> the dirs Evaluate gets, what its one line says...)
BAD_INPUT: dict[str, tuple[Any, ...]] = {
    "model of another network": (
        "autoencoder",
        lambda model, test, tmp: (model, test),
        "holds a 'cnn' model, not 'autoencoder'",
    ),
    "unknown network": ("resnet", lambda model, test, tmp: (model, test), "unknown network 'resnet'"),
    "missing model dir": (
        "cnn",
        lambda model, test, tmp: (tmp / "absent", test),
        "cannot read code/serving.json of an unpacked model.tar.gz",
    ),
    "missing test dir": (
        "cnn",
        lambda model, test, tmp: (model, tmp / "absent"),
        "channel 'test' (",
        "the folder does not exist",
    ),
    "test images of another shape": (
        "cnn",
        lambda model, test, tmp: (model, _wider_images(tmp, test)),
        "channel 'test': 'image' has shape [10, 10, 1], but the model takes [28, 28, 1]",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line(bundle, processing_inputs, small_data, tmp_path, case):
    network, arrange, *fragments = BAD_INPUT[case]
    model_dir, test_dir = arrange(processing_inputs("cnn")[0], small_data("cnn")["test"], tmp_path)
    finished = run_evaluate(bundle, network, model_dir, test_dir, tmp_path / "evaluation")
    assert finished.returncode == 2, finished.stdout[-2000:] + finished.stderr[-2000:]
    errors = [line for line in finished.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and all(fragment in errors[0] for fragment in fragments), finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "evaluation" / "evaluation.json").exists()


def _champion(tmp_path: Path, model_dir: Path | None, document: str) -> Path:
    """A champion dir as the Champion step leaves it, and the Evaluate command unpacks it."""
    import shutil

    folder = tmp_path / "champion"
    folder.mkdir()
    (folder / "champion.json").write_text(document)
    if model_dir is not None:
        shutil.copytree(model_dir, folder / "model")
    return folder


CHAMPION = json.dumps(
    {
        "group": "mlops-local-cnn",
        "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-local-cnn/3",
        "version": 3,
        "model_data_url": "s3://a/m.tar.gz",
    }
)


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("champion.json unreadable", "no champion.json as the Champion step writes it"),
        (
            "a champion of another kind",
            "the approved champion, version 3 of mlops-local-cnn, cannot be scored on this test channel (model dir",
        ),
    ],
)
def test_a_champion_that_cannot_be_scored_exits_2_naming_it(
    bundle,
    processing_inputs,
    small_data,
    tmp_path,
    case,
    fragment,
):
    """Failing, not passing the candidate unchecked: a human rejects that version (or fixes the data)."""
    champion = (
        _champion(tmp_path, None, "{not json")
        if case == "champion.json unreadable"
        else _champion(tmp_path, processing_inputs("autoencoder")[0], CHAMPION)
    )
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "processing.evaluate",
            "--network",
            "cnn",
            "--model-dir",
            str(processing_inputs("cnn")[0]),
            "--test-dir",
            str(small_data("cnn")["test"]),
            "--output-dir",
            str(tmp_path / "evaluation"),
            "--champion-dir",
            str(champion),
        ],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
    )
    assert finished.returncode == 2, finished.stdout[-2000:] + finished.stderr[-2000:]
    errors = [line for line in finished.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr


def test_a_baseline_channel_that_does_not_fit_the_model_exits_2(bundle, processing_inputs, small_data, tmp_path):
    channels = small_data("cnn")
    finished = run_evaluate(
        bundle,
        "cnn",
        processing_inputs("cnn")[0],
        channels["test"],
        tmp_path / "evaluation",
        "--baseline-dir",
        str(_wider_images(tmp_path, channels["test"])),
    )
    assert finished.returncode == 2, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert (
        "error: channel 'validation': 'image' has shape [10, 10, 1], but the model takes [28, 28, 1]"
        in finished.stderr.splitlines()
    )
    assert not (tmp_path / "evaluation" / "evaluation.json").exists()
