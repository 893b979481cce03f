"""The record formats of the project's batch transforms: plain data, no TensorFlow.

A batch input file holds one record per line, each with an id that its output line carries:

    application/jsonlines   {"id": "img-0001", "features": <the model's input>}
                            -> {"id": "img-0001", "SageMakerOutput": <the handler's answer>}
    text/csv                img-0001,<the input's values, flattened>
                            -> img-0001,"<the handler's answer as JSON>"

SageMaker does the id's part (DataProcessing: InputFilter sends the model the input alone, JoinSource
Input joins each answer to its record, OutputFilter keeps the id and the answer); the handler reads
the input (inference/model_code/batch_records.py). The transform pipeline's steps
(infra/definitions/transform_pipeline.py), the local transform job, the drift monitor of a batch's
inputs (processing/monitor.py) and `mlops transform` all read this one table.

Inside the training container this file is imported as the sibling module `batch_formats`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any

JSON_LINES = "application/jsonlines"
CSV = "text/csv"
ID_KEY, FEATURES_KEY = "id", "features"


@dataclass(frozen=True)
class RecordFormat:
    content_type: str
    accept: str
    suffixes: tuple[str, ...]
    """File name endings `mlops transform` takes for this format."""
    input_filter: str
    output_filter: str

    def data_processing(self) -> dict[str, str]:
        """CreateTransformJob's DataProcessing for this format."""
        return {"InputFilter": self.input_filter, "JoinSource": "Input", "OutputFilter": self.output_filter}

    def model_input(self, line: bytes) -> Any:
        """What InputFilter sends the model of one record, as a JSON value (the monitor reads it so)."""
        if self.content_type == JSON_LINES:
            record = json.loads(line)
            if not isinstance(record, dict) or FEATURES_KEY not in record:
                raise ValueError(f"a JSON Lines record must be an object with {FEATURES_KEY!r}")
            return record[FEATURES_KEY]
        (row,) = csv.reader([line.decode("utf-8")])
        if len(row) < 2:
            raise ValueError("a CSV record must hold an id and the input's values")
        return [float(value) for value in row[1:]]


RECORD_FORMATS = {
    JSON_LINES: RecordFormat(
        JSON_LINES,
        accept=JSON_LINES,
        suffixes=(".jsonl", ".jsonlines"),
        input_filter=f"$.{FEATURES_KEY}",
        output_filter=f"$['{ID_KEY}','SageMakerOutput']",
    ),
    CSV: RecordFormat(CSV, accept=CSV, suffixes=(".csv",), input_filter="$[1:]", output_filter="$[0,-1]"),
}


def record_format(content_type: str) -> RecordFormat:
    try:
        return RECORD_FORMATS[content_type]
    except KeyError:
        raise KeyError(f"no batch record format {content_type!r}; known: {', '.join(RECORD_FORMATS)}") from None
