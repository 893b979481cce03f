"""`code/lib` of a model artifact: the serving container's packages, unpacked from their wheels.

The wheels (built for the TF Serving container's CPython 3.12 on x86_64, see
`inference/model_lib.py`) travel in the source bundle as `model_code/wheels/`; the export
unpacks them into the artifact's `code/lib`, which the container puts on the handlers' Python
path. Unpacking a wheel is what installing it into a target folder does (`pip install --target`):
its files as they are, the `.data/purelib` and `.data/platlib` trees merged in. Standard library
only: it runs inside a training job, which may have no network.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

LIB_TREES = ("purelib", "platlib")


def install_wheels(wheels: list[Path], lib_dir: Path) -> None:
    """Unpacks each wheel into `lib_dir` (created), refusing members that would land outside it."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                target = _target(PurePosixPath(member.filename))
                if target is None or member.is_dir():
                    continue
                if target.is_absolute() or ".." in target.parts:
                    raise ValueError(f"{wheel.name}: member {member.filename!r} would land outside {lib_dir}")
                path = lib_dir.joinpath(*target.parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(path, "wb") as destination:
                    while chunk := source.read(1 << 20):
                        destination.write(chunk)


def _target(name: PurePosixPath) -> PurePosixPath | None:
    """Where a wheel member goes: as it is, or out of `<dist>.data/{purelib,platlib}/`; None for
    the other `.data` trees (scripts, headers, data), which a library folder has no use for."""
    if name.parts and name.parts[0].endswith(".data"):
        if len(name.parts) > 2 and name.parts[1] in LIB_TREES:
            return PurePosixPath(*name.parts[2:])
        return None
    return name
