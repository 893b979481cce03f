"""SageMaker's TF Serving container's handler contract: how `code/inference.py` is loaded and called.

The container imports the module by path under the name "inference" and uses `handler(data,
context)` if it is defined, else `input_handler` + `output_handler` around a REST call to TF
Serving. Here that call is answered in-process by the servable (`inference.tf_serving`).

What the handlers may import is the container's: the standard library, the container's own
packages (`inference.model_lib.CONTAINER_IMPORTS`), the modules beside `inference.py` and what
`code/lib` holds. The local endpoint's process already holds TensorFlow and with it numpy (a
second numpy cannot load into one process), and `code/lib`'s binaries are built for the
container's CPython 3.12, so the handlers get `code/lib`'s distributions from this process's
environment at the very versions `code/lib` holds (else the artifact is refused), its pure-Python
ones from `code/lib` itself; and every import statement the handlers' own files run is checked
against that list: a module the container would not have fails here as it would there.
"""

from __future__ import annotations

import builtins
import importlib.metadata
import importlib.util
import io
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import requests

from inference.endpoint_app import JSON, Context, Handler
from inference.model_lib import CONTAINER_IMPORTS, Distribution, LibError, check_lib

if TYPE_CHECKING:
    from inference.tf_serving import SavedModelServable


# code dir (ending in a separator) -> the top-level modules its files may import.
_IMPORTABLE: dict[str, frozenset[str]] = {}
_builtin_import = builtins.__import__


def load_handler_module(handler_path: Path) -> ModuleType:
    """`code/inference.py` imported by path under the name "inference", as the container does,
    able to import only what the container would give it (LibError otherwise)."""
    code_dir = Path(handler_path).resolve().parent
    lib_dir = code_dir / "lib"
    distributions = check_lib(lib_dir)
    for distribution in distributions:
        _check_served_here(distribution, lib_dir)
    if str(lib_dir) not in sys.path:
        sys.path.append(str(lib_dir))  # after the environment's packages: its pure-Python ones
    siblings = {path.stem for path in code_dir.glob("*.py")}
    _IMPORTABLE[str(code_dir) + os.sep] = frozenset(
        {*sys.stdlib_module_names, *CONTAINER_IMPORTS, *siblings, *(n for d in distributions for n in d.top_level)}
    )
    builtins.__import__ = _container_import
    spec = importlib.util.spec_from_file_location("inference", code_dir / Path(handler_path).name)
    if spec is None or spec.loader is None:
        raise ImportError(f"{handler_path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_served_here(distribution: Distribution, lib_dir: Path) -> None:
    """The distribution at `code/lib`'s version in this process, or pure Python (served from code/lib)."""
    try:
        here = importlib.metadata.version(distribution.name)
    except importlib.metadata.PackageNotFoundError:
        if all(tag.endswith("-any") for tag in distribution.tags):
            return
        raise LibError(
            f"{lib_dir} holds {distribution.name} {distribution.version}, built for the serving "
            f"container's CPython 3.12; the local endpoint serves it from its own environment, "
            f"which has no {distribution.name}: add {distribution.name}=={distribution.version} to "
            f"pyproject.toml's dependencies"
        ) from None
    if here != distribution.version:
        raise LibError(
            f"{lib_dir} holds {distribution.name} {distribution.version} but the local endpoint's "
            f"environment has {here}: pin the same version in pyproject.toml and "
            f"inference/lib-requirements.txt"
        )


def _container_import(name, globals=None, locals=None, fromlist=(), level=0):
    """`__import__`, refusing what the container would not have to an import run by a handler file."""
    origin = (globals or {}).get("__file__") if level == 0 else None
    if origin:
        for code_dir, importable in _IMPORTABLE.items():
            if origin.startswith(code_dir) and not origin.startswith(code_dir + "lib" + os.sep):
                if name.partition(".")[0] not in importable:
                    raise ModuleNotFoundError(
                        f"No module named {name!r} in SageMaker's TensorFlow Serving container: "
                        f"not in the standard library, the container's packages or code/lib "
                        f"(inference/lib-requirements.txt)",
                        name=name,
                    )
                break
    return _builtin_import(name, globals, locals, fromlist, level)


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
