"""TensorFlow Serving's REST predict API, answered in-process from a SavedModel's `serving_default`.

The SageMaker container runs `tensorflow_model_server` and the handlers talk to it over REST. This
module gives the same answers without that binary, so the handlers see what they would in AWS:
- row format     {"instances": [row, ...]}   -> {"predictions": [row, ...]}
- columnar format {"inputs": value | {name: value}} -> {"outputs": value | {name: value}}
- one output: bare values; several outputs: an object per row (or per column set)
- a bad request: HTTP 400 {"error": "..."}
The model is loaded once; every request is one call of the signature (never `model.predict`),
run by TensorFlow's single-threaded executor where the graph allows it (`SINGLE_THREADED`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

# Keep the endpoint's log readable: TensorFlow's C++ start-up chatter is not about requests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

SIGNATURE_NAME = "serving_default"
# Runs a call's kernels in the calling thread. A serving call is a few small kernels, and handing
# each to TensorFlow's inter-op pool and waiting for it cost more than the kernels themselves
# (measured: benchmarks/endpoint_latency.py). Concurrent requests run in parallel anyway, one per
# server thread. It refuses graphs with low-level control flow (an exported RNN's while loop).
SINGLE_THREADED = "SINGLE_THREADED_EXECUTOR"
DEFAULT_EXECUTOR = None  # TensorFlow's own choice


def limit_threads(threads: int) -> None:
    """TensorFlow's inter- and intra-op thread pools sized `threads` (before anything runs).

    Each pool defaults to one thread per core, in every process: several server processes on a
    small machine would each spin that many threads on the same cores (TF Serving's
    `--tensorflow_inter_op_parallelism` / `--tensorflow_intra_op_parallelism`, which SageMaker's
    container sets from SAGEMAKER_TFS_INTER_OP_PARALLELISM / SAGEMAKER_TFS_INTRA_OP_PARALLELISM).
    """
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)


class BadTensorRequest(ValueError):
    """A predict request TF Serving would answer with 400 {"error": message}."""


class SavedModelServable:
    """One version of a SavedModel, answering TF Serving REST calls (thread-safe)."""

    def __init__(self, saved_model_dir: str | Path, version: int) -> None:
        self.version = version
        self._model = tf.saved_model.load(str(saved_model_dir))  # owns the signature's variables
        if SIGNATURE_NAME not in self._model.signatures:
            raise ValueError(f"{saved_model_dir} has no {SIGNATURE_NAME!r} signature "
                             f"(found: {', '.join(self._model.signatures) or 'none'})")
        self._signature = self._model.signatures[SIGNATURE_NAME]
        _, self.input_specs = self._signature.structured_input_signature
        self.output_names = sorted(self._signature.structured_outputs)
        unsupported = [name for name, spec in self.input_specs.items()
                       if not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype.is_bool)]
        if unsupported:
            raise ValueError(f"inputs {unsupported} are not numeric; this endpoint serves numeric tensors only")
        # The first call builds the graph's kernels; doing it now keeps it out of the first request.
        zeros = {name: np.zeros([1 if size is None else size for size in spec.shape], spec.dtype.as_numpy_dtype)
                 for name, spec in self.input_specs.items()}
        self.executor = SINGLE_THREADED
        try:
            self.run(zeros)
        except tf.errors.FailedPreconditionError:  # low-level control flow: the default executor runs it
            self.executor = DEFAULT_EXECUTOR
            self.run(zeros)

    def status(self) -> dict:
        """`GET /v1/models/<name>` as TF Serving answers it."""
        return {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def predict(self, body: bytes) -> tuple[int, bytes]:
        """`POST /v1/models/<name>:predict`: (HTTP status, JSON body)."""
        try:
            document = _parse_request(body)
            row_format = "instances" in document
            tensors = self._row_tensors(document["instances"]) if row_format \
                else self._columnar_tensors(document["inputs"])
            outputs = self.run(tensors)
        except BadTensorRequest as error:
            return 400, json.dumps({"error": str(error)}).encode()
        except tf.errors.InvalidArgumentError as error:  # TF Serving reports these as 400 too
            return 400, json.dumps({"error": error.message}).encode()
        answer = _rows_answer(outputs) if row_format else _columns_answer(outputs)
        return 200, json.dumps(answer).encode()

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of the signature: input name -> array in, output name -> array out."""
        with tf.experimental.function_executor_type(self.executor):
            outputs = self._signature(**{name: tf.convert_to_tensor(array) for name, array in arrays.items()})
        return {name: outputs[name].numpy() for name in self.output_names}

    def _row_tensors(self, instances) -> dict[str, np.ndarray]:
        if not isinstance(instances, list) or not instances:
            raise BadTensorRequest("'instances' must be a non-empty list of rows")
        if len(self.input_specs) == 1 and not all(isinstance(row, dict) for row in instances):
            (name,) = self.input_specs
            return {name: self._tensor(name, instances)}
        if not all(isinstance(row, dict) and set(row) == set(self.input_specs) for row in instances):
            raise BadTensorRequest(f"every instance must be an object with the inputs "
                                   f"{sorted(self.input_specs)}")
        return {name: self._tensor(name, [row[name] for row in instances]) for name in self.input_specs}

    def _columnar_tensors(self, inputs) -> dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            if set(inputs) != set(self.input_specs):
                raise BadTensorRequest(f"'inputs' must name exactly the inputs {sorted(self.input_specs)}")
            return {name: self._tensor(name, value) for name, value in inputs.items()}
        if len(self.input_specs) != 1:
            raise BadTensorRequest(f"'inputs' must be an object naming the inputs {sorted(self.input_specs)}")
        (name,) = self.input_specs
        return {name: self._tensor(name, inputs)}

    def _tensor(self, name: str, value) -> np.ndarray:
        spec = self.input_specs[name]
        try:
            array = np.array(value)
        except (ValueError, RecursionError):
            raise BadTensorRequest(f"input {name!r}: the values do not form a rectangular tensor") from None
        kinds = "b" if spec.dtype.is_bool else "iu" if spec.dtype.is_integer else "iuf"
        if array.dtype.kind not in kinds and not _all_python_ints(array, spec):
            raise BadTensorRequest(f"input {name!r}: expected {spec.dtype.name} values, "
                                   f"got {_describe_kind(array)}")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                array = array.astype(spec.dtype.as_numpy_dtype)
        except OverflowError:
            raise BadTensorRequest(f"input {name!r}: a value is out of range for {spec.dtype.name}") from None
        if not spec.shape.is_compatible_with(array.shape):
            raise BadTensorRequest(f"input {name!r}: expected shape {_shape_text(spec.shape)}, "
                                   f"got {list(array.shape)}")
        return array


def _parse_request(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except RecursionError:
        raise BadTensorRequest("JSON Parse error: nested too deeply") from None
    except ValueError as error:
        raise BadTensorRequest(f"JSON Parse error: {error}") from None
    if not isinstance(document, dict):
        raise BadTensorRequest("the request must be a JSON object")
    if "instances" in document and "inputs" in document:
        raise BadTensorRequest("Not both 'inputs' and 'instances' can be set")
    if "instances" not in document and "inputs" not in document:
        raise BadTensorRequest("Missing 'inputs' or 'instances' key")
    signature = document.get("signature_name", SIGNATURE_NAME)
    if signature != SIGNATURE_NAME:
        raise BadTensorRequest(f"Serving signature name: {signature!r} not found in signature def")
    return document


def _all_python_ints(array: np.ndarray, spec: tf.TensorSpec) -> bool:
    # Integers beyond int64 make numpy fall back to objects; they are still numbers for a float input.
    return (array.dtype.kind == "O" and spec.dtype.is_floating
            and all(isinstance(item, int) and not isinstance(item, bool) for item in array.flat))


def _describe_kind(array: np.ndarray) -> str:
    return {"b": "true/false", "U": "strings", "S": "strings", "O": "nulls or objects"}.get(
        array.dtype.kind, array.dtype.name)


def _shape_text(shape: tf.TensorShape) -> str:
    return "[" + ", ".join("-1" if size is None else str(size) for size in shape) + "]"


def _rows_answer(outputs: dict[str, np.ndarray]) -> dict:
    if len(outputs) == 1:
        (values,) = outputs.values()
        return {"predictions": values.tolist()}
    columns = {name: values.tolist() for name, values in outputs.items()}
    batch = len(next(iter(columns.values())))
    return {"predictions": [{name: column[index] for name, column in columns.items()}
                            for index in range(batch)]}


def _columns_answer(outputs: dict[str, np.ndarray]) -> dict:
    if len(outputs) == 1:
        (values,) = outputs.values()
        return {"outputs": values.tolist()}
    return {"outputs": {name: values.tolist() for name, values in outputs.items()}}
