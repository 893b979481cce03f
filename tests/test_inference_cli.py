"""`mlops serve` / `mlops invoke` and the endpoint client they use."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from inference_support import REPO_ROOT, exported_models, image_bytes, tarball_of
from process_support import free_port
from typer.testing import CliRunner

from inference.client import EncodedRequest, InputFileError, ModelError, encode_input, invoke, sniff_content_type
from inference.local_endpoint import START_SECONDS, LocalEndpoint
from mlops.commands.endpoints import app, default_endpoint_name
from mlops.errors import RunFailed, UsageError

MLOPS = str(Path(sys.executable).with_name("mlops"))  # the installed console script
IMAGE_TYPES = ("application/json", "image/png", "image/jpeg")
TABULAR_TYPES = ("application/json", "text/csv")
TEXT_TYPES = ("application/json", "text/csv", "text/plain")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return exported_models(tmp_path_factory)


@pytest.fixture(scope="module")
def cnn_endpoint(models):
    with LocalEndpoint(models["cnn"], "mlops-local-cnn") as endpoint:
        yield endpoint


@pytest.fixture()
def digit_png(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    path.write_bytes(image_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))
    return path


# ------------------------------------------------------------------------ encoding the input


@pytest.mark.parametrize(
    "name, data, accepted, content_type",
    [
        ("digit.PNG", image_bytes(np.zeros((8, 8), np.uint8)), IMAGE_TYPES, "image/png"),
        ("photo.jpeg", image_bytes(np.zeros((8, 8), np.uint8), "JPEG"), IMAGE_TYPES, "image/jpeg"),
        ("rows.csv", b"1,2\n3,4\n", TABULAR_TYPES, "text/csv"),
        ("series.json", b"[1, 2, 3]", TABULAR_TYPES, "application/json"),
        ("no-suffix", b'  {"instances": []}', IMAGE_TYPES, "application/json"),
        ("reviews.txt", b"A gem, truly.\nDull.\n", TEXT_TYPES, "text/plain"),
    ],
)
def test_a_file_is_sent_as_its_suffix_or_its_bytes_say(tmp_path, name, data, accepted, content_type):
    path = tmp_path / name
    path.write_bytes(data)
    assert encode_input(path, accepted) == EncodedRequest(data, content_type)


@pytest.mark.parametrize(
    "data, content_type",
    [
        (image_bytes(np.zeros((4, 4), np.uint8)), "image/png"),
        (image_bytes(np.zeros((4, 4), np.uint8), "JPEG"), "image/jpeg"),
        (b"\xef\xbb\xbf\n [[1, 2]]", "application/json"),
        (b"ppm\n315.2\n", "text/csv"),
        (b"\x00\xff\xfe binary", None),
        (b"   \n", None),
    ],
)
def test_stdin_is_sniffed(data, content_type):
    assert sniff_content_type(data) == content_type


def test_stdin_dash_reads_the_stream():
    request = encode_input("-", TABULAR_TYPES, stdin=io.BytesIO(b"[1, 2, 3]"))
    assert (request.body, request.content_type) == (b"[1, 2, 3]", "application/json")


@pytest.mark.parametrize(
    "name, data, accepted, words",
    [
        ("missing.png", None, IMAGE_TYPES, "cannot read"),
        ("empty.json", b"", IMAGE_TYPES, "is empty"),
        ("huge.json", b" " * (6 * 1024 * 1024 + 1), IMAGE_TYPES, "6291456 bytes"),
        ("blob.bin", b"\x00\x01\xff", IMAGE_TYPES, "cannot tell"),
        ("digit.png", b"\x89PNG\r\n\x1a\n", TABULAR_TYPES, "this network takes application/json, text/csv"),
    ],
)
def test_an_input_that_cannot_be_sent_is_refused_before_calling(tmp_path, name, data, accepted, words):
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(InputFileError, match=words):
        encode_input(path, accepted)


# ------------------------------------------------------------------------ the client


@pytest.mark.slow
def test_the_client_decodes_the_answer(cnn_endpoint, digit_png):
    answer = invoke("mlops-local-cnn", encode_input(digit_png, IMAGE_TYPES), endpoint_url=cnn_endpoint.url)
    (prediction,) = answer["predictions"]
    assert prediction["label"] in prediction["probabilities"]


@pytest.mark.slow
def test_a_model_error_keeps_the_original_status_and_message(cnn_endpoint, tmp_path):
    path = tmp_path / "wrong.json"
    path.write_text('{"instances": [[1, 2]]}')
    with pytest.raises(ModelError) as caught:
        invoke("mlops-local-cnn", encode_input(path, IMAGE_TYPES), endpoint_url=cnn_endpoint.url)
    assert caught.value.original_status == 500
    assert caught.value.message.startswith("'instances' has shape [1, 2]; this model takes [N, 8, 8, 1]")
    assert str(caught.value).startswith("the model answered 500: 'instances' has shape")


# ------------------------------------------------------------------------ mlops invoke


def _run(*args: str, stdin: bytes | None = None):
    return CliRunner().invoke(app, list(args), input=stdin)


@pytest.mark.slow
def test_invoke_prints_the_answer(cnn_endpoint, digit_png):
    result = _run("invoke", "cnn", str(digit_png), "--local", cnn_endpoint.url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["predictions"][0]["label"] in [str(digit) for digit in range(10)]


@pytest.mark.slow
def test_invoke_reads_stdin(cnn_endpoint):
    result = _run("invoke", "cnn", "-", "--local", cnn_endpoint.url, stdin=image_bytes(np.zeros((8, 8), np.uint8)))
    assert result.exit_code == 0 and "probabilities" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, error, words",
    [
        (["invoke", "nope", "x.png"], UsageError, "unknown network 'nope'"),
        (["invoke", "rnn", "{digit}"], UsageError, "this network takes application/json, text/csv"),
        (["invoke", "cnn", "{digit}", "--endpoint-name", "other"], UsageError, "Endpoint other not found"),
        (["invoke", "cnn", "{bad}"], RunFailed, "the model answered 500: the body is not a PNG or JPEG image"),
    ],
)
def test_invoke_failures_are_one_line_errors(cnn_endpoint, digit_png, tmp_path, args, error, words):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    args = [arg.format(digit=digit_png, bad=bad) for arg in args] + ["--local", cnn_endpoint.url]
    result = _run(*args)
    assert isinstance(result.exception, error) and words in str(result.exception), result.exception


def test_invoke_of_an_unreachable_endpoint_is_a_usage_error(digit_png):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    result = _run("invoke", "cnn", str(digit_png), "--local", url)
    assert isinstance(result.exception, UsageError) and "Could not connect" in str(result.exception)


def test_endpoint_names_follow_the_stage_prefix():
    assert default_endpoint_name("cnn") == "mlops-local-cnn"
    assert default_endpoint_name("rnn", "prod") == "mlops-prod-rnn"


# ------------------------------------------------------------------------ mlops serve


@pytest.mark.slow
def test_serve_refuses_a_model_of_another_network(models, tmp_path):
    result = _run("serve", "cnn", str(tarball_of(models["rnn"], tmp_path / "model.tar.gz")))
    assert isinstance(result.exception, UsageError) and "holds a 'rnn' model, not 'cnn'" in str(result.exception)
    result = _run("serve", "cnn", str(tmp_path / "missing"))
    assert isinstance(result.exception, UsageError) and "no code/serving.json" in str(result.exception)


@pytest.mark.slow
@pytest.mark.integration
def test_mlops_serve_answers_until_sigterm_then_exits_0_and_frees_the_port(models, tmp_path, digit_png):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tarball = tarball_of(models["cnn"], tmp_path / "model.tar.gz")
    scratch = tmp_path / "scratch"  # where the tarball is extracted
    scratch.mkdir()
    server = subprocess.Popen(
        [MLOPS, "serve", "cnn", str(tarball), "--port", str(port)],
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert server.stdout is not None
    try:
        deadline = time.monotonic() + START_SECONDS  # two workers load TensorFlow: slow on a busy machine
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if requests.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a connection waits while the model loads
                assert time.monotonic() < deadline, "the endpoint never answered /ping"
                time.sleep(0.2)
        invoked = subprocess.run(
            [MLOPS, "invoke", "cnn", str(digit_png), "--local", url], capture_output=True, text=True, timeout=60
        )
        assert invoked.returncode == 0 and json.loads(invoked.stdout)["predictions"], invoked.stderr
        bad = tmp_path / "bad.json"
        bad.write_text("[1, 2]")
        refused = subprocess.run(
            [MLOPS, "invoke", "cnn", str(bad), "--local", url], capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 1
        assert "the model answered 500: this image_classifier takes a PNG or JPEG image" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        unsendable = subprocess.run(
            [MLOPS, "invoke", "rnn", str(digit_png), "--local", url], capture_output=True, text=True, timeout=60
        )
        assert unsendable.returncode == 2 and "this network takes" in unsendable.stderr
        assert next(scratch.iterdir()).name.startswith("mlops-endpoint-")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    output = server.stdout.read().decode()
    assert f"mlops-local-cnn serving {tarball} at {url}" in output and "endpoint mlops-local-cnn stopped" in output
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    assert not list(scratch.iterdir())
