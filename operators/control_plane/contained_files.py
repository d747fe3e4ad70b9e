"""Files under one folder, reached without ever following a link: every path component is opened with
``O_NOFOLLOW`` relative to its parent's descriptor, and what was opened is what is checked (``fstat``).

A job that swaps a file in its own output folder for a link (or a folder for a link) between a check and an
open cannot make the control plane serve, list or write anything outside the folder: there is no second open
by name. A hard link (a regular file with more than one name) is refused too, since it may be another
tenant's file. New folders are 0700 and new files 0600, and belong to the root folder's owner (the jobs' user when
the local testbed runs as root: :mod:`testbed.ownership`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from typing import IO, Iterator

from testbed.ownership import heir

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a planted FIFO never blocks
# errors that mean "no such file here, as far as a contained walk goes": missing, a link, not a folder
ABSENT = {errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EMLINK}


class Blocked(Exception):
    """A link or a file stands where a folder must be created."""


@dataclass(frozen=True)
class FoundFile:
    name: str
    size: int
    mtime: float


def absent(exc: OSError) -> bool:
    return exc.errno in ABSENT


def open_dir(root: str, parts: list[str], create: bool = False) -> int:
    """A descriptor of ``root/parts...``, every part opened without following links (``create``: made 0700 where
    missing). OSError (see :data:`ABSENT`) when a part is missing, a link or a file; Blocked when creating."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root is the platform's own folder
    try:
        owner = heir(os.fstat(fd)) if create else None
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    if owner is not None:
                        os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if create and absent(exc):
                    raise Blocked(part) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(root: str, parts: list[str]) -> tuple[IO[bytes], int] | None:
    """(the open file, its size) of the regular, single-named file ``root/parts...``; None when there is none
    (missing, a link anywhere on the way, a folder, a FIFO, a hard link)."""
    try:
        parent = open_dir(root, parts[:-1])
    except OSError as exc:
        if absent(exc):
            return None
        raise
    try:
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        if absent(exc) or exc.errno in (errno.ENXIO, errno.EISDIR):
            return None
        raise
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size


def file_size(root: str, parts: list[str]) -> int | None:
    found = open_file(root, parts)
    if found is None:
        return None
    found[0].close()
    return found[1]


def is_dir(root: str, parts: list[str]) -> bool:
    try:
        os.close(open_dir(root, parts))
        return True
    except OSError as exc:
        if absent(exc):
            return False
        raise


def walk(root: str, parts: list[str], prefix: str = "") -> Iterator[FoundFile]:
    """Regular files under ``root/parts...`` whose names (relative to it) start with ``prefix``; links are neither
    listed nor followed, and only folders that can hold such names are entered."""
    try:
        fd = open_dir(root, parts)
    except OSError as exc:
        if absent(exc):
            return
        raise
    yield from _walk(fd, "", prefix)


def _walk(fd: int, rel: str, prefix: str) -> Iterator[FoundFile]:
    try:
        with os.scandir(fd) as entries:
            listed = list(entries)
        for entry in listed:
            name = rel + entry.name
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                folder = name + "/"
                if not (folder.startswith(prefix) or prefix.startswith(folder)):
                    continue
                try:
                    child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if absent(exc):
                        continue
                    raise
                yield from _walk(child, folder, prefix)
            elif entry.is_file(follow_symlinks=False) and name.startswith(prefix):
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError as exc:  # renamed or removed since it was listed
                    if absent(exc):
                        continue
                    raise
                if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                    yield FoundFile(name, info.st_size, info.st_mtime)
    finally:
        os.close(fd)


def remove_file(root: str, parts: list[str]) -> int | None:
    """Unlink the regular file ``root/parts...`` (never through a link); its size, None when there is none."""
    try:
        parent = open_dir(root, parts[:-1])
    except OSError as exc:
        if absent(exc):
            return None
        raise
    try:
        info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        os.unlink(parts[-1], dir_fd=parent)
        return info.st_size
    except OSError as exc:
        if absent(exc):
            return None
        raise
    finally:
        os.close(parent)


def remove_tree(root: str, parts: list[str]) -> None:
    """Remove the folder ``root/parts...`` and all it holds; links in it are removed, never followed."""
    try:
        parent = open_dir(root, parts[:-1])
    except OSError as exc:
        if absent(exc):
            return
        raise
    try:
        if stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
            shutil.rmtree(parts[-1], dir_fd=parent)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)


class NewFile:
    """A new 0600 file in ``root/parts...`` (created, never through a link), renamed into place by :meth:`place`."""

    def __init__(self, root: str, parts: list[str]):
        self.root = root
        self.dir_fd = open_dir(root, parts, create=True)
        self.name = uuid.uuid4().hex
        fd = os.open(
            self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.dir_fd
        )
        owner = heir(os.stat(root))
        if owner is not None:
            os.fchown(fd, *owner)
        self.file = os.fdopen(fd, "wb")

    def place(self, parts: list[str]) -> None:
        """Move the file to ``root/parts...`` (replacing a file or link of that name); Blocked where a link or a
        file stands on its path, IsADirectoryError where a folder has its name."""
        self.file.close()
        target = open_dir(self.root, parts[:-1], create=True)
        try:
            if stat.S_ISDIR(_lstat_mode(parts[-1], target)):
                raise IsADirectoryError(parts[-1])
            os.rename(self.name, parts[-1], src_dir_fd=self.dir_fd, dst_dir_fd=target)
        finally:
            os.close(target)
        self.close()

    def discard(self) -> None:
        try:
            self.file.close()
            os.unlink(self.name, dir_fd=self.dir_fd)
        except (OSError, ValueError):
            pass
        self.close()

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


def _lstat_mode(name: str, dir_fd: int) -> int:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return 0


def sweep(root: str, parts: list[str], older_than: float, now: float) -> list[str]:
    """Remove the files in ``root/parts...`` not written to since ``now - older_than`` (abandoned uploads)."""
    removed = []
    try:
        fd = open_dir(root, parts)
    except OSError as exc:
        if absent(exc):
            return removed
        raise
    try:
        with os.scandir(fd) as entries:
            listed = list(entries)
        for entry in listed:
            try:
                info = entry.stat(follow_symlinks=False)
                if info.st_mtime <= now - older_than and not stat.S_ISDIR(info.st_mode):
                    os.unlink(entry.name, dir_fd=fd)
                    removed.append(entry.name)
            except FileNotFoundError:
                continue
    finally:
        os.close(fd)
    return removed
