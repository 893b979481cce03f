"""The local endpoint over real HTTP: container routes, SageMaker Runtime via boto3, TF Serving REST."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import numpy as np
import psutil
import pytest
import requests
import tensorflow as tf
from inference_support import (
    CNN_CLASSES,
    N_FEATURES,
    WINDOW,
    assert_answer_matches,
    exported_models,
    image_bytes,
    tarball_of,
)
from process_support import left_running, listening

from inference.artifact import ArtifactError
from inference.local_endpoint import LocalEndpoint
from training.networks import NETWORKS

SIX_MB = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return exported_models(tmp_path_factory)


@pytest.fixture(scope="module")
def endpoints(models):
    started = {network: LocalEndpoint(path, f"mlops-local-{network}").start() for network, path in models.items()}
    yield started
    for endpoint in started.values():
        endpoint.stop()


@pytest.fixture(scope="module")
def signatures(models):
    """Each model's `serving_default`, loaded on its own: the reference every answer is checked against."""
    return {
        network: tf.saved_model.load(str(path / "1")).signatures["serving_default"] for network, path in models.items()
    }


def runtime_client(endpoint: LocalEndpoint):
    """An unmodified boto3 client, pointed at the local endpoint."""
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1")


def _reference(signatures, network: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    outputs = signatures[network](**{name: tf.constant(value, tf.float32) for name, value in inputs.items()})
    return {name: tensor.numpy() for name, tensor in outputs.items()}


# ------------------------------------------------------------------------ SageMaker Runtime (boto3)


@pytest.mark.slow
@pytest.mark.parametrize("network", list(NETWORKS))
def test_boto3_invoke_endpoint_gets_the_signatures_predictions(models, endpoints, signatures, network):
    """The task's sample request (a PNG, CSV lines, text...) through an unmodified boto3 client: the
    answer holds what the signature gives for the batch the request stands for."""
    serving = json.loads((models[network] / "code" / "serving.json").read_text())
    request = NETWORKS[network].task.sample_request(serving, np.random.default_rng(11))
    response = runtime_client(endpoints[network]).invoke_endpoint(
        EndpointName=f"mlops-local-{network}",
        Body=request.body,
        ContentType=request.content_type,
        Accept="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    dtype = tf.string if serving["input_dtype"] == "string" else tf.float32
    expected = signatures[network](**{serving["input_name"]: tf.constant(request.inputs, dtype)})
    outputs = {name: value.numpy() for name, value in expected.items()}
    assert_answer_matches(json.loads(response["Body"].read())["predictions"], outputs, serving)


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, content_type, words",
    [
        (b"\x89PNG\r\n\x1a\n broken", "image/png", "not a PNG or JPEG image"),
        (b'{"instances": [[1, 2, 3]]}', "application/json", "has shape [1, 3]"),
        (b"1,2,3", "text/csv", "image/png"),
    ],
)
def test_bad_input_is_a_model_error_of_original_status_500_naming_the_problem(endpoints, body, content_type, words):
    """As in AWS: the container answers any handler exception 500, which Runtime wraps in a ModelError."""
    client = runtime_client(endpoints["cnn"])
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(EndpointName="mlops-local-cnn", Body=body, ContentType=content_type)
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    assert words in json.loads(error["OriginalMessage"])["error"]
    assert "Received server error (500) from primary" in error["Error"]["Message"]


@pytest.mark.slow
def test_an_unknown_endpoint_name_is_a_validation_error(endpoints):
    client = runtime_client(endpoints["cnn"])
    with pytest.raises(client.exceptions.ValidationError, match="Endpoint mlops-local-nope not found"):
        client.invoke_endpoint(EndpointName="mlops-local-nope", Body=b"{}", ContentType="application/json")


@pytest.mark.slow
def test_concurrent_requests_each_get_their_own_answer(endpoints, signatures):
    batches = np.random.default_rng(5).uniform(0, 255, (64, 1, 8, 8, 1)).astype(np.float32)
    expected = [_reference(signatures, "cnn", image=batch)["probabilities"][0].tolist() for batch in batches]
    client = runtime_client(endpoints["cnn"])

    def invoke(index: int) -> list[float]:
        response = client.invoke_endpoint(
            EndpointName="mlops-local-cnn",
            ContentType="application/json",
            Body=json.dumps({"instances": batches[index].tolist()}),
        )
        return list(json.loads(response["Body"].read())["predictions"][0]["probabilities"].values())

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(invoke, range(len(batches)))) == expected


@pytest.mark.slow
def test_many_clients_connecting_at_once_are_all_answered(endpoints):
    host, port = endpoints["cnn"].url.removeprefix("http://").split(":")
    clients = 64
    start_together = threading.Barrier(clients)

    def ping(_) -> int:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        start_together.wait()
        try:
            connection.request("GET", "/ping")
            return connection.getresponse().status
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        assert list(pool.map(ping, range(clients))) == [200] * clients


@pytest.mark.slow
def test_each_worker_keeps_to_its_own_share_of_the_cores(endpoints):
    cores = sorted(psutil.Process().cpu_affinity())
    workers = psutil.Process(endpoints["cnn"]._process.pid).children()
    assert len(workers) == 2
    shares = [sorted(worker.cpu_affinity()) for worker in workers]
    if len(cores) < len(workers):
        assert shares == [cores] * len(workers)
    else:
        assert sorted(core for share in shares for core in share) == cores[: len(shares[0]) * len(workers)]
        assert len({len(share) for share in shares}) == 1


def test_a_replaced_worker_takes_the_share_of_the_one_it_replaces(monkeypatch):
    from inference import endpoint_server

    monkeypatch.setattr(endpoint_server.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    server = SimpleNamespace(num_workers=2, WORKERS={})
    first, second, replacement = SimpleNamespace(), SimpleNamespace(), SimpleNamespace()
    for pid, worker in ((101, first), (102, second)):
        endpoint_server.share_out_cores(server, worker)
        server.WORKERS[pid] = worker
    assert (first.cores, second.cores) == ({0, 1}, {2, 3})
    del server.WORKERS[101]
    endpoint_server.share_out_cores(server, replacement)
    assert replacement.cores == {0, 1}


# ------------------------------------------------------------------------ container routes


@pytest.mark.slow
def test_ping_and_invocations_answer_as_the_container_does(endpoints):
    """200 with the handler's answer; 500 {"error": str(e)} for ANY handler exception, bad input too."""
    url = endpoints["rnn"].url
    assert requests.get(url + "/ping").status_code == 200
    ok = requests.post(url + "/invocations", json=[330.0] * WINDOW)
    assert (ok.status_code, ok.headers["Content-Type"]) == (200, "application/json")
    bad = requests.post(url + "/invocations", data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert bad.status_code == 500 and f"most recent {WINDOW}" in bad.json()["error"]
    unsupported = requests.post(url + "/invocations", data=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert unsupported.status_code == 500 and "text/csv" in unsupported.json()["error"]


def _raw_request(url: str, head: str, body: bytes = b"", timeout: float = 5.0) -> bytes:
    """Sends the request head (and `body`) and returns everything the server answers before closing."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(head.encode() + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.slow
@pytest.mark.parametrize(
    "path, words",
    [
        ("/invocations", b"SageMaker accepts at most 6291456 bytes"),
        ("/endpoints/mlops-local-cnn/invocations", b"HTTP content length exceeded 6291456 bytes."),
    ],
)
def test_an_oversized_body_gets_413_without_being_read(endpoints, path, words):
    # Only the head is sent: a server waiting for the 7 MB body would never answer.
    answer = _raw_request(
        endpoints["cnn"].url,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {SIX_MB + 1}\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer and words in answer


@pytest.mark.slow
@pytest.mark.parametrize(
    "path, words",
    [
        ("/invocations", "SageMaker accepts at most 6291456 bytes"),
        ("/endpoints/mlops-local-cnn/invocations", "HTTP content length exceeded 6291456 bytes."),
    ],
)
def test_a_client_sending_an_oversized_body_reads_the_413_answer(endpoints, path, words):
    # The client sends all 7 MB before it reads: a server closing on the unread body resets the
    # connection, and the client sees a broken pipe instead of the answer.
    response = requests.post(
        endpoints["cnn"].url + path,
        data=b"\0" * (SIX_MB + 1024 * 1024),
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert response.status_code == 413 and response.headers["Connection"] == "close"
    assert words in response.text
    assert requests.get(endpoints["cnn"].url + "/ping", timeout=10).status_code == 200


@pytest.mark.slow
def test_a_chunked_body_is_refused_with_411(endpoints):
    answer = _raw_request(
        endpoints["cnn"].url, "POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 411 ")


@pytest.mark.slow
def test_one_keep_alive_connection_serves_many_requests(endpoints):
    host, port = endpoints["cnn"].url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    sockets = set()
    for _ in range(5):
        connection.request(
            "POST", "/invocations", body=image_bytes(np.zeros((8, 8), np.uint8)), headers={"Content-Type": "image/png"}
        )
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["predictions"]
        sockets.add(connection.sock)
    connection.close()
    assert len(sockets) == 1 and None not in sockets


@pytest.mark.slow
def test_keep_alive_and_new_connection_clients_are_served_side_by_side(endpoints):
    host, port = endpoints["cnn"].url.removeprefix("http://").split(":")
    body = image_bytes(np.zeros((8, 8), np.uint8))
    kept = http.client.HTTPConnection(host, int(port), timeout=10)
    kept.connect()
    kept_socket = kept.sock
    for _ in range(3):
        kept.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png"})
        kept_answer = kept.getresponse()
        assert kept_answer.status == 200 and kept_answer.getheader("Connection") == "keep-alive"
        assert json.loads(kept_answer.read())["predictions"]
        # One new connection per request, as a client without a connection pool makes them.
        answer = _raw_request(
            endpoints["cnn"].url,
            f"POST /endpoints/mlops-local-cnn/invocations HTTP/1.1\r\n"
            f"Host: x\r\nContent-Type: image/png\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n",
            body,
        )
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head  # and then it closed
        assert json.loads(payload)["predictions"]
    assert kept.sock is kept_socket
    kept.close()


@pytest.mark.slow
def test_a_client_leaving_its_closed_connection_open_holds_up_no_one(models):
    with LocalEndpoint(models["cnn"], "mlops-local-cnn", workers=1) as endpoint:
        host, port = endpoint.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as lingering:
            lingering.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert lingering.recv(4096).startswith(b"HTTP/1.1 200 ")  # and it does not close its end
            started = time.perf_counter()
            assert requests.get(endpoint.url + "/ping", timeout=10).status_code == 200
            waited = time.perf_counter() - started
    # Closed on the worker's main thread, as gunicorn does, the first would hold it for 2 s.
    assert waited < 1.0


# ------------------------------------------------------------------------ TensorFlow Serving REST


@pytest.mark.slow
def test_tf_serving_rest_formats_with_one_output(endpoints, signatures):
    url = endpoints["cnn"].url + "/v1/models/model:predict"
    batch = np.random.default_rng(3).uniform(0, 255, (2, 8, 8, 1)).astype(np.float32)
    expected = _reference(signatures, "cnn", image=batch)["probabilities"].tolist()
    assert requests.post(url, json={"instances": batch.tolist()}).json() == {"predictions": expected}
    assert requests.post(url, json={"instances": [{"image": row} for row in batch.tolist()]}).json() == {
        "predictions": expected
    }
    assert requests.post(url, json={"inputs": batch.tolist()}).json() == {"outputs": expected}
    assert requests.post(url, json={"inputs": {"image": batch.tolist()}}).json() == {"outputs": expected}


@pytest.mark.slow
def test_tf_serving_rest_formats_with_several_outputs(endpoints, signatures):
    url = endpoints["autoencoder"].url + "/v1/models/model/versions/1:predict"
    rows = np.random.default_rng(4).uniform(0, 1, (2, N_FEATURES)).astype(np.float32)
    reference = _reference(signatures, "autoencoder", features=rows)
    expected = {name: value.tolist() for name, value in reference.items()}
    assert requests.post(url, json={"instances": rows.tolist()}).json() == {
        "predictions": [{name: expected[name][index] for name in sorted(expected)} for index in range(2)]
    }
    assert requests.post(url, json={"inputs": rows.tolist()}).json() == {"outputs": expected}


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, words",
    [
        (b"not json", "JSON Parse error"),
        (b'{"instances": [[1, 2]]}', "expected shape [-1, 30]"),
        (b'{"instances": [["a"]]}', "expected float32 values, got strings"),
        (b'{"foo": 1}', "Missing 'inputs' or 'instances' key"),
        (b'{"instances": [], "inputs": []}', "Not both 'inputs' and 'instances' can be set"),
    ],
)
def test_tf_serving_rest_answers_400_with_an_error_for_a_bad_tensor(endpoints, body, words):
    response = requests.post(endpoints["autoencoder"].url + "/v1/models/model:predict", data=body)
    assert response.status_code == 400 and words in response.json()["error"]


@pytest.mark.slow
def test_tf_serving_model_status_and_unknown_servables(endpoints):
    url = endpoints["cnn"].url
    status = requests.get(url + "/v1/models/model").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    missing = requests.post(url + "/v1/models/other:predict", json={"instances": [1]})
    assert missing.status_code == 404 and "Latest(other)" in missing.json()["error"]
    assert requests.get(url + "/v1/models/model/versions/7").status_code == 404


# ------------------------------------------------------------------------ artifacts and handler styles

ECHO_HANDLER = '''
import json
import time

import requests


def handler(data, context):
    """The single-function style: it makes its own REST call to TF Serving."""
    body = data.read()
    if context.custom_attributes and "slow" in context.custom_attributes:
        time.sleep(0.5)
    response = requests.post(context.rest_uri, data=body)
    fields = {k: v for k, v in context._asdict().items() if k != "channel"}
    answer = {"context": fields, "status": response.status_code, "tfs": response.json()}
    return json.dumps(answer), "application/json"
'''


@pytest.fixture(scope="module")
def echo_model(models, tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("echo") / "model"
    shutil.copytree(models["cnn"], model_dir)
    (model_dir / "code" / "inference.py").write_text(ECHO_HANDLER)
    return model_dir


@pytest.mark.slow
def test_a_lone_handler_calls_the_real_rest_uri_with_the_containers_context(echo_model, signatures):
    batch = np.full((1, 8, 8, 1), 200.0, np.float32)
    body = json.dumps({"instances": batch.tolist()})
    with LocalEndpoint(echo_model, "echo") as endpoint:
        answer = requests.post(
            endpoint.url + "/invocations",
            data=body,
            headers={"X-Amzn-SageMaker-Custom-Attributes": "tfs-model-version=1,trace=abc"},
        ).json()
        tfs_url = endpoint.tfs_url
    assert answer["context"] == {
        "model_name": None,
        "model_version": "1",
        "method": None,
        "rest_uri": f"{tfs_url}/v1/models/model/versions/1:predict",
        "grpc_port": None,
        "custom_attributes": "tfs-model-version=1,trace=abc",
        "request_content_type": "application/json",
        "accept_header": "*/*",
        "content_length": len(body),
    }  # requests' default Accept, passed on as is
    assert answer["status"] == 200
    assert answer["tfs"] == {"predictions": _reference(signatures, "cnn", image=batch)["probabilities"].tolist()}


@pytest.mark.slow
def test_lone_handlers_filling_every_thread_still_get_their_own_predict_answered(echo_model):
    workers, threads = 2, 2
    body = json.dumps({"instances": np.zeros((1, 8, 8, 1)).tolist()})
    with (
        LocalEndpoint(echo_model, "echo", workers=workers, threads=threads) as endpoint,
        ThreadPoolExecutor(3 * workers * threads) as clients,
    ):
        answers = list(
            clients.map(
                lambda _: requests.post(endpoint.url + "/invocations", data=body, timeout=20),
                range(3 * workers * threads),
            )
        )
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    assert {answer.json()["status"] for answer in answers} == {200}


@pytest.mark.slow
def test_stop_finishes_in_flight_requests_closes_idle_connections_and_frees_the_port(echo_model):
    endpoint = LocalEndpoint(echo_model, "echo").start()
    host, port = endpoint.url.removeprefix("http://").split(":")
    idle = socket.create_connection((host, int(port)))
    idle.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")

    answers: dict[str, Any] = {}
    in_flight = threading.Thread(
        target=lambda: answers.setdefault(
            "in flight",
            requests.post(
                endpoint.url + "/invocations",
                json={"instances": [[[[0.0]] * 8] * 8]},
                headers={"X-Amzn-SageMaker-Custom-Attributes": "slow"},
            ),
        )
    )
    in_flight.start()
    time.sleep(0.2)  # the request is inside the slow handler now
    late = threading.Timer(
        0.1, lambda: answers.setdefault("late", requests.post(endpoint.url + "/invocations", data=b"{}"))
    )
    late.start()
    started = time.perf_counter()
    endpoint.stop()
    in_flight.join()
    late.join()
    assert time.perf_counter() - started < 5
    finished, refused = answers["in flight"], answers["late"]
    assert finished.status_code == 200 and finished.json()["status"] == 200
    assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
    assert idle.recv(4096) == b""  # the idle keep-alive connection was closed
    idle.close()
    with socket.socket() as probe:
        # As any server binds (connections the server closed linger in TIME_WAIT): fails while one listens.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, int(port)))
        probe.listen()


@pytest.mark.slow
def test_a_prepared_endpoint_serves_a_model_that_appears_later_and_stops_without_one(models, tmp_path, signatures):
    model_dir = tmp_path / "model"  # not there yet, as in `mlops local` before its pipeline has run
    endpoint = LocalEndpoint(model_dir, "prepared", workers=1).prepare()
    try:
        shutil.copytree(models["cnn"], model_dir)
        endpoint.start()
        answer = requests.post(
            endpoint.url + "/invocations",
            data=image_bytes(np.full((8, 8), 200, np.uint8)),
            headers={"Content-Type": "image/png"},
        ).json()
    finally:
        endpoint.stop()
    expected = _reference(signatures, "cnn", image=np.full((1, 8, 8, 1), 200.0, np.float32))["probabilities"][0]
    assert [answer["predictions"][0]["probabilities"][name] for name in CNN_CLASSES] == expected.tolist()

    unused = LocalEndpoint(model_dir, "unused", workers=1).prepare()
    server, port = psutil.Process(unused._started().pid), int(unused.url.rsplit(":", 1)[1])
    unused.stop()
    assert left_running([server]) == [] and not listening(port)


@pytest.mark.slow
def test_a_model_tarball_is_served_and_its_extraction_removed(models, tmp_path, signatures):
    tarball = tarball_of(models["autoencoder"], tmp_path / "model.tar.gz")
    rows = np.ones((1, N_FEATURES), np.float32)
    with LocalEndpoint(tarball, "from-tar", workers=1) as endpoint:
        assert endpoint._artifact is not None
        extracted = endpoint._artifact.root
        assert extracted.is_dir()
        answer = requests.post(
            endpoint.url + "/invocations", data=",".join(["1"] * N_FEATURES), headers={"Content-Type": "text/csv"}
        ).json()
    assert not extracted.exists()
    expected = _reference(signatures, "autoencoder", features=rows)
    assert answer["predictions"][0]["reconstruction_error"] == float(expected["reconstruction_error"][0])


@pytest.mark.slow
@pytest.mark.parametrize("missing, words", [("1", "saved_model.pb"), ("code/inference.py", "code/inference.py")])
def test_an_incomplete_artifact_is_refused_naming_what_is_missing(models, tmp_path, missing, words):
    model_dir = tmp_path / "model"
    shutil.copytree(models["cnn"], model_dir)
    target = model_dir / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ArtifactError, match=words):
        LocalEndpoint(model_dir, "broken").start()
