"""The model export: a TF-Serving SavedModel plus its serving handlers, written atomically."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from model_lib import install_wheels

log = logging.getLogger("training")

MODEL_VERSION = "1"
# A second signature of every exported model: the layer before its output, which a drift monitor
# compares with a baseline. TF Serving answers `:predict` from serving_default unless a request
# names another signature, so the serving contract is unchanged.
EMBEDDING_SIGNATURE = "embedding"
EMBEDDING_OUTPUT = "embedding"
# Optional: per-example numbers about an input that only the model can compute (a text model's
# tokens outside its vocabulary), name -> [batch]; the drift baseline and monitor add them to the
# task's drift features (baseline.py).
DRIFT_FEATURES_SIGNATURE = "drift_features"

Signature = tuple[Callable[..., dict[str, tf.Tensor]], Sequence[tf.TensorSpec]]
"""A further signature: its function and its inputs' specs (their names are the signature's)."""


def write_model(
    model_dir: Path,
    endpoint: Callable[[tf.Tensor], dict[str, tf.Tensor]],
    input_spec: tf.TensorSpec,
    expected: tuple[str, ...],
    *,
    track: Sequence[Any],
    description: dict[str, Any],
    embedding: Callable[[tf.Tensor], tf.Tensor] | None = None,
    signatures: Mapping[str, Signature] | None = None,
) -> None:
    """`endpoint` as the TF-Serving SavedModel `MODEL_VERSION/` with signature `serving_default`
    (and `embedding` as signature EMBEDDING_SIGNATURE, if given, and each of `signatures` by its
    name), plus `code/` (serving handlers and serving.json `description`), built in a staging
    folder and moved into `model_dir` only once complete and reloaded."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(model_dir)
    try:
        archive = keras.export.ExportArchive()
        for resource in track:
            archive.track(resource)
        archive.add_endpoint("serving_default", endpoint, input_signature=[input_spec])
        if embedding is not None:
            archive.add_endpoint(
                EMBEDDING_SIGNATURE,
                lambda inputs: {EMBEDDING_OUTPUT: tf.cast(embedding(inputs), tf.float32)},
                input_signature=[input_spec],
            )
        for name, (function, specs) in (signatures or {}).items():
            archive.add_endpoint(name, function, input_signature=list(specs))
        archive.write_out(str(staging / MODEL_VERSION), verbose=False)
        check_signature(staging / MODEL_VERSION, input_spec, expected)
        if embedding is not None:
            check_signature(staging / MODEL_VERSION, input_spec, (EMBEDDING_OUTPUT,), EMBEDDING_SIGNATURE)
        for name, (_, specs) in (signatures or {}).items():
            check_runs(staging / MODEL_VERSION, name, specs)
        code_dir = staging / "code"
        code_dir.mkdir()
        copy_model_code(code_dir)
        (code_dir / "serving.json").write_text(json.dumps(description, indent=2) + "\n")
        # `1/` goes last: a SavedModel in the model dir implies its code/ is there too.
        for name in ("code", MODEL_VERSION):
            target = model_dir / name
            if target.exists():
                shutil.rmtree(target)
            shutil.move(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def staging_dir(model_dir: Path) -> Path:
    """Beside the model dir (same file system, so moves are renames), never inside it."""
    try:
        return Path(tempfile.mkdtemp(prefix=".model-staging-", dir=model_dir.resolve().parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="model-staging-"))


def check_signature(
    path: Path, input_spec: tf.TensorSpec, expected: tuple[str, ...], name: str = "serving_default"
) -> None:
    """Reloads the SavedModel as TF Serving would and calls signature `name` once."""
    signature = tf.saved_model.load(str(path)).signatures[name]
    outputs = signature(**{input_spec.name: tf.zeros([2, *input_spec.shape[1:]], input_spec.dtype)})
    wrong = {
        name: (value.dtype.name, value.shape.as_list())
        for name, value in outputs.items()
        if value.dtype != tf.float32 or value.shape[0] != 2
    }
    if sorted(outputs) != sorted(expected) or wrong:
        raise RuntimeError(
            f"exported signature {name} gives {sorted(outputs)} (wrong: {wrong}), expected {list(expected)}"
        )


def check_runs(path: Path, name: str, specs: Sequence[tf.TensorSpec]) -> None:
    """Reloads the SavedModel and calls signature `name` once on a batch of 2 zeros (empty strings)."""
    signature = tf.saved_model.load(str(path)).signatures[name]
    outputs = signature(**{spec.name: tf.zeros([2, *spec.shape[1:]], spec.dtype) for spec in specs})
    wrong = sorted(output for output, value in outputs.items() if value.shape[0] != 2)
    if wrong:
        raise RuntimeError(f"exported signature {name}: outputs {wrong} are not one per example")


def layer_before_output(model: keras.Model) -> keras.Model:
    """The model up to the input of its last layer: what a classifier's head sees, its embedding."""
    return keras.Model(model.inputs[0], model.layers[-1].input)


def copy_model_code(code_dir: Path) -> None:
    """The serving handlers, `code/lib` unpacked from the container's wheels beside them:
    `model_code/` inside the bundle, `inference/model_code/` in a checkout."""
    here = Path(__file__).resolve().parent
    for source in (here / "model_code", here.parent / "inference" / "model_code"):
        files = [path for path in source.glob("*") if path.is_file()] if source.is_dir() else []
        if files:
            for path in files:
                shutil.copy2(path, code_dir / path.name)
            wheels = sorted((source / "wheels").glob("*.whl"))
            if not wheels:
                raise RuntimeError(
                    f"no wheels in {source / 'wheels'} for the artifact's code/lib: the serving "
                    "container could not import the handlers (./dev.sh fetches them)"
                )
            install_wheels(wheels, code_dir / "lib")
            return
    log.warning(
        "no serving handlers next to %s (model_code/ or ../inference/model_code/): "
        "the artifact's code/ holds serving.json only",
        here,
    )
