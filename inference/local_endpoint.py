"""A local SageMaker endpoint: one exported model behind a real HTTP server on this machine.

It runs the artifact's own `code/inference.py` the way SageMaker's TensorFlow Serving container
does (imported by path; called with the request stream and the container's `Context`), and
answers the handlers' `:predict` calls itself from the SavedModel's `serving_default` signature in
TensorFlow Serving's REST format (`inference.tf_serving`). Routes:

    GET  /ping                                  container health check
    POST /invocations                           container contract: the handler's own status
                                                (200; 400/413/415 for bad input; 500 otherwise)
    POST /endpoints/<name>/invocations          SageMaker Runtime InvokeEndpoint: a non-2xx from
                                                the handler becomes 424 ModelError, as in AWS
    POST /v1/models/model[/versions/<v>]:predict TensorFlow Serving REST (context.rest_uri)
    GET  /v1/models/model[/versions/<v>]        TensorFlow Serving model status

An unmodified boto3 client talks to it:
    boto3.client("sagemaker-runtime", endpoint_url=endpoint.url).invoke_endpoint(...)

    with LocalEndpoint("model.tar.gz", "mlops-local-cnn") as endpoint:
        requests.post(endpoint.url + "/invocations", data=png, headers={"Content-Type": "image/png"})
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import re
import signal
import socket
import socketserver
import sys
import threading
import uuid
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote, urlsplit

import requests

from inference.artifact import ModelArtifact

if TYPE_CHECKING:
    from inference.tf_serving import SavedModelServable

log = logging.getLogger(__name__)

# The container's request context, field for field (tfs_utils.Context in the container's source).
Context = namedtuple("Context", "model_name, model_version, method, rest_uri, grpc_port, channel, "
                                "custom_attributes, request_content_type, accept_header, content_length")

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker Runtime's real-time InvokeEndpoint limit
TFS_MODEL_NAME = "model"  # the container serves /opt/ml/model under this name
PRODUCTION_VARIANT = "AllTraffic"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
JSON = "application/json"
# Idle keep-alive connections are closed after this long, so no thread waits forever on a client.
KEEP_ALIVE_SECONDS = 60.0

_RUNTIME_PATH = re.compile(r"/endpoints/([^/]+)/invocations")
_TFS_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?(:[a-z]+)?")
_TFS_ATTRIBUTE = re.compile(r"(tfs-[a-z\-]+=[^,]+)")

Handler = Callable[[io.BytesIO, Context], tuple]


class LocalEndpoint:
    """Serves one model folder or model.tar.gz; `start()` loads it once and returns when it answers."""

    def __init__(self, model_path: str | Path, endpoint_name: str, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.model_path = Path(model_path)
        self.endpoint_name = endpoint_name
        self.host = host
        self.port = port
        self._artifact: ModelArtifact | None = None
        self._server: _EndpointServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the endpoint is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> LocalEndpoint:
        from inference.tf_serving import SavedModelServable  # TensorFlow loads only when serving

        artifact = ModelArtifact.open(self.model_path)
        code_dir = str(artifact.handler_path.parent)
        # The container puts code/ on the Python path, so a handler may import its siblings.
        sys.path.insert(0, code_dir)
        try:
            servable = SavedModelServable(artifact.saved_model_dir, artifact.version)
            invoke_handler = make_handler(load_handler_module(artifact.handler_path), servable)
            server = _EndpointServer((self.host, self.port), self.endpoint_name, servable, invoke_handler)
        except BaseException:
            sys.path.remove(code_dir)
            artifact.cleanup()
            raise
        self._artifact, self._server = artifact, server
        # A short poll interval makes stop() quick; the loop is idle otherwise.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name=f"endpoint-{self.endpoint_name}", daemon=True)
        self._thread.start()
        log.info("endpoint %s serving %s at %s", self.endpoint_name, self.model_path, self.url)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Lets in-flight requests finish (new invocations get 503), closes connections, frees the port."""
        if self._server is None:
            return
        # Still accepting while draining: a lone `handler` in flight may need a new REST connection.
        self._server.drain(timeout)
        self._server.shutdown()
        self._server.close_connections(timeout)
        self._server.server_close()
        self._thread.join(timeout)
        sys.path.remove(str(self._artifact.handler_path.parent))
        self._artifact.cleanup()
        self._server = None
        log.info("endpoint %s stopped", self.endpoint_name)

    def serve_until_signal(self) -> None:
        """Runs in the foreground until SIGTERM or SIGINT, then stops cleanly (main thread only)."""
        stop_requested = threading.Event()
        previous = {number: signal.signal(number, lambda *_: stop_requested.set())
                    for number in (signal.SIGTERM, signal.SIGINT)}
        try:
            stop_requested.wait()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self.stop()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def load_handler_module(handler_path: Path) -> ModuleType:
    """`code/inference.py` imported by path under the name "inference", as the container does."""
    spec = importlib.util.spec_from_file_location("inference", handler_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_handler(module: ModuleType, servable: SavedModelServable) -> Handler:
    """The container's choice: `handler` if defined, else `input_handler` + `output_handler`.

    With the pair, the `:predict` call is answered in-process by `servable` and its answer
    wrapped in the `requests.Response` the output handler expects; a lone `handler` makes its
    own REST call to `context.rest_uri`, which the endpoint serves.
    """
    if hasattr(module, "handler"):
        return module.handler
    if not (hasattr(module, "input_handler") and hasattr(module, "output_handler")):
        raise NotImplementedError("Handlers are not implemented correctly in user script.")

    def handler(data: io.BytesIO, context: Context) -> tuple:
        processed = module.input_handler(data, context)
        if isinstance(processed, str):
            processed = processed.encode()
        if not isinstance(processed, bytes):
            raise TypeError(f"input_handler must return str or bytes, got {type(processed).__name__}")
        status, body = servable.predict(processed)
        return module.output_handler(_tfs_response(status, body, context.rest_uri), context)

    return handler


def _tfs_response(status: int, body: bytes, url: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body  # requests keeps a received body here; .content/.text/.json() read it
    response.headers["Content-Type"] = JSON
    response.encoding = "utf-8"
    response.url = url
    return response


def http_status_of(error: Exception) -> int:
    """The 4xx a handler's exception asks for (`http_status`, e.g. InvalidInput), else 500."""
    status = getattr(error, "http_status", None)
    return status if isinstance(status, int) and 400 <= status < 500 else 500


class _EndpointServer(ThreadingHTTPServer):
    """Tracks connections so that stopping can finish in-flight requests and close idle ones."""

    daemon_threads = True
    # With socketserver's default backlog of 5, 16 clients connecting at once sometimes got resets.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], endpoint_name: str, servable: SavedModelServable,
                 invoke_handler: Handler) -> None:
        super().__init__(address, _RequestHandler)
        self.endpoint_name = endpoint_name
        self.servable = servable
        self.invoke_handler = invoke_handler
        self.stopping = False
        self._busy: dict[socket.socket, bool] = {}
        self._changed = threading.Condition()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS query) only to fill server_name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
        else:
            log.exception("error serving %s", client_address)

    def rest_uri(self, attributes: dict[str, str]) -> str:
        """TF Serving's predict URL as the container builds it, from `tfs-*` custom attributes."""
        host, port = self.server_address[:2]
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        uri = f"http://{host}:{port}/v1/models/{attributes.get('tfs-model-name', TFS_MODEL_NAME)}"
        if "tfs-model-version" in attributes:
            uri += "/versions/" + attributes["tfs-model-version"]
        return uri + ":" + attributes.get("tfs-method", "predict")

    def connection_opened(self, connection: socket.socket) -> None:
        with self._changed:
            self._busy[connection] = False

    def connection_busy(self, connection: socket.socket, busy: bool) -> None:
        with self._changed:
            self._busy[connection] = busy
            self._changed.notify_all()

    def connection_closed(self, connection: socket.socket) -> None:
        with self._changed:
            self._busy.pop(connection, None)
            self._changed.notify_all()

    def drain(self, timeout: float) -> None:
        """Waits until no request is being answered; from now on every connection closes after one."""
        with self._changed:
            self.stopping = True
            self._close_idle()
            self._changed.wait_for(lambda: not any(self._busy.values()), timeout)

    def close_connections(self, timeout: float) -> None:
        with self._changed:
            self._close_idle()
            self._changed.wait_for(lambda: not self._busy, timeout)

    def _close_idle(self) -> None:
        for connection, busy in self._busy.items():
            if not busy:
                # Wakes the thread waiting for the connection's next request: it reads EOF and ends.
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # the client closed it meanwhile


class _RequestHandler(BaseHTTPRequestHandler):
    server: _EndpointServer
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    disable_nagle_algorithm = True  # small responses must not wait for delayed ACKs
    timeout = KEEP_ALIVE_SECONDS
    server_version = "mlops-local-endpoint"

    def setup(self) -> None:
        super().setup()
        self.server.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connection_closed(self.connection)

    def parse_request(self) -> bool:
        # A request line has arrived: from here until the answer is sent this connection is busy.
        self.server.connection_busy(self.connection, True)
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.connection_busy(self.connection, False)
            if self.server.stopping:
                self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self._send(200, b"", JSON)
            return
        match = _TFS_PATH.fullmatch(path)
        if match and match[3] is None:
            if self._servable_missing(match):
                return
            self._send_json(200, self.server.servable.status())
            return
        self._send_json(404, {"error": f"no route GET {path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        runtime = _RUNTIME_PATH.fullmatch(path)
        predict = _TFS_PATH.fullmatch(path)
        if self.server.stopping and (runtime or path == "/invocations"):
            self._discard_body_or_close()
            if runtime:
                self._send_runtime_error(503, "ServiceUnavailable", "The endpoint is shutting down.")
            else:
                self._send_json(503, {"error": "the endpoint is shutting down"})
        elif path == "/invocations":
            self._invoke(runtime_api=False)
        elif runtime:
            name = unquote(runtime[1])
            if name != self.server.endpoint_name:
                self._discard_body_or_close()
                self._send_runtime_error(400, "ValidationError",
                                         f"Endpoint {name} not found. This local endpoint serves "
                                         f"{self.server.endpoint_name}.")
            else:
                self._invoke(runtime_api=True)
        elif predict and predict[3] == ":predict":
            if self._servable_missing(predict):
                return
            body = self._read_body(runtime_api=False)
            if body is not None:
                status, answer = self.server.servable.predict(body)
                self._send(status, answer, JSON)
        else:
            self._discard_body_or_close()
            self._send_json(404, {"error": f"no route POST {path}"})

    def _invoke(self, runtime_api: bool) -> None:
        body = self._read_body(runtime_api)
        if body is None:
            return
        try:
            answer, content_type = self.server.invoke_handler(io.BytesIO(body), self._context(len(body)))
            status = 200
        except Exception as error:  # noqa: BLE001 - as the container: any handler failure is an answer
            status = http_status_of(error)
            if status == 500:
                log.exception("handler failed")
            answer, content_type = json.dumps({"error": str(error)}), JSON
        if isinstance(answer, str):
            answer = answer.encode()
        content_type = content_type or JSON
        if not runtime_api:
            self._send(status, answer, content_type)
        elif status < 300:
            self._send(status, answer, content_type, {"x-Amzn-Invoked-Production-Variant": PRODUCTION_VARIANT})
        else:
            self._send_model_error(status, answer)

    def _context(self, content_length: int) -> Context:
        custom_attributes = self.headers.get(CUSTOM_ATTRIBUTES_HEADER)
        attributes = dict(match.split("=", 1) for match in _TFS_ATTRIBUTE.findall(custom_attributes or ""))
        return Context(model_name=attributes.get("tfs-model-name"),
                       model_version=attributes.get("tfs-model-version"),
                       method=attributes.get("tfs-method"),
                       rest_uri=self.server.rest_uri(attributes),
                       grpc_port=None,  # no gRPC here: handlers must use rest_uri
                       channel=None,
                       custom_attributes=custom_attributes,
                       request_content_type=self.headers.get("Content-Type") or JSON,
                       accept_header=self.headers.get("Accept") or JSON,
                       content_length=content_length)

    def _servable_missing(self, match: re.Match) -> bool:
        name, version = match[1], match[2]
        if name == TFS_MODEL_NAME and version in (None, str(self.server.servable.version)):
            return False
        self._discard_body_or_close()
        wanted = f"Specific({name}, {version})" if version else f"Latest({name})"
        self._send_json(404, {"error": f"Servable not found for request: {wanted}"})
        return True

    # ------------------------------------------------------------------------------ bodies

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            return -1
        return length

    def _read_body(self, runtime_api: bool) -> bytes | None:
        """The body, or None after answering 411/400/413 (a too large body is never read)."""
        length = self._content_length()
        if length is None and self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send_json(411, {"error": "send the body with a Content-Length header"})
            return None
        if length is not None and length < 0:
            self.close_connection = True
            self._send_json(400, {"error": "the Content-Length header is not a number of bytes"})
            return None
        if length is not None and length > MAX_PAYLOAD_BYTES:
            # The unread body would be taken for the next request: this connection ends here.
            self.close_connection = True
            if runtime_api:
                self._send_json(413, {"message": f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."})
            else:
                self._send_json(413, {"error": f"the request body is {length} bytes; SageMaker accepts at "
                                               f"most {MAX_PAYLOAD_BYTES} bytes per real-time request"})
            return None
        return self.rfile.read(length) if length else b""

    def _discard_body_or_close(self) -> None:
        length = self._content_length()
        if length is not None and 0 <= length <= MAX_PAYLOAD_BYTES:
            self.rfile.read(length)
        elif length is not None or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    # ------------------------------------------------------------------------------ answers

    def _send_model_error(self, status: int, container_body: bytes) -> None:
        """SageMaker Runtime's answer when the container answered non-2xx (botocore's ModelError)."""
        original = container_body.decode("utf-8", errors="replace")
        side = "client" if status < 500 else "server"
        self._send_runtime_error(424, "ModelError", (
            f"Received {side} error ({status}) from primary with message \"{original}\". "
            f"See the local endpoint's log for more information."),
            OriginalStatusCode=status, OriginalMessage=original)

    def _send_runtime_error(self, status: int, error_type: str, message: str, **fields) -> None:
        # rest-json: botocore reads the error code from this header and the modeled fields from the body.
        self._send(status, json.dumps({"message": message, **fields}).encode(), JSON,
                   {"x-amzn-ErrorType": error_type})

    def _send_json(self, status: int, document: dict) -> None:
        self._send(status, json.dumps(document).encode(), JSON)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection or self.server.stopping:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
