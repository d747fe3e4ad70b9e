"""Code that travels: the client packs a folder into a zip and uploads it, as Ray's job client does.

What is packed: every file under the folder except ``DEFAULT_EXCLUDES``, the patterns of the folder's
``.testbedignore`` (one per line, ``#`` comments) and the caller's ``excludes`` (Ray's runtime_env ``excludes``
form). A pattern without ``/`` matches a file or folder name anywhere (``*.ckpt``, ``data``); one with ``/``
matches the path from the folder's root (``data/raw``, ``/notes.txt``). A link that leads outside the folder is
refused, naming the link (exclude it, or copy what it points to into the folder); a link inside is packed as what
it points to. The files may hold at most ``max_bytes`` (default ``MAX_PACKAGE_BYTES``), and so may the zip.

The zip is the same, byte for byte, for the same files (sorted names, fixed times and modes), so its SHA-256
names it: uploading an unchanged folder again stores nothing new.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from testbed.limits import MAX_PACKAGE_BYTES
from testbed.storage import PACKAGE_MARKER, package_ref

IGNORE_FILE = ".testbedignore"
DEFAULT_EXCLUDES = (".git", "__pycache__", "*.pyc", ".venv", ".ipynb_checkpoints", ".DS_Store", PACKAGE_MARKER)
MAX_PACKAGE_FILES = 20_000
_MARKER_TEXT = b"regional-ai-testbed code package, format 1\n"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(ValueError):
    """The folder cannot be packed; one line naming the folder (and the link or size)."""


@dataclass(frozen=True)
class BuiltPackage:
    """A packed folder: the zip's bytes and SHA-256, and what went into it."""

    folder: Path
    data: bytes
    sha256: str
    files: int
    file_bytes: int

    @property
    def ref(self) -> str:
        return package_ref(self.sha256)


def mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def ignore_patterns(folder: Path) -> list[str]:
    """The patterns of ``folder/.testbedignore`` (none if it has none)."""
    try:
        lines = (folder / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def excluded(rel: str, patterns: Sequence[str]) -> bool:
    """Whether the path ``rel`` (from the folder's root, '/'-separated) matches an exclude pattern."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if "/" in pattern:
            if fnmatch.fnmatchcase(rel, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def collect_files(
    folder: Path, excludes: Sequence[str] = (), max_bytes: int = MAX_PACKAGE_BYTES
) -> list[tuple[str, Path, int]]:
    """``[(name in the zip, path, bytes), ...]`` sorted by name; PackageError for a link out, a loop, too much."""
    if not folder.is_dir():
        raise PackageError(f"{folder}: not a folder")
    root = os.path.realpath(folder)
    patterns = [*DEFAULT_EXCLUDES, *ignore_patterns(folder), *excludes]
    found: list[tuple[str, Path, int]] = []

    def walk(path: Path, rel: str, ancestors: frozenset[str]) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            name = f"{rel}/{entry.name}" if rel else entry.name
            if excluded(name, patterns):
                continue
            child = Path(entry.path)
            if entry.is_symlink():
                target = os.path.realpath(child)
                if not _inside(target, root):
                    raise PackageError(
                        f"{folder}: link {name} -> {os.readlink(child)} leads outside the folder; "
                        f"remove it or exclude it in {IGNORE_FILE}"
                    )
                if not os.path.exists(target):
                    raise PackageError(f"{folder}: link {name} -> {os.readlink(child)} points nowhere")
            if entry.is_dir():
                real = os.path.realpath(child)
                if real in ancestors:
                    raise PackageError(f"{folder}: link {name} loops back into {os.path.relpath(real, root)}")
                walk(child, name, ancestors | {real})
            elif entry.is_file():
                found.append((name, child, entry.stat().st_size))
                if len(found) > MAX_PACKAGE_FILES:
                    raise PackageError(f"{folder}: more than {MAX_PACKAGE_FILES} files; exclude some in {IGNORE_FILE}")
            # sockets, pipes and devices are not code: skipped

    walk(folder, "", frozenset({root}))
    total = sum(size for _, _, size in found)
    if total > max_bytes:
        raise PackageError(
            f"{folder}: {mib(total)} in {len(found)} files, over the {mib(max_bytes)} limit of a code "
            f"package; exclude data and checkpoints in {IGNORE_FILE} (upload data with `testbed data "
            "upload`)"
        )
    return found


def _entry(name: str, executable: bool = False) -> zipfile.ZipInfo:
    """A zip entry with fixed time, mode and system, so equal files give equal zips."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.create_system = 3  # unix, whatever the client's OS
    # owner-only: Ray unpacks with these modes, inside the state folder (docs/operators/isolation.md)
    info.external_attr = (stat.S_IFREG | (0o700 if executable else 0o600)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_package(folder: str | Path, excludes: Sequence[str] = (), max_bytes: int = MAX_PACKAGE_BYTES) -> BuiltPackage:
    """Pack ``folder`` (see the module docstring); PackageError, one line naming the folder, when it cannot be."""
    folder = Path(folder)
    files = collect_files(folder, excludes, max_bytes)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_entry(PACKAGE_MARKER), _MARKER_TEXT)
        for name, path, _size in files:
            executable = bool(os.stat(path).st_mode & stat.S_IXUSR)
            with open(path, "rb") as source, archive.open(_entry(name, executable), "w") as target:
                shutil.copyfileobj(source, target, 2**20)
            if buffer.tell() > max_bytes:
                raise PackageError(
                    f"{folder}: its zip grows past the {mib(max_bytes)} limit of a code package; "
                    f"exclude large files in {IGNORE_FILE}"
                )
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise PackageError(f"{folder}: its zip is {mib(len(data))}, over the {mib(max_bytes)} limit of a code package")
    return BuiltPackage(
        folder=folder,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        files=len(files),
        file_bytes=sum(size for _, _, size in files),
    )
