"""Extraction of untrusted tar archives (inference/archives.py): hostile members are refused before
anything is written, on every supported Python (no `tarfile` filter is used), and the endpoint's
artifact loader turns the refusal into an ArtifactError."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from inference.archives import UnsafeArchiveError, extract_archive
from inference.artifact import ArtifactError, ModelArtifact, read_serving_config


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _folder(name: str) -> tuple[tarfile.TarInfo, None]:
    return _special(name, tarfile.DIRTYPE)


def _archive(path: Path, *members: Member) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def places(tmp_path):
    """(archive path, target folder, a folder beside the target that must stay untouched)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep me")
    return tmp_path / "hostile.tar.gz", tmp_path / "target", outside


def _everything_under(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): (path.read_text() if path.is_file() and not path.is_symlink() else "")
        for path in sorted(folder.rglob("*"))
    }


# case: (members, given the folder beside the target; the reason the error must give)
Member = tuple[tarfile.TarInfo, bytes | None]
# case -> (the hostile members, given the folder outside the target; the refusal's reason)
HOSTILE: dict[str, tuple[Callable[[Path], list[Member]], str]] = {
    "absolute path": (lambda outside: [_file(f"{outside}/pwned")], "has an absolute path or '..' in it"),
    "dot-dot escape": (lambda outside: [_file("code/../../outside/pwned")], "has an absolute path or '..' in it"),
    "symlink out, absolute": (
        lambda outside: [_link("code/out", str(outside))],
        "does not resolve inside the target folder",
    ),
    "symlink out, relative": (
        lambda outside: [_link("code/out", "../../outside")],
        "is a symlink to '../../outside', which does not resolve inside the target folder",
    ),
    # Lexically "a/.." is the target itself; through the link a -> . it is the target's parent.
    "symlink chain escape": (
        lambda outside: [_link("b", "a/.."), _link("a", ".")],
        "member 'b' is a symlink to 'a/..', which does not resolve inside",
    ),
    "symlink loop": (lambda outside: [_link("a", "b"), _link("b", "a")], "does not resolve inside the target folder"),
    "hard link out": (
        lambda outside: [_link("code/copy", "../outside/secret", tarfile.LNKTYPE)],
        "member 'code/copy' is a hard link to '../outside/secret', which is no file earlier",
    ),
    "hard link absolute": (
        lambda outside: [_link("code/copy", f"{outside}/secret", tarfile.LNKTYPE)],
        "is a hard link to '/.*/secret', which is no file earlier in the archive",
    ),
    "hard link to no member": (
        lambda outside: [_link("code/copy", "etc/passwd", tarfile.LNKTYPE)],
        "is a hard link to 'etc/passwd', which is no file earlier in the archive",
    ),
    "character device": (
        lambda outside: [_special("dev/null", tarfile.CHRTYPE)],
        "member 'dev/null' is a character device",
    ),
    "block device": (lambda outside: [_special("dev/sda", tarfile.BLKTYPE)], "is a block device"),
    "fifo": (lambda outside: [_special("code/pipe", tarfile.FIFOTYPE)], "member 'code/pipe' is a fifo"),
    "write through an escaping symlink": (
        lambda outside: [_link("escape", str(outside)), _file("escape/pwned")],
        "member 'escape' is a symlink to",
    ),
    "write through an internal symlink": (
        lambda outside: [_folder("sub"), _link("link", "sub"), _file("link/pwned")],
        "member 'link/pwned' would be written through the symlink 'link'",
    ),
    "file replaced by a symlink": (
        lambda outside: [_file("code/inference.py"), _link("code/inference.py", f"{outside}/secret")],
        "member 'code/inference.py' appears twice in the archive",
    ),
    "target replaced": (
        lambda outside: [_link(".", str(outside))],
        "member '.' would replace the target folder itself",
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_member_is_refused_before_anything_is_written(case, places):
    archive_path, target, outside = places
    members, reason = HOSTILE[case]
    # A harmless member first: the refusal must come before it is written, too.
    _archive(archive_path, _file("1/saved_model.pb", b"model"), *members(outside))
    with pytest.raises(UnsafeArchiveError, match=reason):
        extract_archive(archive_path, target)
    assert not target.exists() or not any(target.iterdir())
    assert _everything_under(outside) == {"secret": "keep me"}


def test_a_symlink_already_in_the_target_is_not_written_through(places):
    archive_path, target, outside = places
    target.mkdir()
    (target / "code").symlink_to(outside)
    _archive(archive_path, _file("code/pwned"))
    with pytest.raises(UnsafeArchiveError, match="member 'code/pwned' would be written through a symlink already in"):
        extract_archive(archive_path, target)
    assert _everything_under(outside) == {"secret": "keep me"}


def test_a_hard_link_already_in_the_target_is_replaced_not_written_into(places):
    archive_path, target, outside = places
    target.mkdir()
    os.link(outside / "secret", target / "secret")
    _archive(archive_path, _file("secret", b"new"))
    extract_archive(archive_path, target)
    assert (target / "secret").read_text() == "new"
    assert (outside / "secret").read_text() == "keep me"


def test_benign_archive_with_internal_links_extracts(tmp_path):
    archive_path = _archive(
        tmp_path / "model.tar.gz",
        _folder("."),
        _folder("./1"),
        _folder("1"),
        _file("./1/saved_model.pb", b"model"),
        _file("code/inference.py", b"handlers", 0o4777),
        _link("latest", "1"),
        _link("code/model", "../latest/saved_model.pb"),
        _link("code/copy.py", "code/inference.py", tarfile.LNKTYPE),
    )
    target = tmp_path / "target"
    extract_archive(archive_path, target)
    assert (target / "1" / "saved_model.pb").read_bytes() == b"model"
    assert (target / "latest").is_symlink() and os.readlink(target / "latest") == "1"
    assert (target / "code" / "model").read_bytes() == b"model"
    assert (target / "code" / "copy.py").read_bytes() == b"handlers" and not (target / "code" / "copy.py").is_symlink()
    # setuid and group/other write bits are dropped, as tarfile's "data" filter drops them.
    assert (target / "code" / "inference.py").stat().st_mode & 0o7777 == 0o755


def test_the_endpoint_refuses_a_hostile_model_tarball_with_one_clear_error(tmp_path):
    archive_path = _archive(
        tmp_path / "model.tar.gz",
        _file("1/saved_model.pb"),
        _file("code/inference.py"),
        _link("code/passwd", "/etc/passwd"),
    )
    with pytest.raises(
        ArtifactError,
        match=r"cannot extract .*model\.tar\.gz: member 'code/passwd' is a symlink "
        r"to '/etc/passwd', which does not resolve inside the target folder",
    ):
        ModelArtifact.open(archive_path)


def test_a_tarball_whose_serving_json_is_no_file_is_named_not_a_traceback(tmp_path):
    """`mlops serve` reads code/serving.json straight from the tarball before anything else."""
    archive_path = _archive(tmp_path / "model.tar.gz", _file("1/saved_model.pb"), _folder("code/serving.json"))
    with pytest.raises(ArtifactError, match=r"model\.tar\.gz has no code/serving\.json file"):
        read_serving_config(archive_path)
