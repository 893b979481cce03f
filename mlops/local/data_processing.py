"""A batch transform's DataProcessing, as SageMaker documents it, for the local transform job.

"Associate Prediction Results with Input Records" (SageMaker Developer Guide) and the API's
`DataProcessing` say:
- `InputFilter` (a JSONPath) selects what of each input record is sent to the model;
- `JoinSource: Input` joins each record with the model's answer to it: a JSON object gets the
  answer under `SageMakerOutput`; any other JSON value becomes `{"SageMakerInput": value,
  "SageMakerOutput": answer}`; a CSV row (read as a JSON array) gets the answer's fields appended;
- `OutputFilter` (a JSONPath) selects what of the joined record is written.
The JSONPath operators SageMaker supports: `$`, `.name`, `['name', 'name']`, `[index, index]`
(negative counts from the end), `[start:]`, `[:end]` and `*`. A CSV row takes index paths only.
Several names of one object give an object of those members (as Jayway JsonPath, which the guide
points to, gives them; the guide's own example is `$['id','SageMakerOutput']`).

One case is refused here rather than guessed: a slice with both ends (`$[1:4]`), whose end the
guide calls inclusive in one sentence and the JSON slice() method (exclusive) in the next.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

JSON_TYPES = ("application/json", "application/jsonlines")
CSV_TYPE = "text/csv"
OUTPUT_KEY, INPUT_KEY = "SageMakerOutput", "SageMakerInput"
_NEEDS_QUOTES_BUT_COMMA = re.compile(r'["\r\n]')
_QUOTE_OR_LINE_END = re.compile(rb'["\r\n]')
_STEP = re.compile(r"\.(\*|[A-Za-z_][A-Za-z0-9_]*)|\[([^\]]*)\]")


class DataProcessingError(ValueError):
    """A filter that cannot be applied to a record, or one SageMaker does not accept."""


@dataclass(frozen=True)
class _Selector:
    kind: str  # "names", "indexes", "slice", "all"
    names: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    start: int | None = None
    end: int | None = None


@functools.cache
def parse_path(path: str) -> tuple[_Selector, ...]:
    """The steps of a JSONPath in SageMaker's subset; DataProcessingError naming what is not."""
    if not path.startswith("$"):
        raise DataProcessingError(f"JSONPath {path!r} must start with $")
    steps, position = [], 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise DataProcessingError(f"JSONPath {path!r}: cannot read it from position {position}")
        position = match.end()
        name, bracket = match.groups()
        steps.append(_selector(name, bracket, path))
    return tuple(steps)


def _selector(name: str | None, bracket: str | None, path: str) -> _Selector:
    if name is not None:
        return _Selector("all") if name == "*" else _Selector("names", names=(name,))
    assert bracket is not None
    text = bracket.strip()
    if text == "*":
        return _Selector("all")
    if text.startswith(("'", '"')):
        names = [part.strip() for part in text.split(",")]
        if not all(len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"" for part in names):
            raise DataProcessingError(f"JSONPath {path!r}: [{bracket}] mixes names and other selectors")
        return _Selector("names", names=tuple(part[1:-1] for part in names))
    if ":" in text:
        start, _, end = (part.strip() for part in text.partition(":"))
        if start and end:
            raise DataProcessingError(
                f"JSONPath {path!r}: a slice with both ends is not emulated locally (SageMaker's guide "
                "calls its end inclusive and exclusive); use [start:] or [:end], or list the indexes"
            )
        try:
            return _Selector("slice", start=int(start) if start else None, end=int(end) if end else None)
        except ValueError:
            raise DataProcessingError(f"JSONPath {path!r}: [{bracket}] is not a slice of integers") from None
    try:
        return _Selector("indexes", indexes=tuple(int(part) for part in text.split(",")))
    except ValueError:
        raise DataProcessingError(f"JSONPath {path!r}: [{bracket}] is neither names nor indexes") from None


def select(document: Any, path: str) -> Any:
    """`path` applied to `document`: one value, or a list where a step selects several."""
    values, several = [document], False
    for step in parse_path(path):
        values = [found for value in values for found in _apply(step, value, path)]
        several = several or step.kind in ("all", "slice") or len(step.indexes) > 1
    if several:
        return values
    if not values:
        raise DataProcessingError(f"JSONPath {path!r} selects nothing")
    return values[0]


def _apply(step: _Selector, value: Any, path: str) -> list[Any]:
    try:
        if step.kind == "all":
            return list(value.values()) if isinstance(value, dict) else list(value)
        if step.kind == "names":
            if not isinstance(value, dict):
                raise TypeError
            missing = [name for name in step.names if name not in value]
            if missing:
                raise DataProcessingError(f"JSONPath {path!r}: the record has no {', '.join(missing)}")
            if len(step.names) > 1:
                return [{name: value[name] for name in step.names}]
            return [value[step.names[0]]]
        if not isinstance(value, list):
            raise TypeError
        if step.kind == "slice":
            return value[step.start : step.end]
        return [value[index] for index in step.indexes]
    except (TypeError, AttributeError):
        raise DataProcessingError(f"JSONPath {path!r} does not apply to {type(value).__name__} values") from None
    except IndexError:
        raise DataProcessingError(f"JSONPath {path!r}: an index beyond the record's {len(value)} values") from None


def _is_root(path: str | None) -> bool:
    return path in (None, "", "$")


def _csv_fields(line: bytes) -> list[str]:
    if line and not _QUOTE_OR_LINE_END.search(line):  # plain fields: what lies between the commas
        return line.decode("utf-8").split(",")
    rows = list(csv.reader([line.decode("utf-8")]))
    return rows[0] if rows else []


def _csv_line(fields: Any) -> bytes:
    values = fields if isinstance(fields, list) else [fields]
    if values != [""]:
        try:
            joined = ",".join(values)
        except TypeError:  # a value that is not text: csv.writer writes it
            joined = None
        # No field holds a comma, a quote or a line end: written as they are, as csv.writer would.
        if joined is not None and joined.count(",") == len(values) - 1 and not _NEEDS_QUOTES_BUT_COMMA.search(joined):
            return joined.encode()
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(values)
    return text.getvalue().encode()


def _json_line(value: Any) -> bytes:
    # orjson writes a record's numbers faster than json (the filters re-write every record); what it
    # cannot write (an integer beyond 64 bits, for one) json writes as before.
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # a TypeError: orjson raises nothing else here
        return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class RecordProcessing:
    """DataProcessing for one job: its filters, its join, and the record formats they read."""

    content_type: str
    accept: str | None
    input_filter: str | None = None
    join_input: bool = False
    output_filter: str | None = None

    @classmethod
    def of(cls, request: dict[str, Any]) -> RecordProcessing:
        processing = request.get("DataProcessing") or {}
        processing_set = cls(
            content_type=(request["TransformInput"].get("ContentType") or "").split(";")[0].strip().lower(),
            accept=request.get("TransformOutput", {}).get("Accept"),
            input_filter=processing.get("InputFilter"),
            join_input=processing.get("JoinSource", "None") == "Input",
            output_filter=processing.get("OutputFilter"),
        )
        processing_set.check()
        return processing_set

    @property
    def is_csv(self) -> bool:
        return self.content_type == CSV_TYPE

    def check(self) -> None:
        active = not (_is_root(self.input_filter) and _is_root(self.output_filter)) or self.join_input
        if active and self.content_type not in (*JSON_TYPES, CSV_TYPE):
            raise DataProcessingError(
                f"DataProcessing needs a ContentType of {', '.join((*JSON_TYPES, CSV_TYPE))}, got {self.content_type!r}"
            )
        for path in (self.input_filter, self.output_filter):
            if not _is_root(path):
                parse_path(path or "$")

    def model_input(self, record: bytes) -> bytes:
        """What of one input record the model is sent (InputFilter)."""
        if _is_root(self.input_filter):
            return record
        assert self.input_filter is not None
        if self.is_csv:
            return _csv_line(select(_csv_fields(record), self.input_filter))
        return _json_line(select(_loads(record, "input record"), self.input_filter))

    def output_record(self, record: bytes, answer: bytes) -> bytes:
        """The line written for one record: the answer, joined with the input if asked, filtered."""
        if not self.join_input and _is_root(self.output_filter):
            return answer
        if self.is_csv:
            joined: Any = (_csv_fields(record) if self.join_input else []) + _csv_fields(answer)
            return _csv_line(joined if _is_root(self.output_filter) else select(joined, self.output_filter or "$"))
        output = _loads(answer, "model answer", text_fallback=True)
        if self.join_input:
            source = _loads(record, "input record")
            joined = (
                {**source, OUTPUT_KEY: output} if isinstance(source, dict) else {INPUT_KEY: source, OUTPUT_KEY: output}
            )
        else:
            joined = output
        return _json_line(joined if _is_root(self.output_filter) else select(joined, self.output_filter or "$"))


def _loads(line: bytes, what: str, text_fallback: bool = False) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses but json reads: NaN and Infinity, integers beyond 64 bits
        return json.loads(line)
    except ValueError:
        if text_fallback:
            return line.decode("utf-8", errors="replace")
        raise DataProcessingError(f"the {what} is not JSON: {line[:80]!r}") from None
