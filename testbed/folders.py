"""Folders of data: upload (recursive, parallel, resuming), download and remove, over the per-file data API.

A folder ``NAME`` is the files named ``NAME/<relative path>`` in your data; templates read it as
``testbed-data://NAME``. Everything is checked before the first byte is sent (names, sizes, links, the file
count), so a refused folder leaves nothing behind; a folder upload that stops half-way resumes: files already
stored with the same size and SHA-256 are skipped.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testbed.client import TestbedClient, TestbedError

from testbed.limits import MAX_DATA_FILE_BYTES, MAX_FOLDER_FILES
from testbed.packaging import mib
from testbed.storage import DeletedObjects, FolderTransfer, StoredObject, check_name


Progress = Callable[[int, int], None]
CHUNK = 2**20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: Path, name: str) -> list[tuple[Path, str, int]]:
    """(local path, data name, size) of every file under ``folder``; TestbedError naming the first problem
    (a link, a hidden or badly named file, one over the size limit, too many files, none at all)."""
    if not folder.is_dir():
        raise TestbedError(f"{folder}: not a folder", "refused_here")
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise TestbedError(f"{path}: is a link; copy what it points to into the folder", "refused_here")
        if path.is_dir():
            continue
        try:
            data_name = check_name(f"{name}/{relative}", "data name")
        except ValueError as exc:
            raise TestbedError(f"{path}: {exc}", "refused_here") from None
        size = path.stat().st_size
        if size == 0 or size > MAX_DATA_FILE_BYTES:
            why = (
                "is empty" if size == 0 else f"is {mib(size)}, over the {mib(MAX_DATA_FILE_BYTES)} limit of a data file"
            )
            raise TestbedError(f"{path}: {why}", "refused_here")
        files.append((path, data_name, size))
        if len(files) > MAX_FOLDER_FILES:
            raise TestbedError(
                f"{folder}: more than {MAX_FOLDER_FILES} files, the limit of a data folder", "refused_here"
            )
    if not files:
        raise TestbedError(f"{folder}: has no files", "refused_here")
    return files


class _Counter:
    """Bytes done across worker threads, reported to ``progress``."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress, self.lock = 0, total, progress, threading.Lock()

    def add(self, size: int) -> None:
        with self.lock:
            self.done += size
            if self.progress is not None:
                self.progress(self.done, self.total)


def upload_folder(
    client: TestbedClient, folder: Path, name: str | None, workers: int, progress: Progress | None
) -> FolderTransfer:
    name = (name or folder.resolve().name).strip("/")
    try:
        check_name(name, "folder name")
    except ValueError as exc:
        raise TestbedError(str(exc), "refused_here") from None
    files = folder_files(folder, name)
    stored = {o.name: o for o in client.iter_data(f"{name}/", sha256=True)}
    counter = _Counter(sum(size for _, _, size in files), progress)

    def one(item: tuple[Path, str, int]) -> tuple[StoredObject, bool]:
        path, data_name, size = item
        there = stored.get(data_name)
        if there is not None and there.size == size and there.sha256 == sha256_of(path):
            counter.add(size)
            return there, False
        sent = client.upload_data(path, data_name)
        counter.add(size)
        return sent, True

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, files))
    sent = [obj for obj, fresh in results if fresh]
    return FolderTransfer(
        folder=name,
        transferred=sent,
        skipped=[obj for obj, fresh in results if not fresh],
        bytes=sum(o.size for o in sent),
    )


def _folder_listing(client: TestbedClient, name: str) -> tuple[str, list[StoredObject]]:
    name = name.strip("/")
    objects = list(client.iter_data(f"{name}/"))
    if not objects:
        raise TestbedError(f"no data folder {name!r} (`testbed data ls` lists your data)", "not_found", 404)
    return name, objects


def download_folder(
    client: TestbedClient, name: str, dest: Path, workers: int, progress: Progress | None
) -> FolderTransfer:
    name, objects = _folder_listing(client, name)
    counter = _Counter(sum(o.size for o in objects), progress)

    def one(obj: StoredObject) -> StoredObject:
        target = dest / obj.name[len(name) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_data(obj.name, target)
        counter.add(obj.size)
        return obj

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        fetched = list(pool.map(one, objects))
    return FolderTransfer(folder=name, transferred=fetched, bytes=sum(o.size for o in fetched))


def folder_size(client: TestbedClient, name: str) -> tuple[str, list[StoredObject]]:
    """The files of a data folder (for a confirmation before removing it)."""
    return _folder_listing(client, name)


def delete_folder(client: TestbedClient, name: str, workers: int) -> DeletedObjects:
    name, objects = _folder_listing(client, name)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        removed = list(pool.map(lambda o: client.delete_data(o.name), objects))
    return DeletedObjects(deleted=[n for r in removed for n in r.deleted], bytes=sum(r.bytes for r in removed))
