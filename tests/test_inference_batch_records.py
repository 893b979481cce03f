"""The handler under a batch transform: a mini-batch of lines in, one answer line per record out.

SageMaker sets SAGEMAKER_BATCH in a transform job's container and, with SplitType Line and
MultiRecord, POSTs an object's lines joined by newlines; with JoinSource Input it joins answer
line k to record k. Every network's batch answers are compared with its real-time answers to the
same inputs as TF Serving JSON, which test_inference_handler.py compares with the signature.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from inference_support import N_COEFFICIENTS, Served, context, exported_models

from training.networks import NETWORKS

JSON_LINES, CSV = "application/jsonlines", "text/csv"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, Served]:
    return {network: Served(path) for network, path in exported_models(tmp_path_factory).items()}


@pytest.fixture
def batch_transform(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("SAGEMAKER_BATCH", "true")
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "1")
    return monkeypatch


def batch_answer(served: Served, body: str, content_type: str, accept: str) -> tuple[str, str]:
    data = body.encode()
    request = context(content_type, len(data))._replace(accept_header=accept)
    return served.handler(io.BytesIO(data), request)


def inputs_of(network: str, served: Served, count: int) -> np.ndarray:
    """`count` valid inputs of the network's shape (speech: no all-zero frame, which means padding;
    a text model: texts, one with a comma and one with a quote)."""
    if served.module.READER.request_form == "text":
        texts = ["a quiet, patient film", 'the "twist" is dull', "bold and warm", "too long", "fine"]
        return np.array(texts[:count], dtype=object)
    shape = served.module.READER.row_shape
    return np.random.default_rng(11).uniform(1, 200, (count, *shape)).astype(np.float32).round(2)


def flat_csv_line(row: np.ndarray) -> str:
    """A CSV line of one input: its values flattened, or a text as one field."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerow(np.ravel(row).tolist())
    return text.getvalue()


@pytest.mark.parametrize("network", NETWORKS)
def test_every_network_answers_one_jsonlines_line_per_record_as_in_real_time(served, batch_transform, network):
    inputs = inputs_of(network, served[network], 5)
    expected = served[network].answer(json.dumps({"instances": inputs.tolist()}), "application/json")
    if inputs.dtype == object:  # texts: one JSON string per line
        shaped = "\n".join(json.dumps(text) for text in inputs) + "\n"
        flat = shaped.rstrip("\n")
    else:
        shaped = "\n".join(json.dumps(row.tolist()) for row in inputs) + "\n"
        flat = "\n".join(json.dumps(row.ravel().tolist()) for row in inputs)  # no final newline
    for body in (shaped, flat):
        text, content_type = batch_answer(served[network], body, JSON_LINES, JSON_LINES)
        assert content_type == JSON_LINES
        assert [json.loads(line) for line in text.splitlines()] == expected


@pytest.mark.parametrize("network", NETWORKS)
def test_every_network_takes_flat_csv_rows_and_answers_one_quoted_json_field_per_line(served, batch_transform, network):
    inputs = inputs_of(network, served[network], 4)
    expected = served[network].answer(json.dumps({"instances": inputs.tolist()}), "application/json")
    body = "".join(flat_csv_line(row) for row in inputs)
    text, content_type = batch_answer(served[network], body, CSV, CSV)
    assert content_type == CSV
    rows = list(csv.reader(io.StringIO(text)))
    assert [len(row) for row in rows] == [1] * len(inputs)
    assert [json.loads(row[0]) for row in rows] == expected


def test_window_and_sequence_records_take_their_friendly_forms(served, batch_transform):
    series = (320 + np.arange(30, dtype=np.float32)).tolist()
    (real_time,) = served["rnn"].answer(json.dumps(series), "application/json")
    text, _ = batch_answer(served["rnn"], json.dumps(series), JSON_LINES, JSON_LINES)
    assert json.loads(text) == real_time  # the last WINDOW observations, as in real time
    frames = np.random.default_rng(3).uniform(1, 5, (7, N_COEFFICIENTS)).round(3)
    (real_time,) = served["speech"].answer(json.dumps(frames.tolist()), "application/json")
    text, _ = batch_answer(served["speech"], ",".join(map(str, frames.ravel())), CSV, JSON_LINES)
    assert json.loads(text) == real_time  # padded to MAX_FRAMES, as in real time


@pytest.mark.parametrize(
    ("record", "content_type", "expected"),
    [
        ("[1, 2, NaN]", JSON_LINES, "NaN"),
        ('{"wrong": 1}', JSON_LINES, "single key 'image'"),
        ("not json", JSON_LINES, "not valid JSON"),
        ("", JSON_LINES, "the line is empty"),
        ("[1, 2, 3]", JSON_LINES, "has 3 values"),
        ("1,2,x", CSV, "'x' is not a number"),
    ],
)
def test_a_bad_record_fails_the_mini_batch_naming_its_place(served, batch_transform, record, content_type, expected):
    good = json.dumps([7.0] * 64) if content_type == JSON_LINES else ",".join(["7"] * 64)
    body = "\n".join([good, good, record, good]) + "\n"
    error = served["cnn"].rejection(body, content_type)
    assert str(error).startswith("record 3 of 4: ") and expected in str(error)


def test_the_payload_limit_is_max_payload_in_mb_not_the_real_time_6_mb(served, batch_transform):
    line = json.dumps([7.0] * 64)
    body = "\n".join([line] * (1024 * 1024 // len(line) + 1))  # just over the 1 MB the job allows
    assert "larger than MaxPayloadInMB" in str(served["cnn"].rejection(body, JSON_LINES))
    batch_transform.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "2")
    text, _ = batch_answer(served["cnn"], body, JSON_LINES, JSON_LINES)
    assert len(text.splitlines()) == body.count("\n") + 1


def test_outside_a_batch_transform_json_lines_are_not_a_request_form(served, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_BATCH", raising=False)
    error = served["cnn"].rejection(json.dumps([7.0] * 64), JSON_LINES)
    assert "content type 'application/jsonlines' is not accepted" in str(error)


def test_under_a_batch_transform_an_image_object_is_still_one_request(served, batch_transform):
    """SplitType None sends a whole object, e.g. a PNG: read as in real time, answered as asked."""
    from inference_support import image_bytes

    pixels = np.random.default_rng(5).integers(0, 256, (8, 8), dtype=np.uint8)
    real_time = served["cnn"].answer(image_bytes(pixels), "image/png")
    body = image_bytes(pixels)
    text, content_type = served["cnn"].handler(
        io.BytesIO(body), context("image/png", len(body))._replace(accept_header=JSON_LINES)
    )
    assert content_type == JSON_LINES and [json.loads(text)] == real_time


TEXT_NETWORKS = [name for name, spec in NETWORKS.items() if spec.task.request_form == "text"]


@pytest.mark.parametrize("network", TEXT_NETWORKS)
@pytest.mark.parametrize(
    ("record", "content_type", "expected"),
    [
        ("42", JSON_LINES, "is a number, not a string"),
        ('"   "', JSON_LINES, "is empty"),
        ("one,two", CSV, "the line has 2 fields; a text record is one"),
    ],
)
def test_a_bad_text_record_fails_the_mini_batch_naming_its_place(
    served, batch_transform, network, record, content_type, expected
):
    good = json.dumps("a fine film") if content_type == JSON_LINES else '"a fine, warm film"'
    error = served[network].rejection("\n".join([good, record]) + "\n", content_type)
    assert str(error).startswith("record 2 of 2: ") and expected in str(error)
