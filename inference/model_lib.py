"""`code/lib`: the packages a model artifact ships for SageMaker's TensorFlow Serving container.

The container (`tensorflow-inference:2.19-cpu`, built by aws/deep-learning-containers from
`tensorflow/inference/docker/2.19/py3/Dockerfile.cpu`) runs Python 3.12.10, built from source on
Ubuntu 22.04 (glibc 2.35), x86_64. Its `serve.py` puts `code/` and `code/lib` on the gunicorn
workers' PYTHONPATH and, only when there is no `code/lib`, runs `pip install -r
code/requirements.txt` at every start: with network isolation, or in a VPC without a NAT, that
install fails and the endpoint never becomes healthy. So the artifact ships `code/lib` and no
requirements.txt, and nothing is installed when an endpoint starts.

What the handlers import beyond the standard library (`REQUIREMENTS`) comes as wheels for that
Python and platform, fetched once by `./dev.sh` (`python -m inference.model_lib`) into
`WHEELS_DIR` (not in git), packed into the training source bundle (`infra/source_bundle.py`) and
unpacked into `code/lib` by the training job that exports the model (`training/model_lib.py`):
synthesis and a network-isolated training job need no package index.

The container's own packages (`CONTAINER_IMPORTS`) need no shipping. It has neither numpy nor
Pillow: its Dockerfile pip-installs only awscli<2, boto3, cython<3, gevent, requests, grpcio,
protobuf, packaging, tensorflow-serving-api (with --no-dependencies, so without TensorFlow),
falcon and gunicorn, and what they depend on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "inference" / "lib-requirements.txt"
WHEELS_DIR = REPO_ROOT / "inference" / "model_code" / "wheels"

CONTAINER_PYTHON = (3, 12)
CONTAINER_ARCH = "x86_64"
CONTAINER_GLIBC = (2, 35)  # Ubuntu 22.04
# Top-level import names of the packages the container's Dockerfile installs and their dependencies.
CONTAINER_IMPORTS = frozenset(
    {
        *("awscli", "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"),
        *("docutils", "yaml", "colorama", "rsa", "pyasn1"),
        *("Cython", "cython", "pyximport", "gevent", "greenlet", "zope"),
        *("requests", "certifi", "idna", "charset_normalizer", "grpc", "google", "packaging"),
        *("tensorflow_serving", "falcon", "gunicorn", "setuptools", "pkg_resources", "pip"),
    }
)

_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<tags>[^-]+-[^-]+-[^-]+)\.whl$")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(.+)$")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class LibError(ValueError):
    """`code/lib` or the wheels for it do not fit the container; the message says what."""


@dataclass(frozen=True)
class Distribution:
    """One package unpacked in `code/lib`, read from its `.dist-info`."""

    name: str
    version: str
    tags: tuple[str, ...]  # the WHEEL file's Tag lines, e.g. cp312-cp312-manylinux_2_17_x86_64
    top_level: frozenset[str]  # the import names it provides


def pins() -> dict[str, str]:
    """normalized name -> version, from REQUIREMENTS (`name==version` lines)."""
    found = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[normalized(name)] = version.strip()
    return found


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def fits_container(tag: str) -> bool:
    """Whether a wheel tag (`python-abi-platform`) can load in the container's Python and OS."""
    python, abi, platform = tag.split("-")
    version = f"{CONTAINER_PYTHON[0]}{CONTAINER_PYTHON[1]}"
    python_fits = python in (f"cp{version}", "py3", f"py{version}") or (
        abi == "abi3" and python.startswith("cp3") and int(python[3:]) <= CONTAINER_PYTHON[1]
    )
    abi_fits = abi in (f"cp{version}", "abi3", "none")
    if platform == "any":
        return python_fits and abi_fits
    legacy = platform.rsplit("_", 1)[0] if platform.endswith(f"_{CONTAINER_ARCH}") else ""
    manylinux = _MANYLINUX.match(platform)
    if legacy in _LEGACY_MANYLINUX:
        glibc = _LEGACY_MANYLINUX[legacy]
    elif manylinux and manylinux[3] == CONTAINER_ARCH:
        glibc = (int(manylinux[1]), int(manylinux[2]))
    else:
        return False
    return python_fits and abi_fits and glibc <= CONTAINER_GLIBC


def container_wheels() -> list[Path]:
    """The wheel of each pin in WHEELS_DIR, or LibError naming what is missing and how to fetch it."""
    found: dict[str, Path] = {}
    for wheel in sorted(WHEELS_DIR.glob("*.whl")) if WHEELS_DIR.is_dir() else []:
        match = _WHEEL_NAME.match(wheel.name)
        if match and any(fits_container(tag) for tag in _expanded(match["tags"])):
            found[f"{normalized(match['name'])}=={match['version']}"] = wheel
    wanted = [f"{name}=={version}" for name, version in pins().items()]
    missing = [pin for pin in wanted if pin not in found]
    if missing:
        raise LibError(
            f"{WHEELS_DIR.relative_to(REPO_ROOT)} lacks the serving container's wheels of "
            f"{', '.join(missing)}: run ./dev.sh, whose install step fetches them "
            f"(.venv/bin/python -m inference.model_lib)"
        )
    return [found[pin] for pin in wanted]


def fetch() -> list[Path]:
    """Downloads the pinned wheels for the container's Python and platform (the one network step)."""
    try:
        return container_wheels()
    except LibError:
        pass
    platforms = [f"manylinux_2_{minor}_{CONTAINER_ARCH}" for minor in range(CONTAINER_GLIBC[1], 16, -1)]
    platforms += [f"{legacy}_{CONTAINER_ARCH}" for legacy in _LEGACY_MANYLINUX]
    version = f"{CONTAINER_PYTHON[0]}.{CONTAINER_PYTHON[1]}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    command += ["--implementation", "cp", "--python-version", version, "--abi", f"cp{version.replace('.', '')}"]
    command += [argument for platform in platforms for argument in ("--platform", platform)]
    command += ["--dest", str(WHEELS_DIR), "-r", str(REQUIREMENTS)]
    subprocess.run(command, check=True)
    return container_wheels()


def read_lib(lib_dir: Path) -> list[Distribution]:
    """The distributions unpacked in `lib_dir`, from their `.dist-info` (WHEEL and RECORD)."""
    distributions = []
    for info in sorted(lib_dir.glob("*.dist-info")):
        metadata = dict(_header_lines(info / "METADATA"))
        tags = tuple(value for key, value in _header_lines(info / "WHEEL") if key == "Tag")
        top_level = {
            _import_name(line.split(",", 1)[0].split("/", 1)[0])
            for line in (info / "RECORD").read_text().splitlines()
            if line
        }
        distributions.append(
            Distribution(
                name=normalized(metadata["Name"]),
                version=metadata["Version"],
                tags=tags,
                top_level=frozenset(name for name in top_level if name.isidentifier()),
            )
        )
    return distributions


def check_lib(lib_dir: Path) -> list[Distribution]:
    """`lib_dir`'s distributions if every one fits the container and every pin is there, else LibError."""
    if not lib_dir.is_dir():
        raise LibError(f"{lib_dir} does not exist: the container would have no {', '.join(pins())}")
    distributions = read_lib(lib_dir)
    unfit = [f"{d.name} {d.version} ({', '.join(d.tags)})" for d in distributions if not _fits(d)]
    if unfit:
        raise LibError(
            f"{lib_dir} holds packages built for another Python or platform than the serving "
            f"container's (CPython {'.'.join(map(str, CONTAINER_PYTHON))}, {CONTAINER_ARCH}, "
            f"glibc {'.'.join(map(str, CONTAINER_GLIBC))}): {'; '.join(unfit)}"
        )
    present = {(d.name, d.version) for d in distributions}
    missing = [f"{name}=={version}" for name, version in pins().items() if (name, version) not in present]
    if missing:
        raise LibError(f"{lib_dir} lacks {', '.join(missing)}")
    return distributions


def _fits(distribution: Distribution) -> bool:
    return any(fits_container(tag) for line in distribution.tags for tag in _expanded(line))


def _expanded(tags: str) -> list[str]:
    """`cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64` -> one tag per combination."""
    python, abi, platform = tags.split("-")
    return [f"{p}-{a}-{o}" for p in python.split(".") for a in abi.split(".") for o in platform.split(".")]


def _header_lines(path: Path) -> list[tuple[str, str]]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            break  # the body (a description) follows the headers
        key, _, value = line.partition(":")
        lines.append((key.strip(), value.strip()))
    return lines


def _import_name(entry: str) -> str:
    """`numpy` -> numpy; `six.py` -> six; `_cffi.cpython-312-x86_64-linux-gnu.so` -> _cffi."""
    return entry.split(".", 1)[0] if entry.endswith((".py", ".so", ".pyd")) else entry


if __name__ == "__main__":
    for wheel in fetch():
        print(f"serving container wheel: {wheel.relative_to(REPO_ROOT)}")
