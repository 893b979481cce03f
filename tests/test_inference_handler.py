"""The model artifact's `code/inference.py`, called as SageMaker's TF Serving container calls it.

The handlers run against tiny real SavedModels (one per network type); every answer is compared
with the model's `serving_default` signature called directly on the same input.
"""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
import requests
from inference_support import (
    CNN_CLASSES,
    HORIZON,
    MAX_FRAMES,
    N_COEFFICIENTS,
    N_FEATURES,
    REPO_ROOT,
    SPEAKERS,
    TEXT_CLASSES,
    THRESHOLD,
    TRANSFER_CLASSES,
    WINDOW,
    Served,
    assert_answer_matches,
    context,
    exported_models,
    handler_code,
    image_bytes,
)
from PIL import Image

from inference import model_lib
from inference.local_endpoint import load_handler_module
from training.networks import NETWORKS
from training.tasks import TASKS


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, Served]:
    return {network: Served(path) for network, path in exported_models(tmp_path_factory).items()}


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _assert_classified(predictions: list[dict], probabilities: np.ndarray, class_names: list[str]) -> None:
    assert len(predictions) == len(probabilities)
    for prediction, row in zip(predictions, probabilities, strict=True):
        assert list(prediction["probabilities"]) == class_names
        assert prediction["probabilities"] == {name: float(p) for name, p in zip(class_names, row, strict=True)}
        assert prediction["label"] == class_names[int(np.argmax(row))]


# ------------------------------------------------------------------------------ image classifiers


def test_cnn_png_digit_matches_the_signature(served):
    pixels = _rng().integers(0, 256, (8, 8), dtype=np.uint8)
    predictions = served["cnn"].answer(image_bytes(pixels), "image/png")
    expected = served["cnn"].signature(pixels.reshape(1, 8, 8, 1))["probabilities"]
    _assert_classified(predictions, expected, CNN_CLASSES)
    assert math.isclose(sum(predictions[0]["probabilities"].values()), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA", "1", "I;16"])
def test_cnn_converts_any_png_mode_to_its_one_channel_and_size(served, mode):
    pixels = _rng().integers(0, 256, (20, 13, 3), dtype=np.uint8)
    body = image_bytes(pixels, mode=mode)
    with Image.open(io.BytesIO(body)) as image:
        expected_pixels = image.convert("RGB").convert("L").resize((8, 8), Image.Resampling.BILINEAR)
    expected = served["cnn"].signature(np.asarray(expected_pixels, np.float32).reshape(1, 8, 8, 1))
    _assert_classified(served["cnn"].answer(body, "image/png"), expected["probabilities"], CNN_CLASSES)


def test_cnn_accepts_jpeg_with_content_type_parameters(served):
    body = image_bytes(_rng().integers(0, 256, (64, 48, 3), dtype=np.uint8), "JPEG")
    (prediction,) = served["cnn"].answer(body, "image/jpeg; charset=binary")
    assert prediction["label"] in CNN_CLASSES


def test_transfer_turns_a_grayscale_image_into_its_32x32_rgb_input(served):
    pixels = _rng().integers(0, 256, (10, 10), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(pixels).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32)
    expected = served["transfer"].signature(rgb[np.newaxis])["probabilities"]
    _assert_classified(served["transfer"].answer(image_bytes(pixels), "image/png"), expected, TRANSFER_CLASSES)


def test_image_classifier_takes_every_tf_serving_json_form(served):
    batch = _rng().uniform(0, 255, (3, 8, 8, 1)).astype(np.float32)
    expected = served["cnn"].signature(batch)["probabilities"]
    rows = batch.tolist()
    for document in (
        {"instances": rows},
        {"inputs": rows},
        {"instances": [{"image": row} for row in rows]},
        {"inputs": {"image": rows}},
        {"signature_name": "serving_default", "instances": rows},
    ):
        _assert_classified(served["cnn"].answer(json.dumps(document), "application/json"), expected, CNN_CLASSES)


def test_a_missing_content_type_means_json_as_in_the_container(served):
    batch = np.full((1, 8, 8, 1), 128.0, np.float32)
    expected = served["cnn"].signature(batch)["probabilities"]
    predictions = served["cnn"].answer(json.dumps({"instances": batch.tolist()}), None)
    _assert_classified(predictions, expected, CNN_CLASSES)


# ------------------------------------------------------------------------------ forecaster


def test_forecaster_takes_the_last_window_of_a_longer_json_series(served):
    series = 315 + _rng().normal(0, 3, 40)
    expected = served["rnn"].signature(series[-WINDOW:].reshape(1, WINDOW, 1))["forecast"]
    (prediction,) = served["rnn"].answer(json.dumps(series.tolist()), "application/json")
    assert prediction == {"forecast": expected[0].tolist()}
    assert len(prediction["forecast"]) == HORIZON


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: json.dumps([[value] for value in s]),
        lambda s: "ppm\n" + "\n".join(str(value) for value in s) + "\n",
        lambda s: ",".join(str(value) for value in s),
        lambda s: json.dumps({"instances": [[[value] for value in s]]}),
    ],
    ids=["json-rows", "csv-with-header", "csv-one-line", "tf-serving"],
)
def test_forecaster_input_forms_agree(served, encode):
    series = (330 + _rng().normal(0, 2, WINDOW)).astype(np.float32).tolist()
    expected = served["rnn"].signature(np.reshape(series, (1, WINDOW, 1)))["forecast"]
    text = encode(series)
    content_type = "application/json" if text.startswith(("[", "{")) else "text/csv"
    assert served["rnn"].answer(text, content_type) == [{"forecast": expected[0].tolist()}]


def test_forecaster_rejects_a_short_series_saying_how_many_it_needs(served):
    error = served["rnn"].rejection(json.dumps([320.0] * (WINDOW - 1)), "application/json")
    assert f"got {WINDOW - 1} observations" in str(error) and f"most recent {WINDOW}" in str(error)


# ------------------------------------------------------------------------------ anomaly detector


def _anomaly_rows(count: int) -> np.ndarray:
    return _rng().uniform(0, 3, (count, N_FEATURES)).astype(np.float32)


def _assert_scored(predictions: list[dict], expected: dict[str, np.ndarray]) -> None:
    assert len(predictions) == len(expected["reconstruction_error"])
    for index, prediction in enumerate(predictions):
        error = float(expected["reconstruction_error"][index])
        assert prediction == {
            "reconstruction_error": error,
            "threshold": THRESHOLD,
            "is_anomaly": error > THRESHOLD,
            "embedding": expected["embedding"][index].tolist(),
        }


@pytest.mark.parametrize(
    "encode, content_type",
    [
        (
            lambda rows: (
                ",".join(f"f{i}" for i in range(N_FEATURES)) + "\n" + "\n".join(",".join(map(str, row)) for row in rows)
            ),
            "text/csv",
        ),
        (lambda rows: json.dumps({"rows": rows}), "application/json"),
        (lambda rows: json.dumps(rows), "application/json"),
        (lambda rows: json.dumps({"instances": rows}), "application/json"),
        (lambda rows: json.dumps({"inputs": {"features": rows}}), "application/json"),
    ],
    ids=["csv", "rows", "bare-rows", "instances", "named-inputs"],
)
def test_anomaly_detector_scores_every_row(served, encode, content_type):
    rows = _anomaly_rows(3)
    rows[2] *= 40  # far outside what the model reconstructs: an anomaly
    expected = served["autoencoder"].signature(rows)
    predictions = served["autoencoder"].answer(encode(rows.tolist()), content_type)
    _assert_scored(predictions, expected)
    assert predictions[2]["is_anomaly"] is True


def test_anomaly_detector_takes_one_bare_row(served):
    row = _anomaly_rows(1)
    predictions = served["autoencoder"].answer(json.dumps(row[0].tolist()), "application/json")
    _assert_scored(predictions, served["autoencoder"].signature(row))


# ------------------------------------------------------------------------------ sequence classifiers


@pytest.mark.parametrize("frames", [1, 7, 18, MAX_FRAMES])
@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_a_sequence_of_any_length_is_padded_and_classified_as_the_signature_does(served, frames, content_type):
    sequence = _rng().normal(0.0, 0.6, (frames, N_COEFFICIENTS)).astype(np.float32) + 0.05
    padded = np.zeros((1, MAX_FRAMES, N_COEFFICIENTS), np.float32)
    padded[0, :frames] = sequence
    body = (
        json.dumps(sequence.tolist())
        if content_type == "application/json"
        else "\n".join(",".join(repr(float(value)) for value in frame) for frame in sequence)
    )
    for network in _SEQUENCE_NETWORKS:
        expected = served[network].signature(padded)["probabilities"]
        _assert_classified(served[network].answer(body, content_type), expected, SPEAKERS)


# ------------------------------------------------------------------------------ text classifiers

_TEXT_NETWORKS = [name for name in NETWORKS if NETWORKS[name].task.request_form == "text"]
TEXTS = ["A great film.", "Dull, boring — not good at all!", "映画 très bon 🎬"]


def _encoded_texts() -> np.ndarray:
    return np.array([text.encode() for text in TEXTS], dtype=object)


@pytest.mark.parametrize(
    "body, content_type",
    [
        (json.dumps({"instances": TEXTS}), "application/json"),
        (json.dumps({"inputs": TEXTS}), "application/json"),
        (json.dumps({"instances": [{"text": text} for text in TEXTS]}), "application/json"),
        (json.dumps({"instances": [{"b64": base64.b64encode(text.encode()).decode()} for text in TEXTS]}), None),
        (json.dumps(TEXTS, ensure_ascii=False), "application/json; charset=utf-8"),
        ("\n".join(TEXTS) + "\n\n", "text/plain"),
        ("\ufeff" + "\r\n".join(TEXTS), "text/plain"),
        ('"A great film."\n"Dull, boring — not good at all!"\n映画 très bon 🎬\n', "text/csv"),
    ],
)
def test_texts_in_every_form_are_classified_as_the_signature_does(served, body, content_type):
    for network in _TEXT_NETWORKS:
        expected = served[network].servable.run({"text": _encoded_texts()})["probabilities"]
        _assert_classified(served[network].answer(body, content_type), expected, TEXT_CLASSES)


def test_one_json_string_is_one_text(served):
    for network in _TEXT_NETWORKS:
        expected = served[network].servable.run({"text": _encoded_texts()[:1]})["probabilities"]
        _assert_classified(served[network].answer(json.dumps(TEXTS[0]), "application/json"), expected, TEXT_CLASSES)


# ------------------------------------------------------------------------------ bad input

_ALL = list(NETWORKS)
_NUMERIC_NETWORKS = [name for name in _ALL if name not in _TEXT_NETWORKS]
_IMAGE_NETWORKS = [name for name in _ALL if NETWORKS[name].task.request_form == "image"]
_TABULAR_NETWORKS = [name for name in _NUMERIC_NETWORKS if "text/csv" in NETWORKS[name].request_content_types]
_SEQUENCE_NETWORKS = [name for name in _ALL if NETWORKS[name].task.request_form == "sequence"]


def _bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, format="PNG")  # a few KB that would decode to 25 Mpixels
    return buffer.getvalue()


def _truncated_png() -> bytes:
    return image_bytes(_rng().integers(0, 256, (40, 40), dtype=np.uint8))[:-60]


BAD_REQUESTS = [
    # (networks, body, content type, words the message must hold)
    (_ALL, b"", "application/json", "empty"),
    (_ALL, b'{"instances": [1, 2', "application/json", "not valid JSON"),
    (_ALL, b"\xff\xfe\x00garbage", "application/json", "not valid JSON"),
    (_ALL, b"[" * 100_000, "application/json", "nested too deeply"),
    (_NUMERIC_NETWORKS, b'{"instances": [[1, 2], [3]]}', "application/json", "rectangular"),
    (_NUMERIC_NETWORKS, b'{"instances": [[[["a"]]]]}', "application/json", "numbers"),
    (_NUMERIC_NETWORKS, b'{"instances": [null]}', "application/json", "numbers"),
    (_ALL, b'{"instances": [1], "inputs": [1]}', "application/json", "not both"),
    (_ALL, b'{"instances": [1], "extra": 1}', "application/json", "'extra'"),
    (_ALL, b'{"signature_name": "other", "instances": [1]}', "application/json", "'other'"),
    (_NUMERIC_NETWORKS, b'{"instances": []}', "application/json", "N >= 1"),
    (_NUMERIC_NETWORKS, b'"just text"', "application/json", '{"instances": [...]} of shape'),
    (_NUMERIC_NETWORKS, b"[1, 2]", "text/plain", "text/plain"),
    (_ALL, b"[1, 2]", "application/x-npy", "application/json"),
    (_TEXT_NETWORKS, b'{"instances": [[1, 2], [3]]}', "application/json", "text 1 is a list, not a string"),
    (_TEXT_NETWORKS, b'{"instances": ["fine", null]}', "application/json", "text 2 is null"),
    (_TEXT_NETWORKS, b'{"instances": ["fine", 3.5]}', "application/json", "text 2 is a number"),
    (_TEXT_NETWORKS, b'{"inputs": {"text": "one"}}', "application/json", "'inputs' must be a list of texts"),
    (_TEXT_NETWORKS, b'{"instances": [{"b64": "%%%"}]}', "application/json", "not valid base64"),
    (_TEXT_NETWORKS, b'{"instances": [{"b64": "/w=="}]}', "application/json", "not UTF-8"),
    (_TEXT_NETWORKS, b'{"instances": []}', "application/json", "holds no text"),
    (_TEXT_NETWORKS, b'["fine", "   "]', "application/json", "text 2 is empty"),
    (_TEXT_NETWORKS, b'["\\ud83c"]', "application/json", "lone surrogate"),
    (_TEXT_NETWORKS, json.dumps(["x" * 5001]).encode(), "application/json", "5001 characters; at most 5000"),
    (_TEXT_NETWORKS, b"fine\n" + "é".encode("latin-1"), "text/plain", "not UTF-8 text (byte 0xe9 at position 5)"),
    (_TEXT_NETWORKS, b"\n \n\t\n", "text/plain", "holds no text"),
    (_TEXT_NETWORKS, b"\xff\xfe1,2", "text/csv", "not UTF-8"),
    (_TEXT_NETWORKS, b"one\ntwo, three\n", "text/csv", "CSV line 2 has 2 fields"),
    (_TEXT_NETWORKS, b"a review", "image/png", "text/plain"),
    (_TEXT_NETWORKS, b"true", "application/json", "expected texts as JSON"),
    (_IMAGE_NETWORKS, b"not an image at all", "image/png", "not a PNG or JPEG"),
    (_IMAGE_NETWORKS, _truncated_png(), "image/png", "could not be decoded"),
    (_IMAGE_NETWORKS, _bomb_png(), "image/png", "pixels"),
    (_IMAGE_NETWORKS, b"1,2,3", "text/csv", "image/png"),
    (_IMAGE_NETWORKS, b"[[1, 2], [3, 4]]", "application/json", "PNG or JPEG image"),
    (_TABULAR_NETWORKS, b"\x89PNG\r\n\x1a\n", "image/png", "text/csv"),
    (_TABULAR_NETWORKS, b"a,b\n1,2\n3\n", "text/csv", "columns"),
    (_TABULAR_NETWORKS, b"1,2\n3,x\n", "text/csv", "line 2: 'x' is not a number"),
    (_TABULAR_NETWORKS, b"1,nan\n", "text/csv", "NaN"),
    (_TABULAR_NETWORKS, b"only,a,header\n", "text/csv", "no data rows"),
    (_TABULAR_NETWORKS, b"1,2\x00,3\n", "text/csv", "CSV"),
    (_TABULAR_NETWORKS, b"\xff\xfe1,2", "text/csv", "UTF-8"),
    (_TABULAR_NETWORKS, b"[[1, 2, 3]]", "application/json", "shape"),
    (_TABULAR_NETWORKS, b'{"rows": true}', "application/json", '{"instances": [...]} of shape'),
    (["rnn"], json.dumps([1e39] * WINDOW).encode(), "application/json", "float32"),
    (["rnn"], json.dumps([10**400] * WINDOW).encode(), "application/json", "float32"),
    (["rnn"], b"[" + b", ".join([b"NaN"] * WINDOW) + b"]", "application/json", "NaN"),
    (["rnn"], json.dumps([True] * WINDOW).encode(), "application/json", "true/false"),
    (
        ["autoencoder"],
        json.dumps([[1.0] * N_FEATURES, [float("inf")] * N_FEATURES]).encode(),
        "application/json",
        "infinity",
    ),
    (
        _SEQUENCE_NETWORKS,
        json.dumps([[0.5] * N_COEFFICIENTS] * (MAX_FRAMES + 1)).encode(),
        "application/json",
        f"got {MAX_FRAMES + 1} frames; the model takes 1 to {MAX_FRAMES}",
    ),
    (_SEQUENCE_NETWORKS, b"", "text/csv", "empty"),
    (
        _SEQUENCE_NETWORKS,
        json.dumps([[0.5] * (N_COEFFICIENTS - 1)] * 5).encode(),
        "application/json",
        f"shape [5, {N_COEFFICIENTS - 1}]",
    ),
    (
        _SEQUENCE_NETWORKS,
        "\n".join([",".join(["0.5"] * (N_COEFFICIENTS + 1))] * 3).encode(),
        "text/csv",
        f"shape [3, {N_COEFFICIENTS + 1}]",
    ),
    (
        _SEQUENCE_NETWORKS,
        json.dumps([[0.5] * N_COEFFICIENTS, [0.0] * N_COEFFICIENTS]).encode(),
        "application/json",
        "frame 2 is all zeros",
    ),
    (
        _SEQUENCE_NETWORKS,
        json.dumps({"instances": [[[0.5] * N_COEFFICIENTS] * 7]}).encode(),
        "application/json",
        f"this model takes [N, {MAX_FRAMES}, {N_COEFFICIENTS}]",
    ),
]


@pytest.mark.parametrize("network", _ALL)
def test_bad_input_is_one_clear_exception_naming_the_problem(served, network):
    checked = 0
    for networks, body, content_type, words in BAD_REQUESTS:
        if network not in networks:
            continue
        error = served[network].rejection(body, content_type, len(body))
        assert words in str(error), (body[:60], str(error))
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("network", _ALL)
def test_a_body_over_six_megabytes_is_refused_before_it_is_read(served, network):
    class Unreadable(io.RawIOBase):
        def read(self, size=-1):
            raise AssertionError("the body was read")

    module = served[network].module
    with pytest.raises(module.InvalidInput) as caught:
        module.input_handler(Unreadable(), context("application/json", 6 * 1024 * 1024 + 1))
    assert "6291456 bytes" in str(caught.value)

    unannounced = io.BytesIO(b" " * (6 * 1024 * 1024 + 1))
    with pytest.raises(module.InvalidInput) as caught:
        module.input_handler(unannounced, context("application/json", None))
    assert "6291456 bytes" in str(caught.value)


# ------------------------------------------------------------------------------ output handler


def _tfs_response(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = status, body
    return response


def test_a_tf_serving_400_is_the_models_failure_with_its_message(served, capfd):
    """The request was checked against serving.json's shape first: TF Serving refusing it means the
    model and its serving.json disagree, a broken release, which the rollback alarm must count."""
    module = served["cnn"].module
    with pytest.raises(RuntimeError) as caught:
        module.output_handler(_tfs_response(400, b'{"error": "Expected tensor shape [-1,8,8,1]"}'), context())
    assert not isinstance(caught.value, module.InvalidInput)
    assert "Expected tensor shape [-1,8,8,1]" in str(caught.value)
    (line,) = capfd.readouterr().err.splitlines()
    assert json.loads(line)["handler_outcome"] == "model_failure"


def test_a_tf_serving_failure_is_not_blamed_on_the_input(served):
    module = served["cnn"].module
    with pytest.raises(RuntimeError) as caught:
        module.output_handler(_tfs_response(503, b"upstream connect error"), context())
    assert not isinstance(caught.value, module.InvalidInput) and "503" in str(caught.value)


def test_output_handler_reads_tf_serving_columnar_answers(served):
    module = served["autoencoder"].module
    body = json.dumps(
        {"outputs": {"reconstruction_error": [0.5, 2.0], "threshold": [0.75, 0.75], "embedding": [[1, 2], [3, 4]]}}
    ).encode()
    text, _ = module.output_handler(_tfs_response(200, body), context())
    assert json.loads(text)["predictions"] == [
        {"reconstruction_error": 0.5, "threshold": 0.75, "is_anomaly": False, "embedding": [1, 2]},
        {"reconstruction_error": 2.0, "threshold": 0.75, "is_anomaly": True, "embedding": [3, 4]},
    ]


# ------------------------------------------------------------------------------ the module itself


def test_a_broken_serving_json_fails_at_import_naming_the_key(tmp_path):
    handler_code(tmp_path)
    description = {
        **NETWORKS["rnn"].task.serving_description(),
        "input_name": "history",
        "input_shape": [24, 1],
        "window": 24,
    }
    (tmp_path / "serving.json").write_text(json.dumps(description))
    with pytest.raises(RuntimeError, match="n_features"):
        load_handler_module(tmp_path / "inference.py")


@pytest.mark.parametrize("network", _ALL)
def test_the_tasks_sample_request_is_answered_as_the_signature_answers_its_inputs(served, network):
    """Each task makes a request of the form a person sends for any of its networks, and the
    batch the handler should make of it: the handler's answer is the signature's on that batch."""
    model = served[network]
    request = NETWORKS[network].task.sample_request(model.module.SERVING, _rng())
    answer = model.answer(request.body, request.content_type)
    assert_answer_matches(answer, model.signature(request.inputs), model.module.SERVING)


def test_every_task_is_served_and_its_description_round_trips(served):
    """What each task writes into serving.json is what the handler reads back, for every task."""
    tasks_served = set()
    for name, network in NETWORKS.items():
        module, task = served[name].module, network.task
        assert (task.name, task.request_form, task.answer_form) == (
            module.TASK,
            module.REQUEST_FORM,
            module.ANSWER_FORM,
        )
        assert task.content_types == module.ACCEPTED_CONTENT_TYPES and task.outputs == module.OUTPUT_NAMES
        handler_needs = set(module.REQUEST_FIELDS[task.request_form]) | set(module.ANSWER_FIELDS[task.answer_form])
        written = set(task.serving_fields) | set(task.serving_description())
        assert handler_needs <= written, (task.name, handler_needs - written)
        tasks_served.add(task.name)
    assert tasks_served == set(TASKS)


def test_the_packages_code_lib_ships_are_pinned_alike_for_the_local_endpoint():
    """The local endpoint serves code/lib's binary packages from the project's environment."""
    project_pins = {line.lower() for line in (REPO_ROOT / "requirements-lock.txt").read_text().splitlines()}
    assert all(f"{name}=={version}".lower() in project_pins for name, version in model_lib.pins().items())
