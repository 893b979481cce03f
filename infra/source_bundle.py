"""The training code bundle: what SageMaker's `sagemaker_submit_directory` points at.

One deterministic `sourcedir.tar.gz` holds the entry points and their shared modules from
`training/` at its root (its packages, such as `tasks/`, as folders), plus
`inference/model_code/` as `model_code/` so that each training run can copy the serving
handlers into its model artifact as `code/`, with the serving container's wheels
(`model_code/wheels/`, fetched by `./dev.sh`: `inference/model_lib.py`) that it unpacks into
`code/lib`. A network-isolated training job needs nothing else.

The same bytes come out for the same sources (sorted members, fixed mtimes and owners,
gzip without a timestamp), so the CDK asset hash, and with it the synthesized template,
only changes when the code does. The local runner uses the very same bundle.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from inference.model_lib import container_wheels

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_DIR = REPO_ROOT / "training"
MODEL_CODE_DIR = REPO_ROOT / "inference" / "model_code"
BUNDLE_NAME = "sourcedir.tar.gz"


def bundle_members() -> list[tuple[str, Path]]:
    """(name in the archive, source file), sorted by name."""
    members = [(path.name, path) for path in TRAINING_DIR.glob("*.py") if path.name != "__init__.py"]
    members += [
        (path.relative_to(TRAINING_DIR).as_posix(), path)
        for path in TRAINING_DIR.glob("*/*.py")
        if (path.parent / "__init__.py").is_file()
    ]
    if MODEL_CODE_DIR.is_dir():
        members += [
            (f"model_code/{path.name}", path)
            for path in MODEL_CODE_DIR.iterdir()
            if path.is_file() and path.suffix in {".py", ".txt", ".json"}
        ]
        members += [(f"model_code/wheels/{wheel.name}", wheel) for wheel in container_wheels()]
    return sorted(members)


def _tar_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in bundle_members():
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_source_bundle(destination_dir: Path) -> Path:
    """Writes `sourcedir.tar.gz` into `destination_dir` and returns its path."""
    destination_dir.mkdir(parents=True, exist_ok=True)
    target = destination_dir / BUNDLE_NAME
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(_tar_bytes())
    content = compressed.getvalue()
    if not target.exists() or target.read_bytes() != content:
        target.write_bytes(content)
    return target


def source_bundle_hash() -> str:
    """A content hash of the bundle's members, independent of the zlib build that compresses it."""
    return hashlib.sha256(_tar_bytes()).hexdigest()
