"""Request and response handling for SageMaker's TensorFlow Serving container.

Training copies this file, `request_forms.py` beside it and the packages they import (`code/lib`)
into every model artifact's `code/`, beside the `serving.json` it writes. The container imports
this file by path and, per request, calls `input_handler(data, context)` (request body stream ->
TensorFlow Serving REST JSON), POSTs the result to `context.rest_uri` (`/v1/models/<name>:predict`),
then calls `output_handler(response, context)` (the `requests.Response` -> `(body, content_type)`).

What a request may hold depends on the `request_form` that the model's task wrote into
`serving.json` (training/tasks/ holds the tasks; each picks one form of each kind):
- image:    a PNG/JPEG image, or TF Serving JSON of shape [N, H, W, C]
- window:   JSON list of values or of rows, or CSV (one observation per line), the most recent
            `window` observations; or TF Serving JSON [N, window, n_features]
- rows:     CSV rows, JSON {"rows": [[...], ...]} or a bare list of rows, or TF Serving JSON [N, n_features]
- sequence: 1 to `max_length` frames of `n_features` numbers, as a JSON list of frames or CSV (a
            frame per line), zero-padded here; or TF Serving JSON [N, max_length, n_features], padded
- text:     texts as TF Serving JSON {"instances": ["...", ...]}, a JSON list of texts or one JSON
            string, CSV (a text per record) or plain text (a text per line); UTF-8, non-blank, at
            most `max_characters` each; the model tokenizes them itself
The answer is JSON: {"predictions": [one object per row]}, shaped by the `answer_form`. Under a
batch transform (SAGEMAKER_BATCH), `application/jsonlines` and `text/csv` bodies hold one record
per line and are answered one line per record (`batch_records.py`).

The container answers ANY exception of a handler with HTTP 500 {"error": str(e)}, so a client's
bad request and the model's own failure look alike to SageMaker (both count as
Invocation5XXErrors). Each failure is therefore also written to stderr, which SageMaker sends to
the endpoint's log group, as one JSON line: {"handler_outcome": "bad_input" | "model_failure",
...}. Bad input is `InvalidInput` (its message says what was wrong and what is expected);
anything else, TF Serving's own refusals included (the request was checked against the model's
shape first), is the model's failure, which the endpoint's rollback alarm counts.

Only the standard library and what `code/lib` holds (numpy, Pillow) may be imported here:
nothing else from the project exists inside the container.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _sibling(name: str):
    """A module shipped beside this one, loaded by path: whatever imported this file, and however."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"{name}.py is missing beside {__file__}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


request_forms = _sibling("request_forms")
batch_records = _sibling("batch_records")
InvalidInput = request_forms.InvalidInput
JSON = request_forms.JSON
# One line on stderr (the endpoint's log group) per failed request; its message is cut to this
# many characters, so the line stays one atomic write to the pipe.
LOGGED_MESSAGE_CHARS = 500

# What serving.json must hold for each form, besides input_name, input_shape and outputs.
REQUEST_FIELDS = {
    "image": (),
    "window": ("window", "n_features"),
    "rows": ("n_features",),
    "sequence": ("max_length", "n_features"),
    "text": ("max_characters",),
}
ANSWER_FIELDS = {"classes": ("class_names",), "forecast": (), "anomaly": ()}
ANSWER_OUTPUTS = {
    "classes": ("probabilities",),
    "forecast": ("forecast",),
    "anomaly": ("reconstruction_error", "threshold", "embedding"),
}
INPUT_DTYPES = ("float32", "int64", "string")


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
    if (request_form == "text") != (config.get("input_dtype") == "string") or (
        request_form == "text" and config["input_shape"] != []
    ):
        raise RuntimeError(
            f"serving.json: the text form takes one string per example (input_shape [], input_dtype string) and "
            f"only it does; got {request_form} with {config['input_shape']}, {config.get('input_dtype', 'float32')}"
        )
    return config


# Checked once, so that a broken artifact fails at container start, not per request.
SERVING = check_serving_config(json.loads(Path(__file__).with_name("serving.json").read_text()))
READER = request_forms.RequestReader(SERVING)
TASK, INPUT_NAME, REQUEST_FORM = READER.task, READER.input_name, READER.request_form
ROW_SHAPE, ACCEPTED_CONTENT_TYPES = READER.row_shape, READER.accepted_content_types
ANSWER_FORM: str = SERVING["answer_form"]
BATCH = batch_records.BatchRequests(READER, InvalidInput)
OUTPUT_NAMES = tuple(SERVING["outputs"])


@contextmanager
def _outcome_logged():
    """Re-raises every failure after writing one JSON line naming whose it is."""
    try:
        yield
    except Exception as error:
        outcome = "bad_input" if isinstance(error, InvalidInput) else "model_failure"
        line = {"handler_outcome": outcome, "exception": type(error).__name__, "error": str(error)}
        line["error"] = line["error"][:LOGGED_MESSAGE_CHARS]
        sys.stderr.write(json.dumps(line) + "\n")
        sys.stderr.flush()
        raise


def input_handler(data, context) -> str:
    """The request body stream -> TensorFlow Serving REST JSON for this model's `serving_default`."""
    with _outcome_logged():
        if BATCH.reads(context.request_content_type):
            return BATCH.tf_serving_json(data, context)
        return READER.tf_serving_json(data, context)


# --------------------------------------------------------------------------------------- output


def output_handler(response, context) -> tuple[str, str]:
    """TensorFlow Serving's `requests.Response` -> (JSON body, content type) a person can read."""
    with _outcome_logged():
        if response.status_code != 200:
            raise _serving_error(response)
        outputs = _output_arrays(json.loads(response.content))
        answer = {"classes": _classifications, "forecast": _forecasts, "anomaly": _anomaly_scores}[ANSWER_FORM]
        answers = answer(outputs)
        per_record = BATCH.answer(answers, context.accept_header) if batch_records.in_batch_transform() else None
        return per_record or (json.dumps({"predictions": answers}), JSON)


def _serving_error(response) -> Exception:
    """The request was checked against the model's shape and dtype: a refusal is the model's."""
    try:
        message = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
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
