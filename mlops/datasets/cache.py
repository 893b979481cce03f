"""What data preparation makes slowly is made once and reused: written channels, pretrained bases.

The cache lives in `$MLOPS_CACHE_DIR`, else `~/.cache/mlops`. Every entry is named by a key over
everything that decides its content (a version number bumped when the code that makes it changes,
the source data's version, the options), so a changed input makes a new entry rather than reusing
a stale one. Entries appear atomically (made under a scratch name, then renamed): an interrupted
preparation leaves no half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.datasets.common import Channels

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("MLOPS_CACHE_DIR", Path.home() / ".cache" / "mlops"))


def cache_key(*parts: Any) -> str:
    """A short digest of `parts` (JSON-serializable values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cached_file(name: str, make: Callable[[Path], None]) -> Path:
    """The cache's file `name`; `make(path)` writes it first if it is not there."""
    cached = cache_dir() / name
    if cached.is_file():
        log.info("from cache: %s", cached)
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".making-") as scratch:
        partial = Path(scratch) / name
        make(partial)
        os.replace(partial, cached)
    return cached


def cached_channels(name: str, make: Callable[[Path], Channels], out_dir: Path) -> Channels:
    """The channels `make(folder)` writes, copied from the cache's folder `name` into `out_dir`;
    `make` runs only when that folder is not cached yet."""
    cached = cache_dir() / name
    if cached.is_dir():
        log.info("channels from cache: %s", cached)
    else:
        cached.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".making-"))
        try:
            make(scratch / "channels")
            try:
                os.rename(scratch / "channels", cached)
            except OSError:  # another preparation cached the same entry meanwhile: keep that one
                if not cached.is_dir():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    channels = {}
    for folder in sorted(path for path in cached.iterdir() if path.is_dir()):
        channels[folder.name] = Path(shutil.copytree(folder, out_dir / folder.name))
    return channels
