"""The model export: a TF-Serving SavedModel plus its serving handlers, written atomically."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

log = logging.getLogger("training")

MODEL_VERSION = "1"


def write_model(model_dir: Path, endpoint: Callable[[tf.Tensor], dict[str, tf.Tensor]], input_spec: tf.TensorSpec,
                expected: tuple[str, ...], *, track: Sequence[Any], description: dict[str, Any]) -> None:
    """`endpoint` as the TF-Serving SavedModel `MODEL_VERSION/` with signature `serving_default`,
    plus `code/` (serving handlers and serving.json `description`), built in a staging folder and
    moved into `model_dir` only once complete and reloaded."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(model_dir)
    try:
        archive = keras.export.ExportArchive()
        for resource in track:
            archive.track(resource)
        archive.add_endpoint("serving_default", endpoint, input_signature=[input_spec])
        archive.write_out(str(staging / MODEL_VERSION), verbose=False)
        check_signature(staging / MODEL_VERSION, input_spec, expected)
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


def check_signature(path: Path, input_spec: tf.TensorSpec, expected: tuple[str, ...]) -> None:
    """Reloads the SavedModel as TF Serving would and calls it once."""
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = signature(**{input_spec.name: tf.zeros([2, *input_spec.shape[1:]], input_spec.dtype)})
    wrong = {name: (value.dtype.name, value.shape.as_list()) for name, value in outputs.items()
             if value.dtype != tf.float32 or value.shape[0] != 2}
    if sorted(outputs) != sorted(expected) or wrong:
        raise RuntimeError(f"exported signature gives {sorted(outputs)} (wrong: {wrong}), expected {list(expected)}")


def copy_model_code(code_dir: Path) -> None:
    """The serving handlers: `model_code/` inside the bundle, `inference/model_code/` in a checkout."""
    here = Path(__file__).resolve().parent
    for source in (here / "model_code", here.parent / "inference" / "model_code"):
        files = [path for path in source.glob("*") if path.is_file()] if source.is_dir() else []
        if files:
            for path in files:
                shutil.copy2(path, code_dir / path.name)
            return
    log.warning("no serving handlers next to %s (model_code/ or ../inference/model_code/): "
                "the artifact's code/ holds serving.json only", here)
