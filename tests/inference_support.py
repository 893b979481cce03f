"""Shared by the inference tests: tiny real models exported to the serving contract, and helpers.

Each artifact folder has `1/` (a TF-Serving SavedModel whose `serving_default` has the documented
input and outputs), and `code/` with the real `inference/model_code/*` plus a `serving.json`, the
same layout training writes, serving.json holding the network's task description from the task
registry. One per network of the registry, each its task's tiny model (`Task.tiny_model`, so a new
network of a known task needs nothing here), built once per test process (a few seconds).
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from inference.local_endpoint import Context, load_handler_module, make_handler
from inference.model_lib import container_wheels
from inference.tf_serving import SavedModelServable
from training.model_lib import install_wheels
from training.networks import NETWORKS, get_network
from training.tasks import anomaly_detector, image_classifier, sequence_classifier, sequence_forecaster, text_classifier

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_CODE_DIR = REPO_ROOT / "inference" / "model_code"

# The tiny models' sizes, which every task makes for any of its networks (training/tasks/).
CNN_CLASSES = list(image_classifier.TINY_CLASS_NAMES)
WINDOW, HORIZON = sequence_forecaster.TINY_WINDOW, sequence_forecaster.TINY_HORIZON
N_FEATURES, THRESHOLD = anomaly_detector.TINY_FEATURES, anomaly_detector.TINY_THRESHOLD
MAX_FRAMES, N_COEFFICIENTS = sequence_classifier.TINY_MAX_LENGTH, sequence_classifier.TINY_FEATURES
SPEAKERS = list(sequence_classifier.TINY_CLASS_NAMES)
TEXT_CLASSES = list(text_classifier.TINY_CLASS_NAMES)
# Sizes a test of one network relies on: the transfer network's RGB photos (a network without an
# entry here gets its task's own sizes).
TRANSFER_CLASSES = ["airplane", "cat", "ship"]
TINY_SIZES: dict[str, dict] = {"transfer": {"side": 32, "channels": 3, "class_names": TRANSFER_CLASSES}}

_built: dict[str, Path] = {}


def exported_models(tmp_path_factory) -> dict[str, Path]:
    """network name -> artifact folder, exported the first time any test module asks."""
    if not _built:
        root = tmp_path_factory.mktemp("inference-models")
        _built.update(
            {name: export_tiny_model(name, root / name, seed=index + 1) for index, name in enumerate(NETWORKS)}
        )
    return _built


def tarball_of(model_dir: Path, destination: Path) -> Path:
    """model.tar.gz with the artifact's files at its root, as SageMaker expects."""
    # Level 1: code/lib is 75 MB of mostly compressed binaries, which level 9 takes seconds over.
    with tarfile.open(destination, "w:gz", compresslevel=1) as archive:
        for child in sorted(model_dir.iterdir()):
            archive.add(child, arcname=child.name)
    return destination


def image_bytes(array: np.ndarray, image_format: str = "PNG", mode: str | None = None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format=image_format)
    return buffer.getvalue()


def context(content_type: str | None = "application/json", content_length: int | None = None):
    """The container's Context for a request to the default model."""
    return Context(
        model_name=None,
        model_version=None,
        method=None,
        rest_uri="http://127.0.0.1:8501/v1/models/model:predict",
        grpc_port=None,
        channel=None,
        custom_attributes=None,
        request_content_type=content_type,
        accept_header="application/json",
        content_length=content_length,
    )


def serving_description(network_name: str, input_shape: list[int], input_dtype: str = "float32", **fields) -> dict:
    """serving.json as training writes it: the common fields, the task's description, the network's own."""
    network = get_network(network_name)
    return {
        "network": network.name,
        "input_name": network.input_name,
        "input_shape": input_shape,
        "input_dtype": input_dtype,
        "signature": "serving_default",
        **network.task.serving_description(),
        **fields,
    }


def _write_artifact(model_dir: Path, archive, serving: dict) -> Path:
    missing = set(get_network(serving["network"]).task.serving_fields) - set(serving)
    assert not missing, f"the {serving['network']} test model lacks serving fields {missing}"
    archive.write_out(str(model_dir / "1"), verbose=False)
    code_dir = handler_code(model_dir / "code")
    (code_dir / "serving.json").write_text(json.dumps(serving))
    return model_dir


@functools.cache
def unpacked_lib() -> Path:
    """The serving container's wheels unpacked once per process, as training's export unpacks
    them into code/lib; copy it with hard links (`copy_function=os.link`)."""
    scratch = Path(tempfile.mkdtemp(prefix="code-lib-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    install_wheels(container_wheels(), scratch / "lib")
    return scratch / "lib"


def handler_code(code_dir: Path) -> Path:
    """`code_dir` with the handler files and code/lib as the export writes them (no serving.json)."""
    code_dir.mkdir(parents=True, exist_ok=True)
    for path in MODEL_CODE_DIR.glob("*.py"):
        shutil.copy(path, code_dir / path.name)
    shutil.copytree(unpacked_lib(), code_dir / "lib", copy_function=os.link)
    return code_dir


def export_tiny_model(network_name: str, model_dir: Path, seed: int) -> Path:
    """The network's task's tiny model (with the network's TINY_SIZES), exported as training would."""
    import keras
    import tensorflow as tf

    network = get_network(network_name)
    tiny = network.task.tiny_model(seed, **TINY_SIZES.get(network_name, {}))
    archive = keras.export.ExportArchive()
    for resource in tiny.track:
        archive.track(resource)
    spec = tf.TensorSpec([None, *tiny.input_shape], tiny.input_dtype, name=network.input_name)
    archive.add_endpoint(name="serving_default", fn=tiny.serve, input_signature=[spec])
    serving = serving_description(network_name, list(tiny.input_shape), tiny.input_dtype, **tiny.serving)
    return _write_artifact(model_dir, archive, serving)


def assert_answer_matches(predictions: list[dict], outputs: dict[str, np.ndarray], serving: dict) -> None:
    """Each prediction of the handler's answer holds the signature's outputs for its row: every
    output by its name (a classifier's probabilities by class name, in the class names' order)."""
    assert len(predictions) == len(next(iter(outputs.values())))
    for row, prediction in enumerate(predictions):
        for name in serving["outputs"]:
            given = prediction[name]
            if isinstance(given, dict):
                assert list(given) == [str(label) for label in serving["class_names"]]
                given = list(given.values())
            np.testing.assert_allclose(np.asarray(given, np.float64), outputs[name][row], rtol=1e-6, atol=1e-7)
        if "class_names" in serving and "label" in prediction:
            assert prediction["label"] == serving["class_names"][int(np.argmax(outputs["probabilities"][row]))]


class Served:
    """One artifact's handler module, the composed container handler, and its raw signature."""

    def __init__(self, model_dir: Path) -> None:
        self.module = load_handler_module(model_dir / "code" / "inference.py")
        self.servable = SavedModelServable(model_dir / "1", version=1)
        self.handler = make_handler(self.module, self.servable)

    def answer(self, body: bytes | str, content_type: str | None) -> list[dict]:
        body = body.encode() if isinstance(body, str) else body
        text, content_type = self.handler(io.BytesIO(body), context(content_type, len(body)))
        assert content_type == "application/json"
        return json.loads(text)["predictions"]

    def rejection(self, body: bytes | str, content_type: str | None, content_length: int | None = None):
        """The handler's InvalidInput for this request (fails if it answers or raises anything else)."""
        body = body.encode() if isinstance(body, str) else body
        with pytest.raises(self.module.InvalidInput) as caught:
            self.handler(io.BytesIO(body), context(content_type, content_length))
        return caught.value

    def signature(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.module.SERVING["input_dtype"] == "string":
            return self.servable.run({self.module.INPUT_NAME: np.array([text.encode() for text in batch], object)})
        return self.servable.run({self.module.INPUT_NAME: batch.astype(np.float32)})
