"""Generated requests against every network's handler in-process, and over HTTP against one: never a
server failure, and always a message naming the problem.

Bodies: arbitrary bytes, JSON of any shape, nesting and number (huge, NaN, infinity), tensors
near the model's shape (read from the model itself), images of random sizes, modes and formats
(some truncated or corrupted), CSV of random cells, texts of any Unicode (empty, blank, lone
surrogates, longer than the limit) in every text form and bytes that are not UTF-8 where text is
expected, under right and wrong content types. A handler may answer or raise its
InvalidInput with a message; anything else is the model's failure and fails the test. Over HTTP
the container answers both with 500 (as in AWS), so there the endpoint's log tells them apart:
every failed request logged as bad input, none as a model failure. Derandomized, so every run
checks the same examples.
"""

from __future__ import annotations

import base64
import io
import json
import string

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from inference_support import Served, context, exported_models
from PIL import Image

from inference.local_endpoint import LocalEndpoint
from training.networks import NETWORKS

# Examples per network and path. The generator must reach
# the model (at least ANSWERED of them answered), not only the validation (at least REJECTED refused).
EXAMPLES = 400
ANSWERED, REJECTED = EXAMPLES // 80, EXAMPLES // 2
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

OTHER_TYPES = [
    "text/plain",
    "application/octet-stream",
    "image/gif",
    "",
    "application/json; charset=utf-8",
    "TEXT/CSV",
    "image/png; q=1",
    "multipart/form-data",
    "application/x-image",
    "*/*",
]

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 255),
    st.integers(-(10**40), 10**40),
    st.integers(0, 255),
    st.just(10**400),
)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_keys = st.one_of(
    st.sampled_from(["instances", "inputs", "rows", "image", "history", "features", "signature_name", "b64"]),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(json_keys, children, max_size=4)),
    max_leaves=50,
)


@st.composite
def near_tensors(draw, row_shape: tuple[int, ...]) -> bytes:
    """JSON tensors of the model's shape or close to it, in every form the handlers read."""
    shape = [draw(st.integers(0, 3))] + [max(1, size + draw(st.sampled_from([0, 0, 0, -1, 1]))) for size in row_shape]
    if draw(st.booleans()) and len(shape) > 1:
        shape = shape[1:] if draw(st.booleans()) else [*shape, draw(st.integers(1, 2))]
    values = draw(
        arrays(
            np.float64, tuple(shape), elements=st.floats(allow_nan=True, allow_infinity=True), fill=st.floats(0, 255)
        )
    )
    data = values.tolist()
    form = draw(st.sampled_from(["instances", "inputs", "named-rows", "named-inputs", "rows", "bare", "both"]))
    name = draw(st.sampled_from(["image", "history", "features", "other"]))
    document = {
        "instances": {"instances": data},
        "inputs": {"inputs": data},
        "named-rows": {"instances": [{name: row} for row in data] if isinstance(data, list) else data},
        "named-inputs": {"inputs": {name: data}},
        "rows": {"rows": data},
        "bare": data,
        "both": {"instances": data, "inputs": data},
    }[form]
    return json.dumps(document).encode()


@st.composite
def images(draw) -> bytes:
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image_format = draw(st.sampled_from(["PNG", "JPEG"]))
    modes = ["L", "RGB", "CMYK"] if image_format == "JPEG" else ["L", "RGB", "RGBA", "P", "1", "LA", "I;16"]
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(draw(st.sampled_from(modes))).save(buffer, format=image_format)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if damage == "flip":
        position = draw(st.integers(0, len(data) - 1))
        return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
    return data


@st.composite
def csv_bodies(draw, width: int) -> bytes:
    cells = st.one_of(numbers.map(str), st.text(string.printable, max_size=6), st.just(""))
    well_formed = st.lists(
        st.lists(st.floats(-1e3, 1e3).map(str), min_size=width, max_size=width), min_size=0, max_size=30
    )
    rows = draw(st.one_of(well_formed, st.lists(st.lists(cells, min_size=1, max_size=width + 2), max_size=30)))
    header = [",".join(f"c{index}" for index in range(width))] if draw(st.booleans()) else []
    return "\n".join(header + [",".join(row) for row in rows]).encode()


# Texts: any Unicode (lone surrogates included), blank ones, and some longer than the limit.
texts = st.one_of(
    st.text(max_size=60),
    st.text(st.characters(codec=None), max_size=30),
    st.sampled_from(["", " ", "\t\n", "\u3000", "\ud800", "a\x00b"]),
    st.integers(4990, 5010).map(lambda length: "é" * length),
)


@st.composite
def text_bodies(draw) -> tuple[str, bytes]:
    """(content type, body) of texts in every form the text handler reads, and bytes that are not
    UTF-8 where text is expected."""
    chosen = draw(st.lists(texts, max_size=5))
    form = draw(st.sampled_from(["instances", "inputs", "list", "string", "b64", "plain", "csv", "bytes"]))
    if form == "plain":
        return "text/plain", "\n".join(chosen).encode("utf-8", "surrogatepass")
    if form == "csv":
        return "text/csv", "\n".join(f'"{text}"' if "," in text else text for text in chosen).encode(
            "utf-8", "surrogatepass"
        )
    if form == "bytes":
        return draw(st.sampled_from(["text/plain", "text/csv"])), draw(st.binary(max_size=200))
    if form == "b64":
        encoded = [base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() for text in chosen]
        return "application/json", json.dumps({"instances": [{"b64": text} for text in encoded]}).encode()
    document = {"instances": chosen, "inputs": chosen, "list": chosen, "string": chosen[0] if chosen else ""}[form]
    return "application/json", json.dumps(document if form in ("list", "string") else {form: document}).encode()


@st.composite
def plain_json(draw, network: str, row_shape: tuple[int, ...]) -> bytes:
    """The friendly JSON forms of the network's request form, usually well formed, so that many
    requests reach the model."""
    values = numbers if draw(st.booleans()) else st.floats(-1e4, 1e4)
    form = NETWORKS[network].task.request_form
    if form == "window":
        series = draw(st.lists(values, min_size=row_shape[0] - 4, max_size=row_shape[0] + 16))
        return json.dumps(series if draw(st.booleans()) else [[value] for value in series]).encode()
    if form in ("rows", "sequence"):
        # One width per request, not per row: a request of many rows still reaches the model
        # often enough, whatever constants Hypothesis mixes in from the modules loaded so far.
        width = row_shape[-1] + draw(st.sampled_from([-1, 0, 0, 1]))
        rows = draw(
            st.lists(
                st.lists(values, min_size=width, max_size=width),
                min_size=1,
                max_size=row_shape[0] + 2 if form == "sequence" else 4,
            )
        )
        return json.dumps({"rows": rows} if form == "rows" and draw(st.booleans()) else rows).encode()
    return json.dumps(draw(st.lists(values, max_size=70))).encode()


@st.composite
def requests_for(draw, network: str, row_shape: tuple[int, ...]) -> tuple[bytes, str | None]:
    """(body, content type): usually the type the body is, sometimes any other. `row_shape` is the
    model's input row."""
    form = NETWORKS[network].task.request_form
    kind, body = draw(
        st.one_of(
            st.tuples(st.just("application/octet-stream"), st.binary(max_size=3000)),
            st.tuples(st.just("application/json"), json_values.map(lambda value: json.dumps(value).encode())),
            st.tuples(st.just("application/json"), near_tensors(row_shape)),
            st.tuples(st.just("image"), images()),
            *(
                [text_bodies(), text_bodies()]
                if form == "text"
                else [
                    st.tuples(st.just("application/json"), plain_json(network, row_shape)),
                    st.tuples(st.just("text/csv"), csv_bodies(1 if form == "window" else row_shape[-1])),
                ]
            ),
        )
    )
    natural = {"image": "image/jpeg" if body[:3] == b"\xff\xd8\xff" else "image/png"}.get(kind, kind)
    content_type = draw(
        st.sampled_from([natural] * 4 + list(NETWORKS[network].request_content_types) + OTHER_TYPES + [None])
    )
    return body, content_type


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("network", list(NETWORKS))
def test_the_handler_answers_or_raises_invalid_input_for_any_body(models, network):
    served = Served(models[network])
    outcomes = {"answered": 0, "rejected": 0}

    @FUZZ_SETTINGS
    @given(request=requests_for(network, served.module.ROW_SHAPE))
    def check(request):
        body, content_type = request
        try:
            text, answer_type = served.handler(io.BytesIO(body), context(content_type, len(body)))
        except served.module.InvalidInput as error:
            assert str(error)
            outcomes["rejected"] += 1
        else:
            assert answer_type == "application/json" and json.loads(text)["predictions"]
            outcomes["answered"] += 1

    check()
    assert outcomes["answered"] >= ANSWERED and outcomes["rejected"] >= REJECTED, outcomes


@pytest.mark.slow
def test_the_endpoint_never_fails_by_itself_names_every_problem_and_keeps_serving(models, tmp_path):
    """Over HTTP, for one network: what the endpoint adds to the handler (its routes, the status
    each route answers with, a worker that survives every request) is the same for every network,
    and each network's handler is fuzzed in-process above."""
    network = next(iter(NETWORKS))
    serving = json.loads((models[network] / "code" / "serving.json").read_text())
    name = f"mlops-local-{network}"
    statuses: dict[int, int] = {}
    log = tmp_path / "endpoint.log"
    # One worker: answers, not throughput, are checked here, and each worker loads TensorFlow.
    with LocalEndpoint(models[network], name, workers=1, log_path=log) as endpoint, requests.Session() as session:

        @FUZZ_SETTINGS
        @given(
            request=requests_for(network, tuple(serving["input_shape"])),
            route=st.sampled_from(["/invocations", f"/endpoints/{name}/invocations", "/v1/models/model:predict"]),
        )
        def check(request, route):
            body, content_type = request
            headers = {} if content_type is None else {"Content-Type": content_type}
            response = session.post(endpoint.url + route, data=body, headers=headers, timeout=30)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            answer = response.json()
            if route == "/invocations":
                assert response.status_code in (200, 500), answer
                assert answer.get("error") or answer["predictions"], answer
            elif route.startswith("/endpoints/"):
                assert response.status_code in (200, 424), answer
                if response.status_code == 424:
                    assert response.headers["x-amzn-ErrorType"] == "ModelError"
                    assert answer["OriginalStatusCode"] == 500, answer
                    assert json.loads(answer["OriginalMessage"])["error"], answer
                else:
                    assert answer["predictions"], answer
            else:
                assert response.status_code in (200, 400), answer
                assert answer.get("error") or answer.get("predictions") or answer.get("outputs"), answer

        check()
        assert session.get(endpoint.url + "/ping").status_code == 200
        sample = NETWORKS[network].task.sample_request(serving, np.random.default_rng(0))
        answered = session.post(
            endpoint.url + "/invocations", data=sample.body, headers={"Content-Type": sample.content_type}
        )
        assert answered.status_code == 200, answered.text
    assert statuses.get(200, 0) >= ANSWERED, statuses
    outcomes = [
        json.loads(line)["handler_outcome"] for line in log.read_text().splitlines() if "handler_outcome" in line
    ]
    failed = statuses.get(500, 0) + statuses.get(424, 0)
    assert failed >= REJECTED // 3 and outcomes == ["bad_input"] * failed, (statuses, set(outcomes))
