"""SageMaker's TF Serving container's handler contract: how `code/inference.py` is loaded and called.

The container imports the module by path under the name "inference" and uses `handler(data,
context)` if it is defined, else `input_handler` + `output_handler` around a REST call to TF
Serving. Here that call is answered in-process by the servable (`inference.tf_serving`).
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import requests

from inference.endpoint_app import JSON, Context, Handler

if TYPE_CHECKING:
    from inference.tf_serving import SavedModelServable


def load_handler_module(handler_path: Path) -> ModuleType:
    """`code/inference.py` imported by path under the name "inference", as the container does."""
    spec = importlib.util.spec_from_file_location("inference", handler_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{handler_path} is not a Python module")
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
