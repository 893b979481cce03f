"""The model artifact's `code/lib`: what the serving handlers import, shipped for SageMaker's TF
Serving container (CPython 3.12, x86_64), so that an endpoint installs nothing when it starts.

Checked three ways: the export writes `code/lib` from the container's wheels and no
requirements.txt; the handlers run on a CPython 3.12 that sees only its standard library and the
artifact's `code/` (nothing of this project's environment); and the local endpoint refuses what
the container could not serve (a module it lacks, a `code/lib` for another Python or missing a
package), then starts and answers inside a network namespace with no route anywhere.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from inference_support import REPO_ROOT, exported_models, handler_code, image_bytes, serving_description

from inference.container import load_handler_module
from inference.model_lib import LibError, container_wheels, pins
from infra.source_bundle import bundle_members

CNN_SHAPE = [8, 8, 1]


def _container_python() -> str | None:
    """A CPython 3.12 on this machine (the container's minor version), found as ./dev.sh finds one."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(
            glob.glob(
                os.path.join(
                    os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions/3.12*/bin/python3.12"
                )
            )
        ),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"], capture_output=True, text=True
        )
        if probe.stdout.strip() == "True":
            return candidate
    return None


def _cnn_code(code_dir: Path) -> Path:
    (handler_code(code_dir) / "serving.json").write_text(
        json.dumps(serving_description("cnn", CNN_SHAPE, class_names=[str(d) for d in range(10)]))
    )
    return code_dir


# The handlers called as the container calls them, in an interpreter started with -I -S: no site
# packages, no PYTHONPATH, no user site; sys.path is the standard library plus code/ and code/lib,
# as the container's PYTHONPATH. Every module loaded must come from one of those.
CONTAINER_SCRIPT = r"""
import collections, importlib.util, io, json, sys, sysconfig
code = sys.argv[1]
sys.path[:0] = [code, code + "/lib"]
spec = importlib.util.spec_from_file_location("inference", code + "/inference.py")
handlers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handlers)
Context = collections.namedtuple("Context", "model_name model_version method rest_uri grpc_port channel "
                                 "custom_attributes request_content_type accept_header content_length")
body = open(sys.argv[2], "rb").read()
context = Context(None, None, None, "http://localhost:8501/v1/models/model:predict", None, None, None,
                  "image/png", "application/json", len(body))
request = json.loads(handlers.input_handler(io.BytesIO(body), context))
class Response:  # what the handlers read of the requests.Response from TF Serving
    status_code = 200
    content = json.dumps({"predictions": [[0.05] * 9 + [0.55]]}).encode()
answer, content_type = handlers.output_handler(Response(), context)
stdlib = sysconfig.get_paths()["stdlib"]
foreign = sorted(name for name, module in list(sys.modules.items())
                 if getattr(module, "__file__", None) and not module.__file__.startswith((stdlib, code)))
first = request["instances"][0]
print(json.dumps({"shape": [len(request["instances"]), len(first), len(first[0])],
                  "answer": json.loads(answer), "content_type": content_type, "foreign": foreign,
                  "numpy": sys.modules["numpy"].__file__, "PIL": sys.modules["PIL"].__file__}))
"""


def test_the_exported_code_lib_holds_what_the_handlers_import_on_the_containers_python(tmp_path: Path) -> None:
    from export import copy_model_code  # training/export.py, as the training job runs it

    python = _container_python()
    if python is None:
        pytest.skip("no CPython 3.12 here (./dev.sh test-training needs one too): the container's Python")
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    copy_model_code(code_dir)
    assert not (code_dir / "requirements.txt").exists(), "the container would pip-install it if code/lib went missing"
    assert {path.name for path in (code_dir / "lib").glob("*.dist-info")} == {
        f"{name}-{version}.dist-info" for name, version in pins().items()
    }
    (code_dir / "serving.json").write_text(
        json.dumps(serving_description("cnn", CNN_SHAPE, class_names=[str(d) for d in range(10)]))
    )
    png = tmp_path / "digit.png"
    png.write_bytes(image_bytes((__import__("numpy").arange(64).reshape(8, 8) * 4).astype("uint8")))
    ran = subprocess.run(
        [python, "-I", "-S", "-c", CONTAINER_SCRIPT, str(code_dir), str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"]},
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["foreign"] == [], "modules loaded from outside the standard library and code/"
    assert result["numpy"].startswith(str(code_dir / "lib")) and result["PIL"].startswith(str(code_dir / "lib"))
    assert result["shape"] == [1, 8, 8]
    assert result["answer"]["predictions"][0]["label"] == "9" and result["content_type"] == "application/json"


def test_the_source_bundle_carries_the_containers_wheels_for_an_isolated_training_job() -> None:
    wheels = {name for name, _ in bundle_members() if name.startswith("model_code/wheels/")}
    assert wheels == {f"model_code/wheels/{wheel.name}" for wheel in container_wheels()}
    assert len(wheels) == len(pins())
    assert "model_code/requirements.txt" not in {name for name, _ in bundle_members()}


def test_a_handler_importing_what_the_container_lacks_fails_to_load_here_too(tmp_path: Path) -> None:
    """keras is in this environment, not in the container: the local endpoint must not serve it."""
    code_dir = _cnn_code(tmp_path / "code")
    with open(code_dir / "request_forms.py", "a") as module:
        module.write("\nimport keras  # not in the container\n")
    with pytest.raises(
        ModuleNotFoundError, match=r"No module named 'keras' in SageMaker's TensorFlow Serving container"
    ):
        load_handler_module(code_dir / "inference.py")


def test_a_code_lib_without_a_package_the_handlers_need_is_refused(tmp_path: Path) -> None:
    code_dir = _cnn_code(tmp_path / "code")
    for path in (code_dir / "lib").glob("pillow*.dist-info"):
        shutil.rmtree(path)
    with pytest.raises(LibError, match=r"lacks pillow==13\.0\.0"):
        load_handler_module(code_dir / "inference.py")


@pytest.mark.parametrize(
    ("field", "old", "new", "words"),
    [
        ("WHEEL", "cp312-cp312-", "cp311-cp311-", "built for another Python or platform"),
        ("WHEEL", "x86_64", "aarch64", "built for another Python or platform"),
        ("METADATA", "Version: 2.1.3", "Version: 2.2.0", "lacks numpy==2.1.3"),
    ],
)
def test_a_code_lib_for_another_python_platform_or_version_is_refused(
    tmp_path: Path, field: str, old: str, new: str, words: str
) -> None:
    code_dir = _cnn_code(tmp_path / "code")
    (info,) = (code_dir / "lib").glob("numpy-*.dist-info")
    text = (info / field).read_text()
    assert old in text
    (info / field).unlink()  # a hard link to the shared unpacking: replaced, not written through
    (info / field).write_text(text.replace(old, new))
    with pytest.raises(LibError, match=words):
        load_handler_module(code_dir / "inference.py")


SERVE_OFFLINE = r"""
import json, sys, urllib.request
from inference.local_endpoint import LocalEndpoint
with LocalEndpoint(sys.argv[1], "mlops-local-cnn", workers=1) as endpoint:
    request = urllib.request.Request(endpoint.url + "/invocations", data=open(sys.argv[2], "rb").read(),
                                     headers={"Content-Type": "image/png"})
    print(json.dumps(json.loads(urllib.request.urlopen(request, timeout=60).read())))
"""


def test_the_local_endpoint_starts_and_answers_with_no_network_and_no_package_index(
    tmp_path_factory, tmp_path: Path
) -> None:
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine cannot make a network namespace (unshare --net)")
    model = exported_models(tmp_path_factory)["cnn"]
    png = tmp_path / "digit.png"
    png.write_bytes(image_bytes((__import__("numpy").arange(64).reshape(8, 8) * 4).astype("uint8")))
    no_index = {
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
    }
    ran = subprocess.run(
        [
            "unshare",
            "--net",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" -c "$1" "$2" "$3"',
            sys.executable,
            SERVE_OFFLINE,
            str(model),
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env={**os.environ, **no_index, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    (prediction,) = json.loads(ran.stdout)["predictions"]
    assert prediction["label"] in prediction["probabilities"]
