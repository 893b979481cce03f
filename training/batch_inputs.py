"""A batch transform's input records, read for the drift monitor as captured requests are.

The batch transform pipeline's MonitorBatchInput step is given the batch's input objects (its
`InputDataUri`) as a processing input. Each line is a record of a format of `batch_formats.py`;
what the Transform step's InputFilter sends the model of it becomes one request, with the
content type the handler reads it under (a batch transform's, `SAGEMAKER_BATCH`), so the served
handler decodes it as the transform's container did. A line that cannot be read is counted by
reason and skipped, as a capture line is (`captures.py`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from batch_formats import JSON_LINES, record_format
from captures import CapturedRequest, Problems


class BatchRecordReader:
    """The records of every file under `folder` (the batch's input objects), in key order."""

    def __init__(self, folder: Path, content_type: str) -> None:
        self.folder = folder
        self.format = record_format(content_type)
        self.problems = Problems()
        self.files = self.lines = 0

    def counts(self) -> dict[str, int]:
        return {"files": self.files, "records": self.lines, "in_window": self.lines}

    def records(self) -> Iterator[CapturedRequest]:
        for path in sorted(item for item in self.folder.rglob("*") if item.is_file()):
            self.files += 1
            with path.open("rb") as lines:
                for number, line in enumerate(lines, start=1):
                    line = line.rstrip(b"\r\n")
                    if not line.strip():
                        continue
                    self.lines += 1
                    where = f"{path.relative_to(self.folder).as_posix()}:{number}"
                    try:
                        value = self.format.model_input(line)
                    except (ValueError, UnicodeDecodeError) as error:
                        self.problems.add("the record is not of the batch's format", where, str(error)[:120])
                        continue
                    yield CapturedRequest(where, _body(value, self.format.content_type), self.format.content_type)


def _body(value: object, content_type: str) -> bytes:
    """One record as the transform's container received it (a line of its mini-batch)."""
    if content_type == JSON_LINES:
        return json.dumps(value).encode()
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(value if isinstance(value, list) else [value])
    return text.getvalue().encode()
