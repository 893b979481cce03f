"""Reading an endpoint's data capture back: SageMaker's capture files of a time window, and each
captured request decoded into model inputs by the served model's own request handler.

Capture files live at `<capture uri><yyyy>/<mm>/<dd>/<hh>/<file>.jsonl`, one JSON object per
line (inference/capture.py writes them as SageMaker does). A window takes only its hour folders:
the monitor pipeline's CollectCaptures step copies them (capture_window.py,
processing/collect_captures.py), and the isolated Monitor step reads that copy from its input
folder (`CaptureReader`), with no S3 call of its own.
Whatever cannot be used is counted by reason, with the first few examples, and skipped: a file
that cannot be read, a line that is not JSON or lacks the documented fields, an encoding that is
not JSON/CSV/BASE64, a request the handler refuses.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
from collections import Counter, namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import contract
import networks
from capture_window import CAPTURE_SUFFIX

EXAMPLES_KEPT = 5
ENCODINGS = ("JSON", "CSV", "BASE64")
# The container's request context (SageMaker's TF Serving container, tfs_utils.Context).
Context = namedtuple(
    "Context",
    "model_name, model_version, method, rest_uri, grpc_port, channel, "
    "custom_attributes, request_content_type, accept_header, content_length",
)


@dataclass
class Problems:
    """What could not be used, counted by reason, with a few examples of each."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(f"{where}: {reason}" + (f" ({detail})" if detail else ""))

    def merged(self, other: Problems) -> dict[str, Any]:
        counts = self.counts + other.counts
        return {
            "count": sum(counts.values()),
            "by_reason": dict(sorted(counts.items())),
            "examples": (self.examples + other.examples)[:EXAMPLES_KEPT],
        }


@dataclass(frozen=True)
class CapturedRequest:
    where: str
    """file:line, for messages."""
    body: bytes
    content_type: str


class CaptureReader:
    """The capture records of a window's copy: `<folder>/yyyy/mm/dd/hh/<file>.jsonl`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems = Problems()
        self.files = self.lines = self.in_window = 0

    def counts(self) -> dict[str, int]:
        return {"files": self.files, "records": self.lines, "in_window": self.in_window}

    def records(self, start: datetime, end: datetime) -> Iterator[CapturedRequest]:
        """The captured requests of [start, end), in file order."""
        for path in sorted(self.folder.rglob(f"*{CAPTURE_SUFFIX}")):
            key = path.relative_to(self.folder).as_posix()
            self.files += 1
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                self.problems.add("file is not UTF-8 text", key)
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                self.lines += 1
                where = f"{key}:{number}"
                request = self._request(line, where, start, end)
                if request is not None:
                    self.in_window += 1
                    yield request

    def _request(self, line: str, where: str, start: datetime, end: datetime) -> CapturedRequest | None:
        try:
            record = json.loads(line)
            captured = record["captureData"]["endpointInput"]
            moment = datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
            data, encoding = captured["data"], captured["encoding"]
            content_type = captured["observedContentType"]
        except json.JSONDecodeError:
            self.problems.add("line is not JSON", where)
            return None
        except (KeyError, TypeError):
            self.problems.add("record lacks captureData.endpointInput or eventMetadata.inferenceTime", where)
            return None
        except ValueError:
            self.problems.add("inferenceTime is not yyyy-mm-ddThh:mm:ssZ", where)
            return None
        if not start <= moment.replace(tzinfo=UTC) < end:
            return None
        if encoding not in ENCODINGS or not isinstance(data, str):
            self.problems.add(f"unknown encoding {encoding!r}", where)
            return None
        try:
            body = base64.b64decode(data, validate=True) if encoding == "BASE64" else data.encode("utf-8")
        except (binascii.Error, ValueError):
            self.problems.add("data is not valid base64", where)
            return None
        return CapturedRequest(where, body, content_type)


class RequestDecoder:
    """Captured requests -> model inputs, by the served artifact's `code/inference.py`."""

    def __init__(self, handler: Any, network: networks.Network) -> None:
        self._handler = handler
        self.network = network
        self.description: dict[str, Any] = dict(handler.SERVING)
        self.problems = Problems()

    @classmethod
    def load(cls, model_dir: Path, network: networks.Network) -> RequestDecoder:
        path = model_dir / "code" / "inference.py"
        try:
            spec = importlib.util.spec_from_file_location("served_inference", path)
            if spec is None or spec.loader is None:
                raise ValueError("not a Python module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except (OSError, RuntimeError, ValueError, AttributeError) as error:
            raise contract.InputError(
                f"model dir {model_dir}: cannot load the served handler {path} ({type(error).__name__}: {error})"
            ) from None
        if module.SERVING.get("network") != network.name:
            raise contract.InputError(
                f"model dir {model_dir} holds a {module.SERVING.get('network')!r} model, not {network.name!r}"
            )
        return cls(module, network)

    def inputs(self, requests: Iterator[CapturedRequest]) -> Iterator[np.ndarray]:
        """One batch of model inputs per request the handler accepts."""
        for request in requests:
            context = Context(
                None, None, None, "", None, None, None, request.content_type, "application/json", len(request.body)
            )
            try:
                served = json.loads(self._handler.input_handler(io.BytesIO(request.body), context))
            except self._handler.InvalidInput as refused:
                self.problems.add("the served handler refuses the request", request.where, str(refused))
                continue
            rows = served.get("instances", served.get("inputs"))
            if isinstance(rows, dict):
                rows = rows[self.network.input_name]
            # Text stays text (an array of str), everything else is numbers.
            yield np.asarray(rows, dtype=object if self.description.get("input_dtype") == "string" else np.float32)
