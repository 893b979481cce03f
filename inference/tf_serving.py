"""TensorFlow Serving's REST predict API, answered in-process from a SavedModel's `serving_default`.

The SageMaker container runs `tensorflow_model_server` and the handlers talk to it over REST. This
module gives the same answers without that binary, so the handlers see what they would in AWS:
- row format     {"instances": [row, ...]}   -> {"predictions": [row, ...]}
- columnar format {"inputs": value | {name: value}} -> {"outputs": value | {name: value}}
- one output: bare values; several outputs: an object per row (or per column set)
- string inputs: a JSON string is its UTF-8 bytes, {"b64": "..."} its base64-decoded bytes
- a bad request: HTTP 400 {"error": "..."}
The SavedModel is loaded as TF Serving loads it: into a session, whose `serving_default`
signature names the tensors to feed and fetch; every request is one run of a callable made from
them (never `model.predict`, and no Python function tracing per call).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Keep the endpoint's log readable: TensorFlow's C++ start-up chatter is not about requests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

SIGNATURE_NAME = "serving_default"
SERVE_TAG = "serve"
# TF Serving reads REST JSON in C++. Here a row request of numbers alone (what the handlers send)
# is read with numpy, as fast; anything else goes through json.loads and its checks.
_ROW_REQUEST = re.compile(rb'\s*\{\s*"instances"\s*:\s*(\[[\[\],\s0-9eE+\-.]*\])\s*\}\s*')
_NUMBER_CHARACTERS = b"0123456789eE+-."
_SPACE = b" \t\r\n"


def session_config(intra_op_threads: int) -> tf.compat.v1.ConfigProto:
    """What TF Serving's `--tensorflow_intra_op_parallelism` / `--tensorflow_inter_op_parallelism`
    set (SageMaker's container: SAGEMAKER_TFS_INTRA_OP_PARALLELISM / _INTER_OP_PARALLELISM).

    Every operation runs in the calling thread (a negative inter-op count): a serving call is a few
    small kernels, and handing each to a pool thread and waiting for it cost more than the kernels
    (benchmarks/endpoint_latency.py); concurrent requests run in parallel anyway, one per server
    thread. A kernel may still split its work over `intra_op_threads`, which do not spin while
    idle: every worker process has its own, on the same few cores.
    """
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=-1, intra_op_parallelism_threads=intra_op_threads)
    config.experimental.disable_thread_spinning = True
    return config


class BadTensorRequest(ValueError):
    """A predict request TF Serving would answer with 400 {"error": message}."""


class SavedModelServable:
    """One version of a SavedModel, answering TF Serving REST calls (thread-safe)."""

    def __init__(self, saved_model_dir: str | Path, version: int, intra_op_threads: int = 0) -> None:
        """`intra_op_threads`: 0 lets TensorFlow choose (one per core)."""
        self.version = version
        graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=graph, config=session_config(intra_op_threads))
        with graph.as_default(), _quiet_deprecation():
            meta_graph = tf.compat.v1.saved_model.load(self._session, [SERVE_TAG], str(saved_model_dir))
        if SIGNATURE_NAME not in meta_graph.signature_def:
            raise ValueError(
                f"{saved_model_dir} has no {SIGNATURE_NAME!r} signature "
                f"(found: {', '.join(meta_graph.signature_def) or 'none'})"
            )
        signature = meta_graph.signature_def[SIGNATURE_NAME]
        self.input_specs = {
            name: tf.TensorSpec(_shape(info), tf.as_dtype(info.dtype), name)
            for name, info in sorted(signature.inputs.items())
        }
        self.output_names = sorted(signature.outputs)
        unsupported = [
            name
            for name, spec in self.input_specs.items()
            if not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype.is_bool or spec.dtype == tf.string)
        ]
        if unsupported:
            raise ValueError(f"inputs {unsupported} are neither numbers nor strings, which this endpoint serves")
        # A callable of the session's own C API (what TF Serving's C++ calls), not `make_callable`:
        # with a feed list that one goes through `Session.run`'s Python feed and fetch handling on
        # every call, half of a small model's serving time (benchmarks/endpoint_latency.py).
        self._run = self._session._make_callable_from_options(
            config_pb2.CallableOptions(
                feed=[signature.inputs[name].name for name in self.input_specs],
                fetch=[signature.outputs[name].name for name in self.output_names],
            )
        )
        # The first run builds the graph's kernels; doing it now keeps it out of the first request.
        self.run(
            {
                name: np.full([1 if size is None else size for size in spec.shape], _zero(spec), _numpy_dtype(spec))
                for name, spec in self.input_specs.items()
            }
        )

    def status(self) -> dict:
        """`GET /v1/models/<name>` as TF Serving answers it."""
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def predict(self, body: bytes) -> tuple[int, bytes]:
        """`POST /v1/models/<name>:predict`: (HTTP status, JSON body)."""
        try:
            tensors = self._numeric_rows(body)
            row_format = True
            if tensors is None:
                document = _parse_request(body)
                row_format = "instances" in document
                tensors = (
                    self._row_tensors(document["instances"])
                    if row_format
                    else self._columnar_tensors(document["inputs"])
                )
            outputs = self.run(tensors)
        except BadTensorRequest as error:
            return 400, json.dumps({"error": str(error)}).encode()
        except tf.errors.InvalidArgumentError as error:  # TF Serving reports these as 400 too
            return 400, json.dumps({"error": error.message}).encode()
        answer = _rows_answer(outputs) if row_format else _columns_answer(outputs)
        return 200, json.dumps(answer).encode()

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run of the signature: input name -> array (of the input's dtype) in, output name -> array out."""
        return dict(zip(self.output_names, self._run(*[arrays[name] for name in self.input_specs]), strict=True))

    def _numeric_rows(self, body: bytes) -> dict[str, np.ndarray] | None:
        """`{"instances": [...]}` of numbers for a single float input of a known shape, read with
        numpy when its brackets are exactly those of N rows of that shape; None: read it as JSON."""
        if len(self.input_specs) != 1:
            return None
        ((name, spec),) = self.input_specs.items()
        if not spec.dtype.is_floating or spec.shape.rank is None or None in spec.shape.as_list()[1:]:
            return None
        matched = _ROW_REQUEST.fullmatch(body)
        if matched is None:
            return None
        text = matched[1]
        row = json.dumps(np.zeros(spec.shape.as_list()[1:], int).tolist()).encode().translate(None, b"0 ")
        layout = text.translate(None, _NUMBER_CHARACTERS + _SPACE)
        rows = (len(layout) - 1) // (len(row) + 1)
        if rows < 1 or layout != b"[" + b",".join([row] * rows) + b"]":
            return None
        try:
            values = np.array(text.translate(None, b"[]" + _SPACE).split(b","), dtype=np.float64)
        except ValueError:
            return None
        return {name: values.astype(spec.dtype.as_numpy_dtype).reshape([rows, *spec.shape.as_list()[1:]])}

    def _row_tensors(self, instances) -> dict[str, np.ndarray]:
        if not isinstance(instances, list) or not instances:
            raise BadTensorRequest("'instances' must be a non-empty list of rows")
        if len(self.input_specs) == 1 and not all(_is_named(row) for row in instances):
            (name,) = self.input_specs
            return {name: self._tensor(name, instances)}
        if not all(_is_named(row) and set(row) == set(self.input_specs) for row in instances):
            raise BadTensorRequest(f"every instance must be an object with the inputs {sorted(self.input_specs)}")
        return {name: self._tensor(name, [row[name] for row in instances]) for name in self.input_specs}

    def _columnar_tensors(self, inputs) -> dict[str, np.ndarray]:
        if _is_named(inputs):
            if set(inputs) != set(self.input_specs):
                raise BadTensorRequest(f"'inputs' must name exactly the inputs {sorted(self.input_specs)}")
            return {name: self._tensor(name, value) for name, value in inputs.items()}
        if len(self.input_specs) != 1:
            raise BadTensorRequest(f"'inputs' must be an object naming the inputs {sorted(self.input_specs)}")
        (name,) = self.input_specs
        return {name: self._tensor(name, inputs)}

    def _tensor(self, name: str, value) -> np.ndarray:
        spec = self.input_specs[name]
        if spec.dtype == tf.string:
            return _string_tensor(name, spec, value)
        try:
            array = np.array(value)
        except (ValueError, RecursionError):
            raise BadTensorRequest(f"input {name!r}: the values do not form a rectangular tensor") from None
        kinds = "b" if spec.dtype.is_bool else "iu" if spec.dtype.is_integer else "iuf"
        if array.dtype.kind not in kinds and not _all_python_ints(array, spec):
            raise BadTensorRequest(f"input {name!r}: expected {spec.dtype.name} values, got {_describe_kind(array)}")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                array = array.astype(spec.dtype.as_numpy_dtype)
        except OverflowError:
            raise BadTensorRequest(f"input {name!r}: a value is out of range for {spec.dtype.name}") from None
        if not spec.shape.is_compatible_with(array.shape):
            raise BadTensorRequest(f"input {name!r}: expected shape {_shape_text(spec.shape)}, got {list(array.shape)}")
        return array


def _is_named(value) -> bool:
    """An object of named inputs; not {"b64": "..."}, TF Serving's form of one binary string."""
    return isinstance(value, dict) and not _is_base64(value)


def _is_base64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _zero(spec: tf.TensorSpec):
    return b"" if spec.dtype == tf.string else 0


def _numpy_dtype(spec: tf.TensorSpec):
    return object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype


def _string_tensor(name: str, spec: tf.TensorSpec, value) -> np.ndarray:
    """As TF Serving's json_tensor.cc fills a DT_STRING tensor: a JSON string is its UTF-8 bytes, an
    object {"b64": "..."} its base64-decoded bytes, anything else a type error."""

    def bytes_of(item):
        if isinstance(item, list):
            return [bytes_of(element) for element in item]
        if isinstance(item, str):
            try:
                return item.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escape, which RapidJSON refuses to parse
                raise BadTensorRequest("JSON Parse error: The surrogate pair in string is invalid.") from None
        if _is_base64(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise BadTensorRequest("Unable to base64 decode") from None
        kind = {type(None): "Null", bool: "True" if item else "False", dict: "Object"}.get(type(item), "Number")
        raise BadTensorRequest(f"JSON Value: {json.dumps(item)} Type: {kind} is not of expected type: string")

    converted = bytes_of(value)
    try:
        array = np.array(converted, dtype=object)
    except ValueError:  # lists of different lengths
        array = None
    if array is None or not all(isinstance(item, bytes) for item in array.flat):
        raise BadTensorRequest(f"input {name!r}: the values do not form a rectangular tensor")
    if not spec.shape.is_compatible_with(array.shape):
        raise BadTensorRequest(f"input {name!r}: expected shape {_shape_text(spec.shape)}, got {list(array.shape)}")
    return array


def _shape(info) -> list[int | None] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return [None if dim.size < 0 else dim.size for dim in info.tensor_shape.dim]


@contextmanager
def _quiet_deprecation():
    """Loading a SavedModel as TF Serving does is TensorFlow's v1 API, which logs a deprecation
    warning; the endpoint's log is for requests."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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
    return (
        array.dtype.kind == "O"
        and spec.dtype.is_floating
        and all(isinstance(item, int) and not isinstance(item, bool) for item in array.flat)
    )


def _describe_kind(array: np.ndarray) -> str:
    return {"b": "true/false", "U": "strings", "S": "strings", "O": "nulls or objects"}.get(
        array.dtype.kind, array.dtype.name
    )


def _shape_text(shape: tf.TensorShape) -> str:
    return "[" + ", ".join("-1" if size is None else str(size) for size in shape) + "]"


def _rows_answer(outputs: dict[str, np.ndarray]) -> dict:
    if len(outputs) == 1:
        (values,) = outputs.values()
        return {"predictions": values.tolist()}
    columns = {name: values.tolist() for name, values in outputs.items()}
    batch = len(next(iter(columns.values())))
    return {"predictions": [{name: column[index] for name, column in columns.items()} for index in range(batch)]}


def _columns_answer(outputs: dict[str, np.ndarray]) -> dict:
    if len(outputs) == 1:
        (values,) = outputs.values()
        return {"outputs": values.tolist()}
    return {"outputs": {name: values.tolist() for name, values in outputs.items()}}
