"""The local endpoint's routes as a WSGI application; the HTTP server around it is gunicorn's.

One request in, one answer out, as SageMaker's TF Serving container (a Falcon app under gunicorn)
and SageMaker Runtime answer it (the routes are listed in `inference.local_endpoint`). The app
also knows whether the endpoint is draining (new invocations get 503) and how many requests are
in flight, which is what the server's graceful stop waits for.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections import deque, namedtuple
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING

from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from inference.async_inference import AsyncInvocations
    from inference.capture import CaptureWriter
    from inference.tf_serving import SavedModelServable

log = logging.getLogger(__name__)

# The container's request context, field for field (tfs_utils.Context in the container's source).
Context = namedtuple(
    "Context",
    "model_name, model_version, method, rest_uri, grpc_port, channel, "
    "custom_attributes, request_content_type, accept_header, content_length",
)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker Runtime's real-time InvokeEndpoint limit
TFS_MODEL_NAME = "model"  # the container serves /opt/ml/model under this name
PRODUCTION_VARIANT = "AllTraffic"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
JSON = "application/json"
# After a 413 the unread body is read and dropped (so the client, still sending, reads the answer
# instead of a reset), for at most this long without a byte arriving.
DISCARD_IDLE_SECONDS = 5.0

_RUNTIME_PATH = re.compile(r"/endpoints/([^/]+)/invocations")
_ASYNC_PATH = re.compile(r"/endpoints/([^/]+)/async-invocations")
_TFS_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?(:[a-z]+)?")
_TFS_ATTRIBUTE = re.compile(r"(tfs-[a-z\-]+=[^,]+)")

Handler = Callable[[io.BytesIO, Context], tuple]


class TakingTurns:
    """A context manager letting one thread in at a time, in the order they came (no barging).

    Python threads of one process take turns at the GIL in no fixed order: with 8 invocations in
    the handlers at once, the slowest hundredth took 17-25 ms for what takes 0.5 ms. Here the one
    leaving hands its turn straight to the longest waiting: a request waits for those ahead of it.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()  # each held until its thread's turn comes
        self._taken = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._taken:
                self._taken = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the thread before, which leaves the turn taken for this one

    def __exit__(self, *exc_info) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._taken = False


class EndpointApp:
    """Routes a request to the handler, the servable or an error answer (thread-safe).

    The handlers run one invocation at a time, first come first served (`TakingTurns`); a lone
    `handler`'s own `:predict` call must then reach this process on other threads, which is why
    `rest_uri` names TF Serving's own address (`tfs_address`), as in the container (port 8501).
    """

    def __init__(
        self,
        endpoint_name: str,
        servable: SavedModelServable,
        invoke_handler: Handler,
        tfs_address: tuple[str, int],
        capture: CaptureWriter | None = None,
        container_max_payload: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.servable = servable
        self.invoke_handler = invoke_handler
        self.tfs_address = tfs_address
        self.capture = capture  # data capture (inference.capture), as the endpoint config asks
        # The container takes any body (nginx's client_max_body_size 0); what reaches it is SageMaker's
        # limit: 6 MB in real time, MaxPayloadInMB under a batch transform (inference.endpoint_server).
        self.container_max_payload = container_max_payload
        self.async_invocations: AsyncInvocations | None = None  # InvokeEndpointAsync (inference.async_inference)
        self.draining = False
        self._handler_turns = TakingTurns()
        self._in_flight = 0
        self._changed = threading.Condition()

    def __call__(self, environ: dict, start_response: Callable):
        with self._counted():
            request = Request(environ)
            response = self.route(request)
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        if self.draining:
            response.headers["Connection"] = "close"
        return response(environ, start_response)

    def drain(self, timeout: float) -> bool:
        """From now on invocations get 503; waits until no request is in flight (False: timed out)."""
        with self._changed:
            self.draining = True
            idle = self._changed.wait_for(lambda: self._in_flight == 0, timeout)
        if self.async_invocations is not None:
            self.async_invocations.close()  # what is queued is answered before the process ends
        if self.capture is not None:
            self.capture.close()  # what is buffered is written before the process ends
        return idle

    @contextmanager
    def _counted(self):
        with self._changed:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    # ------------------------------------------------------------------------------ routes

    def route(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET":
            return self._get(path)
        if request.method != "POST":
            return _json(405, {"error": f"no route {request.method} {path}"})
        runtime = _RUNTIME_PATH.fullmatch(path) or _ASYNC_PATH.fullmatch(path)
        predict = _TFS_PATH.fullmatch(path)
        if self.draining and (runtime or path == "/invocations"):
            if runtime:
                return _runtime_error(503, "ServiceUnavailable", "The endpoint is shutting down.")
            return _json(503, {"error": "the endpoint is shutting down"})
        if path == "/invocations":
            return self._invoke(request, runtime_api=False)
        if runtime:
            name = runtime[1]  # PATH_INFO is percent-decoded already
            if name != self.endpoint_name:
                return _runtime_error(
                    400,
                    "ValidationError",
                    f"Endpoint {name} not found. This local endpoint serves {self.endpoint_name}.",
                )
            if path.endswith("/async-invocations"):
                return self._invoke_async(request)
            return self._invoke(request, runtime_api=True)
        if predict and predict[3] == ":predict":
            missing = self._servable_missing(predict)
            if missing:
                return missing
            body = _read_body(request, runtime_api=False, limit=self.container_max_payload)
            if isinstance(body, Response):
                return body
            status, answer = self.servable.predict(body)
            return Response(answer, status, content_type=JSON)
        return _json(404, {"error": f"no route POST {path}"})

    def _get(self, path: str) -> Response:
        if path == "/ping":
            return Response(b"", 200, content_type=JSON)
        match = _TFS_PATH.fullmatch(path)
        if match and match[3] is None:
            return self._servable_missing(match) or _json(200, self.servable.status())
        return _json(404, {"error": f"no route GET {path}"})

    def _invoke(self, request: Request, runtime_api: bool) -> Response:
        """One invocation: the request's body in, the answer out (where data capture would record both)."""
        body = _read_body(request, runtime_api, None if runtime_api else self.container_max_payload)
        if isinstance(body, Response):
            return body
        status, answer, content_type = self.call_container(
            body,
            request.headers.get("Content-Type"),
            request.headers.get("Accept"),
            request.headers.get(CUSTOM_ATTRIBUTES_HEADER),
        )
        response = Response(answer, status, content_type=content_type)
        if runtime_api and status < 300:
            response.headers["x-Amzn-Invoked-Production-Variant"] = PRODUCTION_VARIANT
            if self.capture is not None:
                self.capture.record(
                    request=body,
                    request_content_type=request.headers.get("Content-Type"),
                    response=response.get_data(),
                    response_content_type=response.content_type,
                    inference_id=request.headers.get(INFERENCE_ID_HEADER),
                )
        elif runtime_api:
            response = _model_error(status, response.get_data())
        return response

    def call_container(
        self, body: bytes, content_type: str | None, accept: str | None, custom_attributes: str | None
    ) -> tuple[int, bytes, str]:
        """The container's `/invocations`: (status, body, content type) of the handler's answer."""
        try:
            context = self._context(content_type, accept, custom_attributes, len(body))  # needs no turn
            with self._handler_turns:
                answer, answer_type = self.invoke_handler(io.BytesIO(body), context)
            status = 200
        except Exception as error:
            # As the container (python_service.py, _handle_invocation_post): ANY exception is a 500,
            # a bad request's too; a handler cannot choose another status there.
            log.exception("exception handling request: %s", error)
            status, answer, answer_type = 500, json.dumps({"error": str(error)}), JSON
        return status, answer.encode() if isinstance(answer, str) else answer, answer_type or JSON

    def _invoke_async(self, request: Request) -> Response:
        """SageMaker Runtime's InvokeEndpointAsync: accepted with 202, answered in the background."""
        from inference.async_inference import FAILURE_LOCATION, OUTPUT_LOCATION, RequestRefused

        if self.async_invocations is None:
            return _runtime_error(
                400, "ValidationError", f"Endpoint {self.endpoint_name} is not configured for asynchronous inference."
            )
        body = _read_body(request, runtime_api=True)
        if isinstance(body, Response):
            return body
        try:
            accepted = self.async_invocations.accept(request.headers, body)
        except RequestRefused as error:
            return _runtime_error(400, "ValidationError", str(error))
        response = _json(202, {"InferenceId": accepted.inference_id})
        response.headers[OUTPUT_LOCATION] = accepted.output_location
        if accepted.failure_location:
            response.headers[FAILURE_LOCATION] = accepted.failure_location
        return response

    def _context(
        self, content_type: str | None, accept: str | None, custom_attributes: str | None, content_length: int
    ) -> Context:
        attributes = dict(match.split("=", 1) for match in _TFS_ATTRIBUTE.findall(custom_attributes or ""))
        return Context(
            model_name=attributes.get("tfs-model-name"),
            model_version=attributes.get("tfs-model-version"),
            method=attributes.get("tfs-method"),
            rest_uri=self.rest_uri(attributes),
            grpc_port=None,  # no gRPC here: handlers must use rest_uri
            channel=None,
            custom_attributes=custom_attributes,
            request_content_type=content_type or JSON,
            accept_header=accept or JSON,
            content_length=content_length,
        )

    def rest_uri(self, attributes: dict[str, str]) -> str:
        """TF Serving's predict URL as the container builds it, from `tfs-*` custom attributes."""
        host, port = self.tfs_address
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        uri = f"http://{host}:{port}/v1/models/{attributes.get('tfs-model-name', TFS_MODEL_NAME)}"
        if "tfs-model-version" in attributes:
            uri += "/versions/" + attributes["tfs-model-version"]
        return uri + ":" + attributes.get("tfs-method", "predict")

    def _servable_missing(self, match: re.Match) -> Response | None:
        name, version = match[1], match[2]
        if name == TFS_MODEL_NAME and version in (None, str(self.servable.version)):
            return None
        wanted = f"Specific({name}, {version})" if version else f"Latest({name})"
        return _json(404, {"error": f"Servable not found for request: {wanted}"})


# ------------------------------------------------------------------------------ bodies


def _read_body(request: Request, runtime_api: bool, limit: int | None = None) -> bytes | Response:
    """The body, or the 411/400/413 answer (a too large body is answered before it is read).
    `limit`: the container path's (the Runtime's is always 6 MB)."""
    raw_length = request.headers.get("Content-Length")
    if raw_length is None and request.headers.get("Transfer-Encoding"):
        return _closing(_json(411, {"error": "send the body with a Content-Length header"}))
    try:
        length = int(raw_length or 0)
    except ValueError:
        length = -1
    if length < 0:
        return _closing(_json(400, {"error": "the Content-Length header is not a number of bytes"}))
    if length > (MAX_PAYLOAD_BYTES if runtime_api else limit or MAX_PAYLOAD_BYTES):
        if runtime_api:
            answer = _json(413, {"message": f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."})
        else:
            answer = _json(
                413,
                {
                    "error": f"the request body is {length} bytes; SageMaker accepts at most "
                    f"{limit or MAX_PAYLOAD_BYTES} bytes per request"
                },
            )
        answer.call_on_close(lambda: _discard_after_answer(request.environ, length))
        return _closing(answer)
    return request.stream.read(length) if length else b""


def _discard_after_answer(environ: dict, length: int) -> None:
    """Once the answer is sent: ends the answer with a FIN, then reads and drops the unread body.

    Closing with unread bytes makes the kernel send a reset, and a client still sending its body
    would see a broken pipe instead of the answer. Reading it lets the client finish sending and
    then read the answer; the FIN first means a client that sends no body sees the answer end.
    """
    connection: socket.socket | None = environ.get("gunicorn.socket")
    if connection is None:
        return
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(DISCARD_IDLE_SECONDS)
        stream, remaining = environ["wsgi.input"], length
        deadline = time.monotonic() + 60
        while remaining > 0 and time.monotonic() < deadline:
            chunk = stream.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
    except OSError:
        pass  # the client went away: nothing left to protect


# ------------------------------------------------------------------------------ answers


def _model_error(status: int, container_body: bytes) -> Response:
    """SageMaker Runtime's answer when the container answered non-2xx (botocore's ModelError)."""
    original = container_body.decode("utf-8", errors="replace")
    side = "client" if status < 500 else "server"
    return _runtime_error(
        424,
        "ModelError",
        (
            f'Received {side} error ({status}) from primary with message "{original}". '
            f"See the local endpoint's log for more information."
        ),
        OriginalStatusCode=status,
        OriginalMessage=original,
    )


def _runtime_error(status: int, error_type: str, message: str, **fields) -> Response:
    # rest-json: botocore reads the error code from this header and the modeled fields from the body.
    response = _json(status, {"message": message, **fields})
    response.headers["x-amzn-ErrorType"] = error_type
    return response


def _json(status: int, document: dict) -> Response:
    return Response(json.dumps(document), status, content_type=JSON)


def _closing(response: Response) -> Response:
    response.headers["Connection"] = "close"
    return response
