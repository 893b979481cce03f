"""How `inference.py` reads and answers a batch transform's mini-batch: one record per line.

Shipped beside `inference.py` in the model artifact's `code/` and loaded by it by path, like
`request_forms.py`: the standard library and `code/lib` (numpy) only.

SageMaker sets `SAGEMAKER_BATCH=true` in the container of a batch transform job (Developer Guide,
"Use Your Own Inference Code with Batch Transform"), and with `SplitType: Line` and
`BatchStrategy: MultiRecord` it POSTs as many of an object's lines as fit in `MaxPayloadInMB`,
joined by newlines, to `/invocations`. With `JoinSource: Input` it then splits the answer into
lines and joins line k of the answer to record k of the request, so the answer must hold exactly
one line per record, in order.

A record is one model input, as SageMaker's TF Serving container reads a line by default
(`tensorflowServing.js`: each `application/jsonlines` or `text/csv` line is one instance):
- `application/jsonlines`: a JSON value per line: the input in its shape (`[28, 28, 1]` nested
  lists), flat (its values in row-major order), named (`{"<input name>": ...}`), or a form's
  single-example JSON (a window's observations, a sequence's frames);
- `text/csv`: the input's values flattened in row-major order (a window's or a sequence's
  frames one after the other), no header line;
- a text model's record: a JSON string per line, or a CSV line of one field (quoted if it holds
  a comma), each checked as a real-time text is.
The answer follows the `Accept` header: `application/jsonlines` gives one JSON answer per line;
`text/csv` one CSV line per record holding that JSON answer as a single quoted field (so that a
CSV join appends one column whatever the task answers); anything else the real-time document.

A record the model cannot take fails the whole request with `InvalidInput` naming the record's
position in the request (`record 3 of 200: ...`); SageMaker then fails the object.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re

import numpy as np

JSON_LINES = "application/jsonlines"
CSV = "text/csv"
LINE_TYPES = (JSON_LINES, CSV)
DEFAULT_MAX_PAYLOAD_MB = 6  # SageMaker's default MaxPayloadInMB
MEGABYTE = 1024 * 1024
# A JSON Lines record that is only numbers in brackets is read without building Python lists.
_NUMBERS_IN_BRACKETS = re.compile(rb"[\[\],\s0-9eE+\-.]+")
_NUMBER_OR_SPACE = b"0123456789eE+-. \t\r\n"


def in_batch_transform() -> bool:
    """Whether this container serves a batch transform job (SageMaker sets SAGEMAKER_BATCH)."""
    return os.environ.get("SAGEMAKER_BATCH", "").strip().lower() == "true"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class BatchRequests:
    """The mini-batches of one model: `reader` is its `request_forms.RequestReader`."""

    def __init__(self, reader, invalid_input: type[Exception]) -> None:
        self.reader = reader
        self.invalid_input = invalid_input
        self.size = math.prod(reader.row_shape)
        # The brackets and commas of one input written in its shape, or flat: a record whose own
        # are the same is a regular array of exactly that shape.
        self._layouts = {
            JSON_LINES: {_layout(reader.row_shape), _layout((self.size,))},
            CSV: {b"," * (self.size - 1)},  # a CSV line of the input's values, flat
        }
        # One input's JSON around its numbers: the text between one number and the next.
        self._between_numbers = json.dumps(np.zeros(reader.row_shape, dtype=int).tolist(), separators=(",", ":")).split(
            "0"
        )

    @staticmethod
    def reads(content_type: str | None) -> bool:
        return in_batch_transform() and media_type(content_type) in LINE_TYPES

    def tf_serving_json(self, data, context) -> str:
        """A mini-batch's body stream -> TensorFlow Serving REST JSON of one instance per line."""
        limit = int(os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB") or DEFAULT_MAX_PAYLOAD_MB) * MEGABYTE
        body = data.read(limit + 1)
        if len(body) > limit:
            raise self.invalid_input(f"the mini-batch is larger than MaxPayloadInMB ({limit} bytes)")
        lines = body.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the newline that ends the last record
        if not lines:
            raise self.invalid_input("the mini-batch holds no record")
        lines = [line.rstrip(b"\r") for line in lines]
        json_lines = media_type(context.request_content_type) == JSON_LINES
        if self.reader.request_form == "text":
            return json.dumps({"instances": self._each(self._json_text if json_lines else self._csv_text, lines)})
        batch = self._numeric_lines(lines, self._layouts[JSON_LINES if json_lines else CSV])
        if batch is None:
            values = self._each(self._json_value if json_lines else self._csv_values, lines)
            batch = self._fast_batch(values)
            if batch is None:
                batch = np.stack(self._each(self._instance, values))
        return self._instances_json(self.reader._in_input_dtype(batch))

    def _instances_json(self, batch: np.ndarray) -> str:
        """`{"instances": [...]}` of the batch: what json.dumps writes (the same number texts),
        without a Python list per row and axis."""
        numbers = list(map(repr, batch.ravel().tolist()))
        between, size = self._between_numbers, self.size
        rows = (
            "".join(itertools.chain.from_iterable(zip(between, [*numbers[start : start + size], ""], strict=True)))
            for start in range(0, len(numbers), size)
        )
        return '{"instances":[' + ",".join(rows) + "]}"

    def answer(self, answers: list, accept: str | None) -> tuple[str, str] | None:
        """The answers as `accept` asks, one line per record; None: the real-time document."""
        kind = media_type(accept)
        if kind == JSON_LINES:
            return "\n".join(json.dumps(answer) for answer in answers) + "\n", JSON_LINES
        if kind == CSV:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerows([json.dumps(answer)] for answer in answers)
            return text.getvalue(), CSV
        return None

    def _each(self, read, records: list) -> list:
        """`read` of every record; a record it refuses is named by its place in the mini-batch."""
        results = []
        for number, record in enumerate(records, start=1):
            try:
                results.append(read(record))
            except self.invalid_input as error:
                raise self.invalid_input(f"record {number} of {len(records)}: {error}") from None
        return results

    def _json_value(self, line: bytes):
        if not line.strip():
            raise self.invalid_input("the line is empty")
        try:
            return json.loads(line)
        except RecursionError:
            raise self.invalid_input("the JSON is nested too deeply") from None
        except ValueError as error:
            raise self.invalid_input(f"the line is not valid JSON ({error})") from None

    def _json_text(self, line: bytes) -> str:
        """A text record of JSON Lines: one JSON string (or TF Serving's {"b64": ...}), checked as
        a real-time text is."""
        return self.reader._checked_text(self._json_value(line), 1)

    def _csv_text(self, line: bytes) -> str:
        """A text record of CSV: one field, quoted if it holds a comma (RFC 4180)."""
        fields = self._csv_fields(line)
        if len(fields) != 1:
            raise self.invalid_input(
                f"the line has {len(fields)} fields; a text record is one, quoted if it holds a comma"
            )
        return self.reader._checked_text(fields[0], 1)

    def _csv_values(self, line: bytes) -> list[float]:
        fields = self._csv_fields(line)
        if not any(cell.strip() for cell in fields):
            raise self.invalid_input("the line is empty")
        for cell in fields:
            try:
                float(cell)
            except ValueError:
                raise self.invalid_input(f"{cell.strip()[:40]!r} is not a number") from None
        return [float(cell) for cell in fields]

    def _csv_fields(self, line: bytes) -> list[str]:
        try:
            text = line.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise self.invalid_input("the line is not UTF-8 text") from None
        try:
            rows = list(csv.reader([text]))
        except csv.Error as error:
            raise self.invalid_input(f"unreadable CSV: {error}") from None
        return rows[0] if rows else []

    def _numeric_lines(self, lines: list[bytes], layouts: set[bytes]) -> np.ndarray | None:
        """Every record at once when each is only numbers laid out as one input (JSON: brackets and
        commas exactly those of an array of the input's shape, or flat; CSV: its values, flat);
        None otherwise, and the records are read one by one. The values json.loads or the CSV
        reader gives, without a Python object per number."""
        for line in lines:
            if not _NUMBERS_IN_BRACKETS.fullmatch(line) or line.translate(None, _NUMBER_OR_SPACE) not in layouts:
                return None
        try:
            values = np.array(b",".join(lines).translate(None, b"[] \t\r\n").split(b","), dtype=np.float64)
        except ValueError:
            return None
        if values.size != len(lines) * self.size or not np.isfinite(values).all():
            return None
        return values.astype(np.float32).reshape(len(lines), *self.reader.row_shape)

    def _fast_batch(self, values: list) -> np.ndarray | None:
        """Every record at once when each is the input flat or in its shape; None otherwise (the
        records are then read one by one, which also names a bad one)."""
        try:
            batch = np.array(values)
        except (ValueError, RecursionError):
            return None
        if batch.dtype.kind not in "iuf" or batch.shape[1:] not in (self.reader.row_shape, (self.size,)):
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            batch = batch.astype(np.float32)
        if not np.isfinite(batch).all():
            return None
        return batch.reshape(len(values), *self.reader.row_shape)

    def _instance(self, value) -> np.ndarray:
        """One record -> one input of the model's shape, or InvalidInput saying what is wrong."""
        reader = self.reader
        if isinstance(value, dict):
            value = reader._unwrap_named(value)
        array = reader._numeric_array(value, "the record")
        if array.shape == reader.row_shape:
            return array
        if array.ndim == 1 and array.size == self.size and reader.request_form in ("image", "rows"):
            return array.reshape(reader.row_shape)
        if reader.request_form in ("window", "sequence") and array.ndim <= 2:
            n_features = int(reader.serving["n_features"])
            if array.size % n_features == 0:
                frames = array.reshape(-1, n_features)
                if reader.request_form == "window":
                    return reader._forecast_window(frames, from_csv=False)
                return reader._padded_sequence(frames)
        raise self.invalid_input(
            f"the record has {array.size} values in shape {list(array.shape)}; "
            f"this model takes one input of shape {list(reader.row_shape)} ({self.size} values) per line"
        )


def _layout(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a JSON array of `shape`."""
    return json.dumps(np.zeros(shape, dtype=int).tolist()).encode().translate(None, _NUMBER_OR_SPACE)
