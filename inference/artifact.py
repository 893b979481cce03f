"""The model artifact a SageMaker endpoint serves: a folder, or the same layout as model.tar.gz.

<root>/1/saved_model.pb ...   TF-Serving SavedModel (the highest numeric folder is served)
<root>/code/inference.py      handlers, imported by path
<root>/code/serving.json      network, task, input shape, ... (written by training)
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from inference.archives import UnsafeArchiveError, extract_archive


class ArtifactError(ValueError):
    """The path is not a usable model artifact; the message says what is missing."""


def is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def read_serving_config(model_path: str | Path) -> dict:
    """`code/serving.json` of a model folder or tarball, without extracting the tarball."""
    path = Path(model_path)
    try:
        if is_tarball(path):
            with tarfile.open(path) as archive:
                member = _tar_member(archive, "code/serving.json")
                contents = None if member is None else archive.extractfile(member)
                if contents is None:
                    raise ArtifactError(f"{path} has no code/serving.json file")
                return json.load(contents)
        if not (path / "code" / "serving.json").is_file():
            raise ArtifactError(f"{path} has no code/serving.json (expected a model folder or model.tar.gz)")
        return json.loads((path / "code" / "serving.json").read_text())
    except (OSError, tarfile.TarError, json.JSONDecodeError) as error:
        raise ArtifactError(f"cannot read the serving config of {path}: {error}") from None


def _tar_member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo | None:
    for member in archive.getmembers():
        if member.name.removeprefix("./") == name:
            return member
    return None


@dataclass(frozen=True)
class ModelArtifact:
    """An artifact laid out on disk. `cleanup()` removes the folder a tarball was extracted to."""

    root: Path
    version: int
    extracted: bool

    @property
    def saved_model_dir(self) -> Path:
        return self.root / str(self.version)

    @property
    def handler_path(self) -> Path:
        return self.root / "code" / "inference.py"

    @classmethod
    def open(cls, model_path: str | Path) -> ModelArtifact:
        path = Path(model_path)
        if not path.exists():
            raise ArtifactError(f"{path} does not exist")
        if not is_tarball(path):
            return cls(path.resolve(), _served_version(path), extracted=False)
        root = Path(tempfile.mkdtemp(prefix="mlops-endpoint-"))
        try:
            extract_archive(path, root)
            return cls(root, _served_version(root), extracted=True)
        except (OSError, tarfile.TarError, UnsafeArchiveError, ArtifactError) as error:
            shutil.rmtree(root, ignore_errors=True)
            if isinstance(error, ArtifactError):
                raise ArtifactError(f"{path}: {error}") from None
            raise ArtifactError(f"cannot extract {path}: {error}") from None

    def cleanup(self) -> None:
        if self.extracted:
            shutil.rmtree(self.root, ignore_errors=True)


def _served_version(root: Path) -> int:
    """TF Serving's default policy: the highest numeric version folder holding a SavedModel."""
    versions = [
        int(child.name) for child in root.iterdir() if child.name.isdigit() and (child / "saved_model.pb").is_file()
    ]
    if not versions:
        raise ArtifactError(f"{root} has no <version>/saved_model.pb (e.g. 1/saved_model.pb)")
    if not (root / "code" / "inference.py").is_file():
        raise ArtifactError(f"{root} has no code/inference.py")
    return max(versions)
