"""Request and response handling for SageMaker's TensorFlow Serving container.

Training copies this file verbatim into every model artifact as `code/inference.py`, beside the
`serving.json` it writes. The container imports it by path and, per request, calls
`input_handler(data, context)` (request body stream -> TensorFlow Serving REST JSON), POSTs the
result to `context.rest_uri` (`/v1/models/<name>:predict`), then calls
`output_handler(response, context)` (the `requests.Response` -> `(body, content_type)`).

What a request may hold depends on the `request_form` that the model's task wrote into
`serving.json` (training/tasks/ holds the tasks; each picks one form of each kind):
- image:    a PNG/JPEG image, or TF Serving JSON of shape [N, H, W, C]
- window:   JSON list of values or of rows, or CSV (one observation per line), the most recent
            `window` observations; or TF Serving JSON [N, window, n_features]
- rows:     CSV rows, JSON {"rows": [[...], ...]} or a bare list of rows, or TF Serving JSON [N, n_features]
- sequence: 1 to `max_length` frames of `n_features` numbers, as a JSON list of frames or CSV (a
            frame per line), zero-padded here; or TF Serving JSON [N, max_length, n_features], padded
The answer is always JSON: {"predictions": [one object per row]}, shaped by the `answer_form`.

Every bad request raises `InvalidInput`, whose message says what was wrong and what is expected.
The container turns ANY handler exception into HTTP 500 {"error": str(e)}; `http_status` is
there for endpoints that can answer with a 4xx (the project's local endpoint does).

Only the standard library and the packages pinned in requirements.txt may be imported here:
nothing else from the project exists inside the container.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# SageMaker's real-time InvokeEndpoint limit: anything larger never reaches a real endpoint.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# A PNG within the payload limit can still decode to gigabytes; the size is checked before decoding.
MAX_IMAGE_PIXELS = 4096 * 4096

JSON = "application/json"
CSV = "text/csv"
PNG = "image/png"
JPEG = "image/jpeg"

# What serving.json must hold for each form, besides input_name, input_shape and outputs.
REQUEST_FIELDS = {
    "image": (),
    "window": ("window", "n_features"),
    "rows": ("n_features",),
    "sequence": ("max_length", "n_features"),
}
ANSWER_FIELDS = {"classes": ("class_names",), "forecast": (), "anomaly": ()}
ANSWER_OUTPUTS = {
    "classes": ("probabilities",),
    "forecast": ("forecast",),
    "anomaly": ("reconstruction_error", "threshold", "embedding"),
}
INPUT_DTYPES = ("float32", "int64")


class InvalidInput(ValueError):
    """A request this model cannot serve. `http_status`: 400 bad data, 413 too large, 415 content type."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


def check_serving_config(config: dict) -> dict:
    """`config` if this handler can serve it, else RuntimeError naming what is missing or unknown."""
    request_form, answer_form = config.get("request_form"), config.get("answer_form")
    if request_form not in REQUEST_FIELDS:
        raise RuntimeError(f"serving.json: unknown request_form {request_form!r} (known: {', '.join(REQUEST_FIELDS)})")
    if answer_form not in ANSWER_FIELDS:
        raise RuntimeError(f"serving.json: unknown answer_form {answer_form!r} (known: {', '.join(ANSWER_FIELDS)})")
    required = {"task", "input_name", "input_shape", "outputs", "content_types"}
    required |= set(REQUEST_FIELDS[request_form]) | set(ANSWER_FIELDS[answer_form])
    missing = sorted(required - set(config))
    if missing:
        raise RuntimeError(f"serving.json: task {config.get('task')} needs {', '.join(missing)}")
    if not set(ANSWER_OUTPUTS[answer_form]) <= set(config["outputs"]):
        raise RuntimeError(
            f"serving.json: answer_form {answer_form} needs outputs "
            f"{', '.join(ANSWER_OUTPUTS[answer_form])}, got {config['outputs']}"
        )
    if config.get("input_dtype", "float32") not in INPUT_DTYPES:
        raise RuntimeError(
            f"serving.json: input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {config['input_dtype']!r}"
        )
    if request_form == "image" and (len(config["input_shape"]) != 3 or config["input_shape"][2] not in (1, 3)):
        raise RuntimeError(f"serving.json: image input_shape must be [H, W, 1 or 3], got {config['input_shape']}")
    return config


# Checked once, so that a broken artifact fails at container start, not per request.
SERVING = check_serving_config(json.loads(Path(__file__).with_name("serving.json").read_text()))
TASK: str = SERVING["task"]
INPUT_NAME: str = SERVING["input_name"]
REQUEST_FORM: str = SERVING["request_form"]
ANSWER_FORM: str = SERVING["answer_form"]
INPUT_DTYPE: str = SERVING.get("input_dtype", "float32")
ROW_SHAPE = tuple(int(size) for size in SERVING["input_shape"])
ACCEPTED_CONTENT_TYPES = tuple(SERVING["content_types"])
OUTPUT_NAMES = tuple(SERVING["outputs"])
_SHAPE_TEXT = "[N, " + ", ".join(str(size) for size in ROW_SHAPE) + "]"


# ---------------------------------------------------------------------------------------- input


def input_handler(data, context) -> str:
    """The request body stream -> TensorFlow Serving REST JSON for this model's `serving_default`."""
    body = _read_body(data, context.content_length)
    content_type = _media_type(context.request_content_type)
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise InvalidInput(
            f"content type {content_type!r} is not accepted by this {TASK}; "
            f"send one of: {', '.join(ACCEPTED_CONTENT_TYPES)}",
            415,
        )
    if content_type in (PNG, JPEG):
        key, batch = "instances", _decode_image(body)[np.newaxis]
    elif content_type == CSV:
        key, batch = "instances", _friendly_batch(_parse_csv(body), from_csv=True)
    else:
        document = _parse_json(body)
        if isinstance(document, dict) and ("instances" in document or "inputs" in document):
            key, batch = _tf_serving_batch(document)
        else:
            key, batch = "instances", _friendly_batch(document, from_csv=False)
    return json.dumps({key: _in_input_dtype(batch).tolist()})


def _read_body(data, content_length) -> bytes:
    too_large = (
        f"the request body is larger than {MAX_PAYLOAD_BYTES} bytes "
        f"(SageMaker's real-time payload limit); send fewer rows or a smaller image"
    )
    if content_length is not None and int(content_length) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(too_large, 413)
    body = data.read(MAX_PAYLOAD_BYTES + 1)
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(too_large, 413)
    if not body:
        raise InvalidInput(f"the request body is empty; send {_expected_input()}")
    return body


def _media_type(content_type: str | None) -> str:
    # The container defaults a missing Content-Type to JSON; parameters such as charset do not matter.
    return (content_type or JSON).split(";", 1)[0].strip().lower()


def _expected_input() -> str:
    instances = f'JSON {{"instances": [...]}} of shape {_SHAPE_TEXT}'
    if REQUEST_FORM == "image":
        return f"a PNG or JPEG image, or {instances} (raw pixel values 0..255)"
    if REQUEST_FORM == "window":
        window, n_features = SERVING["window"], SERVING["n_features"]
        observation = "a number" if n_features == 1 else f"a row of {n_features} numbers"
        return f"the most recent {window} observations (each {observation}) as a JSON list or CSV lines, or {instances}"
    if REQUEST_FORM == "sequence":
        return (
            f"one sequence of 1 to {SERVING['max_length']} frames of {SERVING['n_features']} numbers "
            f"as a JSON list of frames or CSV lines, or {instances} (zero-padded)"
        )
    return (
        f'rows of {SERVING["n_features"]} numbers as CSV lines, JSON {{"rows": [[...], ...]}} '
        f"or a JSON list of rows, or {instances}"
    )


def _parse_json(body: bytes):
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidInput("the JSON body is nested too deeply") from None
    except ValueError as error:  # also UnicodeDecodeError: the body is not UTF-8 text
        raise InvalidInput(f"the body is not valid JSON ({error}); send {_expected_input()}") from None


def _numeric_array(value, what: str) -> np.ndarray:
    """A float32 array of `value` (nested JSON lists), or InvalidInput saying what is wrong with it."""
    try:
        array = np.array(value)
    except (ValueError, RecursionError):
        raise InvalidInput(
            f"{what} is not a rectangular array of numbers (rows of different lengths, "
            f"or nested too deeply); expected {_expected_input()}"
        ) from None
    if array.dtype.kind == "O":
        # Integers beyond int64 and nulls land here; only the integers can be numbers.
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in array.flat):
            raise InvalidInput(
                f"{what} must hold only numbers (found null, an object or a nested mix); expected {_expected_input()}"
            )
    elif array.dtype.kind not in "iuf":
        found = {"b": "true/false", "U": "text", "S": "text"}.get(array.dtype.kind, array.dtype.name)
        raise InvalidInput(f"{what} must hold only numbers, found {found}; expected {_expected_input()}")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = array.astype(np.float32)
    except OverflowError:
        array = np.array([np.inf], dtype=np.float32)  # an integer too large even for float64
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what} contains NaN, infinity or a number beyond float32's range (±3.4e38)")
    return array


def _tf_serving_batch(document: dict) -> tuple[str, np.ndarray]:
    """TF Serving's own request format, checked against the signature before it is passed on."""
    unknown = sorted(set(document) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise InvalidInput(
            f"unknown key(s) {', '.join(map(repr, unknown))}; TensorFlow Serving requests "
            f"hold 'instances' or 'inputs' and optionally 'signature_name'"
        )
    if "instances" in document and "inputs" in document:
        raise InvalidInput("send either 'instances' (rows) or 'inputs' (columns), not both")
    if document.get("signature_name", "serving_default") != "serving_default":
        raise InvalidInput(f"signature {document['signature_name']!r} does not exist; this model has 'serving_default'")
    key = "instances" if "instances" in document else "inputs"
    value = document[key]
    # TF Serving lets a single-input model name its input: per row, or once for the columns.
    if key == "instances" and isinstance(value, list) and value and isinstance(value[0], dict):
        value = [_unwrap_named(row) for row in value]
    elif key == "inputs" and isinstance(value, dict):
        value = _unwrap_named(value)
    batch = _numeric_array(value, f"'{key}'")
    if batch.ndim == 0 or batch.shape[1:] != ROW_SHAPE or batch.shape[0] == 0:
        raise InvalidInput(f"'{key}' has shape {list(batch.shape)}; this model takes {_SHAPE_TEXT} with N >= 1")
    return key, batch


def _unwrap_named(named) -> object:
    if not isinstance(named, dict) or set(named) != {INPUT_NAME}:
        raise InvalidInput(f"a named input must be an object with the single key {INPUT_NAME!r}")
    return named[INPUT_NAME]


def _friendly_batch(document, from_csv: bool) -> np.ndarray:
    """The person-friendly JSON/CSV forms -> a batch for the signature."""
    if REQUEST_FORM == "image":
        raise InvalidInput(f"this {TASK} takes {_expected_input()}")
    if REQUEST_FORM == "rows" and isinstance(document, dict) and set(document) == {"rows"}:
        document = document["rows"]
    if not isinstance(document, (list, np.ndarray)):
        raise InvalidInput(f"expected {_expected_input()}")
    values = np.asarray(document) if from_csv else _numeric_array(document, "the data")
    if REQUEST_FORM == "window":
        return _forecast_window(values, from_csv)[np.newaxis]
    if REQUEST_FORM == "sequence":
        return _padded_sequence(values)[np.newaxis]
    return _feature_rows(values)


def _forecast_window(series: np.ndarray, from_csv: bool) -> np.ndarray:
    window, n_features = int(SERVING["window"]), int(SERVING["n_features"])
    if n_features == 1 and series.ndim == 1:
        series = series[:, np.newaxis]
    elif n_features == 1 and from_csv and series.shape[0] == 1:
        series = series.T  # one CSV line of values is the series itself, not one observation
    if series.ndim != 2 or series.shape[1] != n_features:
        raise InvalidInput(f"the series has shape {list(series.shape)}; expected {_expected_input()}")
    if series.shape[0] < window:
        raise InvalidInput(f"got {series.shape[0]} observations; the model needs the most recent {window}")
    return series[-window:]


def _padded_sequence(frames: np.ndarray) -> np.ndarray:
    max_length, n_features = int(SERVING["max_length"]), int(SERVING["n_features"])
    if frames.ndim != 2 or frames.shape[1] != n_features:
        raise InvalidInput(f"the sequence has shape {list(frames.shape)}; expected {_expected_input()}")
    if not 1 <= frames.shape[0] <= max_length:
        raise InvalidInput(f"got {frames.shape[0]} frames; the model takes 1 to {max_length}")
    empty = np.flatnonzero(~frames.any(axis=1))
    if empty.size:
        raise InvalidInput(
            f"frame {int(empty[0]) + 1} is all zeros, which the model reads as padding; send only real frames"
        )
    padded = np.zeros((max_length, n_features), dtype=np.float32)
    padded[: frames.shape[0]] = frames
    return padded


def _in_input_dtype(batch: np.ndarray) -> np.ndarray:
    if INPUT_DTYPE == "int64" and not (np.array_equal(batch, np.round(batch)) and np.abs(batch).max() < 2**62):
        raise InvalidInput("this model takes integers (int64); the request holds other numbers")
    return batch.astype(INPUT_DTYPE)


def _feature_rows(rows: np.ndarray) -> np.ndarray:
    (n_features,) = ROW_SHAPE
    if rows.ndim == 1:
        rows = rows[np.newaxis]
    if rows.ndim != 2 or rows.shape[1] != n_features or rows.shape[0] == 0:
        raise InvalidInput(f"the rows have shape {list(rows.shape)}; expected {_expected_input()}")
    return rows


def _parse_csv(body: bytes) -> np.ndarray:
    """CSV lines of numbers; a first line that is not all numbers is taken as a header."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV body is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as error:
        raise InvalidInput(f"unreadable CSV: {error}") from None
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise InvalidInput(
            f"the CSV holds no data rows (a first line that is not all numbers is a header); "
            f"expected {_expected_input()}"
        )
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise InvalidInput(f"CSV line {line} has {len(row)} columns, the first data line has {width}")
        for cell in row:
            if not _is_number(cell):
                raise InvalidInput(f"CSV line {line}: {cell.strip()[:40]!r} is not a number")
    return _numeric_array([[float(cell) for cell in row] for _, row in rows], "the CSV")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _decode_image(body: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> [H, W, C] float32 raw pixel values in the model's size and channels."""
    height, width, channels = ROW_SHAPE
    try:
        image = Image.open(io.BytesIO(body), formats=("PNG", "JPEG"))
    except UnidentifiedImageError:
        raise InvalidInput(f"the body is not a PNG or JPEG image; send {_expected_input()}") from None
    except Exception as error:
        raise InvalidInput(
            f"the body is not a readable PNG or JPEG image ({type(error).__name__}: {error}); send {_expected_input()}"
        ) from None
    with image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InvalidInput(
                f"the image is {image.width}x{image.height} pixels; at most "
                f"{MAX_IMAGE_PIXELS} pixels are accepted (the model uses {width}x{height})"
            )
        try:
            # Via RGB, so every mode (CMYK, palette, alpha, 16-bit) converts; none if already right.
            converted = image if image.mode in ("L", "RGB") else image.convert("RGB")
            if converted.mode != (model_mode := "L" if channels == 1 else "RGB"):
                converted = converted.convert(model_mode)
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.float32)
        except Exception as error:
            raise InvalidInput(
                f"the image could not be decoded ({type(error).__name__}: {error}); send a complete PNG or JPEG file"
            ) from None
    return pixels.reshape(height, width, channels)


# --------------------------------------------------------------------------------------- output


def output_handler(response, context) -> tuple[str, str]:
    """TensorFlow Serving's `requests.Response` -> (JSON body, content type) a person can read."""
    if response.status_code != 200:
        raise _serving_error(response)
    outputs = _output_arrays(json.loads(response.content))
    rows = {"classes": _classifications, "forecast": _forecasts, "anomaly": _anomaly_scores}[ANSWER_FORM](outputs)
    return json.dumps({"predictions": rows}), JSON


def _serving_error(response) -> Exception:
    try:
        message = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    if response.status_code == 400:
        return InvalidInput(f"TensorFlow Serving rejected the input: {message}")
    return RuntimeError(f"TensorFlow Serving answered HTTP {response.status_code}: {message}")


def _output_arrays(document: dict) -> dict[str, np.ndarray]:
    """Both TF Serving answer formats: rows ("predictions") or columns ("outputs").

    With one output TF Serving gives bare values; with several, an object per row (or column set).
    """
    if "predictions" in document:
        rows = document["predictions"]
        return {
            name: np.asarray([row[name] if isinstance(row, dict) else row for row in rows]) for name in OUTPUT_NAMES
        }
    columns = document["outputs"]
    if not isinstance(columns, dict):
        columns = {OUTPUT_NAMES[0]: columns}
    return {name: np.asarray(columns[name]) for name in OUTPUT_NAMES}


def _classifications(outputs: dict[str, np.ndarray]) -> list[dict]:
    class_names = [str(name) for name in SERVING["class_names"]]
    probabilities = outputs["probabilities"]
    if probabilities.shape[-1] != len(class_names):
        raise RuntimeError(
            f"the model gives {probabilities.shape[-1]} probabilities but serving.json names {len(class_names)} classes"
        )
    return [
        {
            "label": class_names[int(np.argmax(row))],
            "probabilities": {name: float(p) for name, p in zip(class_names, row, strict=True)},
        }
        for row in probabilities
    ]


def _forecasts(outputs: dict[str, np.ndarray]) -> list[dict]:
    return [{"forecast": row.tolist()} for row in outputs["forecast"]]


def _anomaly_scores(outputs: dict[str, np.ndarray]) -> list[dict]:
    return [
        {
            "reconstruction_error": float(error),
            "threshold": float(threshold),
            "is_anomaly": bool(error > threshold),
            "embedding": embedding.tolist(),
        }
        for error, threshold, embedding in zip(
            outputs["reconstruction_error"], outputs["threshold"], outputs["embedding"], strict=True
        )
    ]
