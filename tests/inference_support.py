"""Shared by the inference tests: tiny real models exported to the serving contract, and helpers.

Each artifact folder has `1/` (a TF-Serving SavedModel whose `serving_default` has the documented
input and outputs), and `code/` with the real `inference/model_code/*` plus a `serving.json`, the
same layout training writes, serving.json holding the network's task description from the task
registry. One per network type (`EXPORTERS`, which a guard test holds to `NETWORKS`), built once
per test process (a few seconds).
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
from training.networks import get_network

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_CODE_DIR = REPO_ROOT / "inference" / "model_code"

CNN_CLASSES = [str(digit) for digit in range(10)]
TRANSFER_CLASSES = ["airplane", "cat", "ship"]
WINDOW, HORIZON = 24, 3
N_FEATURES = 30
THRESHOLD = 0.75
MAX_FRAMES, N_COEFFICIENTS = 29, 12
SPEAKERS = [f"speaker {index}" for index in range(1, 10)]

_built: dict[str, Path] = {}


def exported_models(tmp_path_factory) -> dict[str, Path]:
    """network name -> artifact folder, exported the first time any test module asks."""
    if not _built:
        root = tmp_path_factory.mktemp("inference-models")
        _built.update({name: export(root / name) for name, export in EXPORTERS.items()})
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


def serving_description(network_name: str, input_shape: list[int], **fields) -> dict:
    """serving.json as training writes it: the common fields, the task's description, the network's own."""
    network = get_network(network_name)
    return {
        "network": network.name,
        "input_name": network.input_name,
        "input_shape": input_shape,
        "input_dtype": "float32",
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


def _archive(model, input_name: str, shape: list[int], fn):
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default", fn=fn, input_signature=[tf.TensorSpec([None, *shape], tf.float32, name=input_name)]
    )
    return archive


def _classifier(model_dir: Path, network: str, shape: list[int], class_names: list[str], seed: int) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(len(class_names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    archive = _archive(model, "image", shape, lambda image: {"probabilities": model(image)})
    return _write_artifact(model_dir, archive, serving_description(network, shape, class_names=class_names))


def _export_cnn(model_dir: Path) -> Path:
    return _classifier(model_dir, "cnn", [8, 8, 1], CNN_CLASSES, seed=1)


def _export_transfer(model_dir: Path) -> Path:
    return _classifier(model_dir, "transfer", [32, 32, 3], TRANSFER_CLASSES, seed=2)


def _export_rnn(model_dir: Path) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((WINDOW, 1), name="history")
    # Scaled inside, as the real forecaster does: requests are in original units (CO2 ppm).
    x = keras.layers.Rescaling(1 / 400, offset=-0.9)(inputs)
    x = keras.layers.LSTM(4)(x)
    outputs = keras.layers.Dense(HORIZON)(x)
    model = keras.Model(inputs, outputs)
    archive = _archive(model, "history", [WINDOW, 1], lambda history: {"forecast": model(history)})
    return _write_artifact(
        model_dir,
        archive,
        serving_description(
            "rnn", [WINDOW, 1], window=WINDOW, n_features=1, horizon=HORIZON, target_index=0, season=12
        ),
    )


def _export_autoencoder(model_dir: Path) -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(4)
    inputs = keras.Input((N_FEATURES,), name="features")
    embedding = keras.layers.Dense(4, activation="relu", name="embedding")(inputs)
    reconstruction = keras.layers.Dense(N_FEATURES)(embedding)
    model = keras.Model(inputs, [reconstruction, embedding])

    def serve(features):
        reconstructed, code = model(features)
        error = tf.reduce_mean(tf.square(features - reconstructed), axis=-1)
        return {
            "reconstruction_error": error,
            "threshold": tf.fill(tf.shape(error), tf.constant(THRESHOLD, tf.float32)),
            "embedding": code,
        }

    archive = _archive(model, "features", [N_FEATURES], serve)
    return _write_artifact(
        model_dir,
        archive,
        serving_description("autoencoder", [N_FEATURES], n_features=N_FEATURES, encoding_dim=4, threshold=THRESHOLD),
    )


def _export_speech(model_dir: Path) -> Path:
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((MAX_FRAMES, N_COEFFICIENTS), name="frames")
    # Masked as the real one is: the zero frames the handler pads with must not change the answer.
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.GRU(4)(x)
    outputs = keras.layers.Dense(len(SPEAKERS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    archive = _archive(model, "frames", [MAX_FRAMES, N_COEFFICIENTS], lambda frames: {"probabilities": model(frames)})
    return _write_artifact(
        model_dir,
        archive,
        serving_description(
            "speech",
            [MAX_FRAMES, N_COEFFICIENTS],
            class_names=SPEAKERS,
            max_length=MAX_FRAMES,
            n_features=N_COEFFICIENTS,
        ),
    )


# One tiny model per network of the registry (test_inference_handler.py checks that none is missing).
EXPORTERS = {
    "cnn": _export_cnn,
    "transfer": _export_transfer,
    "rnn": _export_rnn,
    "autoencoder": _export_autoencoder,
    "speech": _export_speech,
}


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
        return self.servable.run({self.module.INPUT_NAME: batch.astype(np.float32)})
