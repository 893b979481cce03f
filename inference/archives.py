"""Extracting a tar archive (a model.tar.gz, a source bundle) without trusting it, the same way on
every Python the project supports.

`tarfile`'s extraction filters (`extractall(filter="data")`) exist only from 3.12 and 3.11.4, and
Debian 12 ships 3.11.2; where they exist they strip a leading "/" instead of refusing it, and
releases before June 2025 let chains of symlinks through (CVE-2025-4517). So every member is
checked here against the archive as a whole, and nothing is written until all of them pass:

- names: relative, without "..", each once (folders may repeat), none below a symlink of the archive;
- types: regular files, folders, symlinks and hard links only (no devices, fifos);
- symlinks: relative, and inside the target when resolved through every symlink of the archive;
- hard links: to a regular file earlier in the archive, written as a copy of it.

Internal relative symlinks are allowed (`latest -> 1` is a common layout). Files and folders are
written first, owner and group ignored, setuid/setgid/sticky and group/other write bits dropped (as
`filter="data"` does), symlinks last, so that nothing is ever written through one.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from pathlib import Path

# Linux's own limit on the symlinks followed in one path lookup.
MAX_LINK_HOPS = 40


class UnsafeArchiveError(ValueError):
    """A member that would land outside the target, or that is no file, folder or link."""


def extract_archive(archive_path: str | Path, target: str | Path) -> None:
    """Extracts the tar archive (any compression) into `target`, created if missing."""
    with tarfile.open(archive_path) as archive:
        members = [(member, name) for member, name in _checked(archive.getmembers()) if name]
        root = Path(target)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        for member, name in sorted(members, key=lambda pair: pair[0].issym()):
            _write(archive, member, root / name, root)


def _checked(members: list[tarfile.TarInfo]) -> list[tuple[tarfile.TarInfo, str]]:
    """Each member with its normalized name; raises UnsafeArchiveError on the first bad one."""
    named = []
    for member in members:
        name = _relative(member.name)
        if name is None:
            raise _refused(member, "has an absolute path or '..' in it")
        named.append((member, name))
    links = {name: member.linkname for member, name in named if member.issym()}
    seen: dict[str, tarfile.TarInfo] = {}
    for member, name in named:
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise _refused(member, f"is a {_kind(member)}; only files, folders and links are extracted")
        if name in seen and not (member.isdir() and seen[name].isdir()):
            raise _refused(member, "appears twice in the archive")
        if not name and not member.isdir():
            raise _refused(member, "would replace the target folder itself")
        parts = name.split("/")
        through = next(("/".join(parts[:end]) for end in range(1, len(parts)) if "/".join(parts[:end]) in links), None)
        if through is not None:
            raise _refused(member, f"would be written through the symlink {through!r}")
        if member.issym() and (
            member.linkname.startswith("/")
            or not _stays_inside(posixpath.join(posixpath.dirname(name), member.linkname), links)
        ):
            raise _refused(
                member, f"is a symlink to {member.linkname!r}, which does not resolve inside the target folder"
            )
        if member.islnk():
            source = seen.get(_relative(member.linkname) or "")
            if source is None or not source.isreg():
                raise _refused(
                    member, f"is a hard link to {member.linkname!r}, which is no file earlier in the archive"
                )
        seen[name] = member
    return named


def _relative(name: str) -> str | None:
    """`name` without "." parts ("" for the target itself); None if it is absolute or has ".." in it."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return None if name.startswith("/") or ".." in parts else "/".join(parts)


def _stays_inside(path: str, links: dict[str, str]) -> bool:
    """Whether `path`, relative to the target, stays inside it when the archive's symlinks are followed."""
    pending, hops = path.split("/"), 0
    resolved: list[str] = []
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return False
            resolved.pop()
            continue
        resolved.append(part)
        link = links.get("/".join(resolved))
        if link is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or link.startswith("/"):
                return False
            resolved.pop()
            pending[:0] = link.split("/")
    return True


def _write(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path, root: Path) -> None:
    # Links already in the target (a folder that was not empty) are not in the archive's view.
    if os.path.realpath(path) != str(path):
        raise _refused(member, f"would be written through a symlink already in {root}")
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if member.issym():
        os.symlink(member.linkname, path)
        if not Path(os.path.realpath(path)).is_relative_to(root):
            path.unlink()
            raise _refused(member, f"is a symlink to {member.linkname!r}, outside {root} through a link already there")
        return
    path.unlink(missing_ok=True)  # replaced, never written into: it may be a hard link to a file elsewhere
    contents = archive.extractfile(member)
    if contents is None:  # `_checked` lets only files and hard links to them get this far
        raise _refused(member, "holds no file contents")
    with contents as source, open(path, "wb") as destination:
        shutil.copyfileobj(source, destination)
    path.chmod((member.mode & 0o755) | 0o600)


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "character device"
    if member.isblk():
        return "block device"
    if member.isfifo():
        return "fifo"
    return f"special member (tar type {member.type!r})"


def _refused(member: tarfile.TarInfo, reason: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"member {member.name!r} {reason}")
