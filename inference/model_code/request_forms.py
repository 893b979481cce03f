"""How `inference.py` reads a request body: each request form's parsing and checks.

Shipped beside `inference.py` in the model artifact's `code/` and loaded by it by path, so it runs
in SageMaker's TensorFlow Serving container with the standard library and `code/lib` (numpy,
Pillow) only: text is decoded and split with the standard library alone. Stateless: a
`RequestReader` holds one model's `serving.json`.

Every bad request raises `InvalidInput`, whose message says what was wrong and what is expected.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json

import numpy as np
from PIL import Image, UnidentifiedImageError

# SageMaker's real-time InvokeEndpoint limit: anything larger never reaches a real endpoint.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# A PNG within the payload limit can still decode to gigabytes; the size is checked before decoding.
MAX_IMAGE_PIXELS = 4096 * 4096

JSON = "application/json"
CSV = "text/csv"
PLAIN = "text/plain"
PNG = "image/png"
JPEG = "image/jpeg"
# What a JSON value that is not a string is, in a message.
_JSON_KINDS = {bool: "true/false", type(None): "null", list: "a list", dict: "an object"}


class InvalidInput(ValueError):
    """A request this model cannot serve: the client's to fix, not the model's failure."""


class RequestReader:
    """The request forms of one model: its serving.json's request_form, shape, dtype and types."""

    def __init__(self, serving: dict) -> None:
        self.serving = serving
        self.task: str = serving["task"]
        self.input_name: str = serving["input_name"]
        self.request_form: str = serving["request_form"]
        self.input_dtype: str = serving.get("input_dtype", "float32")
        self.row_shape = tuple(int(size) for size in serving["input_shape"])
        self.accepted_content_types = tuple(serving["content_types"])
        self.shape_text = "[N, " + ", ".join(str(size) for size in self.row_shape) + "]"

    def tf_serving_json(self, data, context) -> str:
        """The request body stream -> TensorFlow Serving REST JSON for the model's `serving_default`."""
        body = self._read_body(data, context.content_length)
        content_type = _media_type(context.request_content_type)
        if content_type not in self.accepted_content_types:
            raise InvalidInput(
                f"content type {content_type!r} is not accepted by this {self.task}; "
                f"send one of: {', '.join(self.accepted_content_types)}"
            )
        if self.request_form == "text":
            key, texts = self._texts(body, content_type)
            return json.dumps({key: texts})
        if content_type in (PNG, JPEG):
            key, batch = "instances", self._decode_image(body)[np.newaxis]
        elif content_type == CSV:
            key, batch = "instances", self._friendly_batch(self._parse_csv(body), from_csv=True)
        else:
            document = self._parse_json(body)
            if isinstance(document, dict) and ("instances" in document or "inputs" in document):
                key, batch = self._tf_serving_batch(document)
            else:
                key, batch = "instances", self._friendly_batch(document, from_csv=False)
        return json.dumps({key: self._in_input_dtype(batch).tolist()})

    def _read_body(self, data, content_length) -> bytes:
        too_large = (
            f"the request body is larger than {MAX_PAYLOAD_BYTES} bytes "
            f"(SageMaker's real-time payload limit); send fewer rows or a smaller image"
        )
        if content_length is not None and int(content_length) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(too_large)
        body = data.read(MAX_PAYLOAD_BYTES + 1)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(too_large)
        if not body:
            raise InvalidInput(f"the request body is empty; send {self.expected_input()}")
        return body

    def expected_input(self) -> str:
        instances = f'JSON {{"instances": [...]}} of shape {self.shape_text}'
        if self.request_form == "image":
            return f"a PNG or JPEG image, or {instances} (raw pixel values 0..255)"
        if self.request_form == "window":
            window, n_features = self.serving["window"], self.serving["n_features"]
            observation = "a number" if n_features == 1 else f"a row of {n_features} numbers"
            return (
                f"the most recent {window} observations (each {observation}) as a JSON list or CSV lines, "
                f"or {instances}"
            )
        if self.request_form == "sequence":
            return (
                f"one sequence of 1 to {self.serving['max_length']} frames of {self.serving['n_features']} "
                f"numbers as a JSON list of frames or CSV lines, or {instances} (zero-padded)"
            )
        if self.request_form == "text":
            return (
                f'texts as JSON {{"instances": ["...", ...]}}, a JSON list of texts or one JSON string, CSV '
                f"(a text per record, quoted if it holds a comma) or plain text (a text per line); UTF-8, "
                f"at most {self.serving['max_characters']} characters each"
            )
        return (
            f'rows of {self.serving["n_features"]} numbers as CSV lines, JSON {{"rows": [[...], ...]}} '
            f"or a JSON list of rows, or {instances}"
        )

    def _parse_json(self, body: bytes):
        try:
            return json.loads(body)
        except RecursionError:
            raise InvalidInput("the JSON body is nested too deeply") from None
        except ValueError as error:  # also UnicodeDecodeError: the body is not UTF-8 text
            raise InvalidInput(f"the body is not valid JSON ({error}); send {self.expected_input()}") from None

    def _numeric_array(self, value, what: str) -> np.ndarray:
        """A float32 array of `value` (nested JSON lists), or InvalidInput saying what is wrong with it."""
        try:
            array = np.array(value)
        except (ValueError, RecursionError):
            raise InvalidInput(
                f"{what} is not a rectangular array of numbers (rows of different lengths, "
                f"or nested too deeply); expected {self.expected_input()}"
            ) from None
        if array.dtype.kind == "O":
            # Integers beyond int64 and nulls land here; only the integers can be numbers.
            if not all(isinstance(item, int) and not isinstance(item, bool) for item in array.flat):
                raise InvalidInput(
                    f"{what} must hold only numbers (found null, an object or a nested mix); "
                    f"expected {self.expected_input()}"
                )
        elif array.dtype.kind not in "iuf":
            found = {"b": "true/false", "U": "text", "S": "text"}.get(array.dtype.kind, array.dtype.name)
            raise InvalidInput(f"{what} must hold only numbers, found {found}; expected {self.expected_input()}")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                array = array.astype(np.float32)
        except OverflowError:
            array = np.array([np.inf], dtype=np.float32)  # an integer too large even for float64
        if not np.isfinite(array).all():
            raise InvalidInput(f"{what} contains NaN, infinity or a number beyond float32's range (±3.4e38)")
        return array

    def _tf_serving_batch(self, document: dict) -> tuple[str, np.ndarray]:
        """TF Serving's own request format, checked against the signature before it is passed on."""
        key, value = self._tf_serving_value(document)
        batch = self._numeric_array(value, f"'{key}'")
        if batch.ndim == 0 or batch.shape[1:] != self.row_shape or batch.shape[0] == 0:
            raise InvalidInput(f"'{key}' has shape {list(batch.shape)}; this model takes {self.shape_text} with N >= 1")
        return key, batch

    def _tf_serving_value(self, document: dict) -> tuple[str, object]:
        """('instances' or 'inputs', its value with a named input unwrapped) of a TF Serving request."""
        unknown = sorted(set(document) - {"instances", "inputs", "signature_name"})
        if unknown:
            raise InvalidInput(
                f"unknown key(s) {', '.join(map(repr, unknown))}; TensorFlow Serving requests "
                f"hold 'instances' or 'inputs' and optionally 'signature_name'"
            )
        if "instances" in document and "inputs" in document:
            raise InvalidInput("send either 'instances' (rows) or 'inputs' (columns), not both")
        if document.get("signature_name", "serving_default") != "serving_default":
            raise InvalidInput(
                f"signature {document['signature_name']!r} does not exist; this model has 'serving_default'"
            )
        key = "instances" if "instances" in document else "inputs"
        value = document[key]
        # TF Serving lets a single-input model name its input: per row, or once for the columns. An
        # object {"b64": ...} is a value, TF Serving's form of a binary string.
        if key == "instances" and isinstance(value, list) and value and _is_named(value[0]):
            value = [self._unwrap_named(row) for row in value]
        elif key == "inputs" and _is_named(value):
            value = self._unwrap_named(value)
        return key, value

    def _unwrap_named(self, named) -> object:
        if not isinstance(named, dict) or set(named) != {self.input_name}:
            raise InvalidInput(f"a named input must be an object with the single key {self.input_name!r}")
        return named[self.input_name]

    def _friendly_batch(self, document, from_csv: bool) -> np.ndarray:
        """The person-friendly JSON/CSV forms -> a batch for the signature."""
        if self.request_form == "image":
            raise InvalidInput(f"this {self.task} takes {self.expected_input()}")
        if self.request_form == "rows" and isinstance(document, dict) and set(document) == {"rows"}:
            document = document["rows"]
        if not isinstance(document, (list, np.ndarray)):
            raise InvalidInput(f"expected {self.expected_input()}")
        values = np.asarray(document) if from_csv else self._numeric_array(document, "the data")
        if self.request_form == "window":
            return self._forecast_window(values, from_csv)[np.newaxis]
        if self.request_form == "sequence":
            return self._padded_sequence(values)[np.newaxis]
        return self._feature_rows(values)

    def _forecast_window(self, series: np.ndarray, from_csv: bool) -> np.ndarray:
        window, n_features = int(self.serving["window"]), int(self.serving["n_features"])
        if n_features == 1 and series.ndim == 1:
            series = series[:, np.newaxis]
        elif n_features == 1 and from_csv and series.shape[0] == 1:
            series = series.T  # one CSV line of values is the series itself, not one observation
        if series.ndim != 2 or series.shape[1] != n_features:
            raise InvalidInput(f"the series has shape {list(series.shape)}; expected {self.expected_input()}")
        if series.shape[0] < window:
            raise InvalidInput(f"got {series.shape[0]} observations; the model needs the most recent {window}")
        return series[-window:]

    def _padded_sequence(self, frames: np.ndarray) -> np.ndarray:
        max_length, n_features = int(self.serving["max_length"]), int(self.serving["n_features"])
        if frames.ndim != 2 or frames.shape[1] != n_features:
            raise InvalidInput(f"the sequence has shape {list(frames.shape)}; expected {self.expected_input()}")
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

    def _in_input_dtype(self, batch: np.ndarray) -> np.ndarray:
        if self.input_dtype == "int64" and not (np.array_equal(batch, np.round(batch)) and np.abs(batch).max() < 2**62):
            raise InvalidInput("this model takes integers (int64); the request holds other numbers")
        return batch.astype(self.input_dtype)

    def _feature_rows(self, rows: np.ndarray) -> np.ndarray:
        (n_features,) = self.row_shape
        if rows.ndim == 1:
            rows = rows[np.newaxis]
        if rows.ndim != 2 or rows.shape[1] != n_features or rows.shape[0] == 0:
            raise InvalidInput(f"the rows have shape {list(rows.shape)}; expected {self.expected_input()}")
        return rows

    def _parse_csv(self, body: bytes) -> np.ndarray:
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
                f"expected {self.expected_input()}"
            )
        width = len(rows[0][1])
        for line, row in rows:
            if len(row) != width:
                raise InvalidInput(f"CSV line {line} has {len(row)} columns, the first data line has {width}")
            for cell in row:
                if not _is_number(cell):
                    raise InvalidInput(f"CSV line {line}: {cell.strip()[:40]!r} is not a number")
        return self._numeric_array([[float(cell) for cell in row] for _, row in rows], "the CSV")

    def _decode_image(self, body: bytes) -> np.ndarray:
        """PNG/JPEG bytes -> [H, W, C] float32 raw pixel values in the model's size and channels."""
        height, width, channels = self.row_shape
        try:
            image = Image.open(io.BytesIO(body), formats=("PNG", "JPEG"))
        except UnidentifiedImageError:
            raise InvalidInput(f"the body is not a PNG or JPEG image; send {self.expected_input()}") from None
        except Exception as error:
            raise InvalidInput(
                f"the body is not a readable PNG or JPEG image ({type(error).__name__}: {error}); "
                f"send {self.expected_input()}"
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
                    f"the image could not be decoded ({type(error).__name__}: {error}); "
                    f"send a complete PNG or JPEG file"
                ) from None
        return pixels.reshape(height, width, channels)

    # ------------------------------------------------------------------------------ text

    def _texts(self, body: bytes, content_type: str) -> tuple[str, list[str]]:
        """('instances' or 'inputs', the texts) of a text request, each checked."""
        key = "instances"
        if content_type == JSON:
            document = self._parse_json(body)
            if isinstance(document, dict) and ("instances" in document or "inputs" in document):
                key, values = self._tf_serving_value(document)
                if not isinstance(values, list):
                    raise InvalidInput(f"'{key}' must be a list of texts; expected {self.expected_input()}")
            elif isinstance(document, list | str):
                values = document if isinstance(document, list) else [document]
            else:
                raise InvalidInput(f"expected {self.expected_input()}")
        else:
            text = _utf8(body)
            values = _csv_texts(text) if content_type == CSV else [line for line in text.splitlines() if line.strip()]
        if not values:
            raise InvalidInput(f"the request holds no text; send {self.expected_input()}")
        return key, [self._checked_text(value, number) for number, value in enumerate(values, start=1)]

    def _checked_text(self, value, number: int) -> str:
        """One text as TF Serving is sent it, or InvalidInput naming the text and its problem."""
        if _is_base64(value):  # TF Serving's form of binary strings
            try:
                decoded = base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"text {number}: its 'b64' value is not valid base64") from None
            value = _utf8(decoded, f"text {number} (base64)")
        if not isinstance(value, str):
            found = _JSON_KINDS.get(type(value), "a number")
            raise InvalidInput(f"text {number} is {found}, not a string; expected {self.expected_input()}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"text {number} is not valid Unicode (it holds a lone surrogate)") from None
        if not value.strip():
            raise InvalidInput(f"text {number} is empty (white space only); send text to classify")
        limit = int(self.serving["max_characters"])
        if len(value) > limit:
            raise InvalidInput(f"text {number} has {len(value)} characters; at most {limit} are accepted per text")
        return value


def _is_named(value) -> bool:
    return isinstance(value, dict) and not _is_base64(value)


def _is_base64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)


def _utf8(body: bytes, what: str = "the body") -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"{what} is not UTF-8 text (byte 0x{body[error.start]:02x} at position {error.start}); send UTF-8"
        ) from None


def _csv_texts(text: str) -> list[str]:
    """A text per CSV record (one field each; blank records skipped)."""
    reader = csv.reader(io.StringIO(text))
    texts = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 1:
                raise InvalidInput(
                    f"CSV line {reader.line_num} has {len(row)} fields; send one text per record, "
                    f"quoted if it holds a comma"
                )
            texts.append(row[0])
    except csv.Error as error:
        raise InvalidInput(f"unreadable CSV: {error}") from None
    return texts


def _media_type(content_type: str | None) -> str:
    # The container defaults a missing Content-Type to JSON; parameters such as charset do not matter.
    return (content_type or JSON).split(";", 1)[0].strip().lower()


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
