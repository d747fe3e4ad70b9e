"""The tenants' storage as the control plane reaches it: a local folder, or any fsspec URL (``s3://...`` in a
cluster, through the control plane's own identity).

Every call names the tenant, and every path is built by :func:`testbed.storage.tenant_path` from names that were
checked first (relative, no ``..``), so no call reaches past ``<root>/<tenant>/``. Locally, jobs run as the
operator's user and could plant links in their output folder: an entry whose real path (links followed) leaves
the tenant's folder is treated as absent, never listed, read or followed.

Uploads go to ``<tenant>/uploads/<random>`` first and are moved into place when complete, so a broken upload
never shows a partial file. A store that does not answer (or a missing driver, e.g. s3fs) is a 503 naming the
root; the filesystem is opened on first use, so the control plane starts (and runs jobs) without it.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import os
import threading
import uuid
import zipfile
from typing import IO, Any, Callable, Iterator, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from operators.control_plane.errors import ServiceError, not_found
from testbed.storage import (
    DATA,
    PACKAGES,
    UPLOADS,
    Area,
    DeletedObjects,
    StoredObject,
    StoredPackage,
    package_file,
    package_ref,
    tenant_path,
)
from testbed.errors import ErrorCode

CHUNK_BYTES = 2**20
T = TypeVar("T")


def guarded(call: Callable[..., T]) -> Callable[..., T]:
    """A storage call whose store cannot be reached (OSError other than a missing file, no driver) answers 503."""
    @functools.wraps(call)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return call(self, *args, **kwargs)
        except (OSError, ImportError) as exc:
            root = getattr(self, "root", None) or self.storage.root
            raise ServiceError(ErrorCode.STORAGE_UNAVAILABLE, f"tenant storage {root} does not answer: "
                                                           f"{getattr(exc, 'strerror', None) or exc}") from None
    return wrapper


def _absent(exc: OSError) -> bool:
    """A missing file, or a name no file can have here: nothing stored under it."""
    return isinstance(exc, FileNotFoundError) or exc.errno == errno.ENAMETOOLONG


def iso(ts: Any) -> str | None:
    if isinstance(ts, dt.datetime):
        return ts.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(ts, (int, float)):
        return iso(dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc))
    return None


def check_zip(source: IO[bytes], max_unpacked: int, what: str) -> int:
    """The unpacked bytes of a package zip; 422 if it is no zip or names a path outside itself, 413 if too big."""
    try:
        with zipfile.ZipFile(source) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        raise ServiceError(ErrorCode.INVALID_SPEC, f"{what}: the body is not a zip file") from None
    for entry in entries:
        parts = entry.filename.split("/")
        if entry.filename.startswith("/") or "\\" in entry.filename or ".." in parts or ":" in parts[0]:
            raise ServiceError(ErrorCode.INVALID_SPEC, f"{what}: the zip names a path outside itself: {entry.filename!r}")
        if (entry.external_attr >> 16) & 0o170000 == 0o120000:
            raise ServiceError(ErrorCode.INVALID_SPEC, f"{what}: the zip holds a link: {entry.filename!r}")
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > max_unpacked:
        raise ServiceError(ErrorCode.TOO_LARGE, f"{what}: the zip unpacks to {unpacked} bytes, over the "
                                             f"{max_unpacked}-byte limit of a code package")
    return unpacked


class Upload:
    """A file being written to ``<tenant>/uploads/``; :meth:`commit` moves it into place."""

    def __init__(self, storage: TenantStorage, tenant: str):
        self.storage, self.tenant = storage, tenant
        self.path = storage.path(tenant, UPLOADS, uuid.uuid4().hex)
        storage.fs.makedirs(storage.path(tenant, UPLOADS), exist_ok=True)
        self._file = storage.fs.open(self.path, "wb")
        self.size = 0

    @guarded
    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.size += len(chunk)

    @guarded
    def commit(self, area: Area, name: str) -> StoredObject:
        """Move the upload to ``<tenant>/<area>/<name>`` (replacing a file there); 409 where a folder of that
        name, a file on its path or a link out of the tenant's folder is in the way."""
        self._file.close()
        final = self.storage.path(self.tenant, area, name)
        conflict = ServiceError(ErrorCode.NAME_CONFLICT, f"{area} {name!r}: a folder of that name, a file on its path "
                                                      "or a link out of the tenant's folder is in the way")
        if not self.storage._contained(self.tenant, final) or self.storage.fs.isdir(final):
            raise conflict
        try:
            self.storage.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self.storage.fs.mv(self.path, final)
        except (NotADirectoryError, IsADirectoryError, FileExistsError):
            raise conflict from None
        return StoredObject(name=name, size=self.size, modified_at=iso(dt.datetime.now(dt.timezone.utc)))

    def discard(self) -> None:
        try:
            self._file.close()
            self.storage.fs.rm(self.path)
        except (OSError, ValueError):
            pass


class TenantStorage:
    """Packages, data and job outputs of each tenant under one root (see the module docstring)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/") or "/"
        self._base = ""  # the root inside its filesystem (no protocol), known once the filesystem is open
        self.local = False
        self._fs: fsspec.AbstractFileSystem | None = None
        self._lock = threading.Lock()

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The root's filesystem, opened on first use (ImportError naming the driver when it is missing)."""
        with self._lock:
            if self._fs is None:
                self._fs, self._base = fsspec.core.url_to_fs(self.root)
                self.local = isinstance(self._fs, LocalFileSystem)
            return self._fs

    def location(self, tenant: str, area: Area, name: str = "") -> str:
        """What jobs and backends are given: a plain path locally, the URL elsewhere (``s3://bucket/tenants/...``)."""
        return tenant_path(self.root, tenant, area, name)

    def path(self, tenant: str, area: Area | None = None, name: str = "") -> str:
        """The path inside the filesystem (no protocol)."""
        self.fs  # noqa: B018 - opens the filesystem, which tells the root's path inside it
        return tenant_path(self._base, tenant, area, name)

    def _contained(self, tenant: str, path: str) -> bool:
        """Locally: the real path of ``path`` stays in the tenant's folder (a planted link does not)."""
        if not self.local:
            return True
        root = os.path.realpath(self.path(tenant))
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    def _file_info(self, tenant: str, path: str) -> dict[str, Any] | None:
        if not self._contained(tenant, path):
            return None
        try:
            info = self.fs.info(path)
        except OSError as exc:
            if _absent(exc):
                return None
            raise
        return info if info.get("type") == "file" else None

    # -- packages -----------------------------------------------------------------------------
    @guarded
    def package(self, tenant: str, sha256: str) -> StoredPackage | None:
        """The tenant's package of this digest, if it has one (another tenant's never answers)."""
        info = self._file_info(tenant, self.path(tenant, PACKAGES, package_file(sha256)))
        return None if info is None else StoredPackage(ref=package_ref(sha256), sha256=sha256, size=int(info["size"]))

    @guarded
    def store_package(self, tenant: str, sha256: str, source: IO[bytes]) -> StoredPackage:
        """Store a checked package once: an existing one of the same digest is kept (``created`` false)."""
        existing = self.package(tenant, sha256)
        if existing is not None:
            return existing
        upload = Upload(self, tenant)
        try:
            source.seek(0)
            for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                upload.write(chunk)
            upload.commit(PACKAGES, package_file(sha256))
        except BaseException:
            upload.discard()
            raise
        return StoredPackage(ref=package_ref(sha256), sha256=sha256, size=upload.size, created=True)

    # -- files: data and job outputs ------------------------------------------------------------
    @guarded
    def begin_upload(self, tenant: str) -> Upload:
        return Upload(self, tenant)

    @guarded
    def has_folder(self, tenant: str, area: Area, folder: str) -> bool:
        path = self.path(tenant, area, folder)
        return self._contained(tenant, path) and self.fs.isdir(path)

    @guarded
    def data_exists(self, tenant: str, name: str) -> bool:
        return self._file_info(tenant, self.path(tenant, DATA, name)) is not None

    @guarded
    def list_files(self, tenant: str, area: Area, folder: str = "", prefix: str = "", limit: int = 50,
                   after: str | None = None) -> tuple[list[StoredObject], bool]:
        """One page of files under ``<tenant>/<area>/<folder>`` whose names start with ``prefix``, by name,
        after ``after``; and whether more follow."""
        base = self.path(tenant, area, folder)
        narrowed = f"{base}/{prefix.rsplit('/', 1)[0]}" if "/" in prefix else base
        try:
            found = self.fs.find(narrowed, detail=True) if self.fs.isdir(narrowed) else {}
        except OSError as exc:
            if not _absent(exc):
                raise
            found = {}
        names = []
        for path, info in found.items():
            name = path[len(base) + 1:] if path.startswith(base + "/") else ""
            if name and name.startswith(prefix) and (after is None or name > after) and info.get("type") == "file":
                names.append((name, path, info))
        names.sort(key=lambda item: item[0])
        page = [StoredObject(name=name, size=int(info.get("size") or 0), modified_at=_modified(info))
                for name, path, info in names[:limit + 1] if self._contained(tenant, path)]
        return page[:limit], len(page) > limit

    @guarded
    def open_file(self, tenant: str, area: Area, name: str, what: str) -> tuple[IO[bytes], int]:
        """(an open file, its size) of a stored file; 404 naming ``what`` when there is none."""
        path = self.path(tenant, area, name)
        info = self._file_info(tenant, path)
        if info is None:
            raise not_found(what)
        return self.fs.open(path, "rb"), int(info["size"])

    @guarded
    def delete_file(self, tenant: str, area: Area, name: str, what: str) -> DeletedObjects:
        path = self.path(tenant, area, name)
        info = self._file_info(tenant, path)
        if info is None:
            raise not_found(what)
        self.fs.rm(path)
        return DeletedObjects(deleted=[name], bytes=int(info["size"]))

    @guarded
    def delete_folder(self, tenant: str, area: Area, folder: str) -> DeletedObjects:
        """Remove everything under ``<tenant>/<area>/<folder>`` (a job's outputs); links are removed, not followed."""
        files: list[StoredObject] = []
        after = None
        while True:
            page, more = self.list_files(tenant, area, folder, limit=1000, after=after)
            files += page
            if not more:
                break
            after = page[-1].name
        base = self.path(tenant, area, folder)
        if self._contained(tenant, base) and self.fs.exists(base):
            self.fs.rm(base, recursive=True)
        return DeletedObjects(deleted=[f.name for f in files], bytes=sum(f.size for f in files))


def _modified(info: dict[str, Any]) -> str | None:
    return iso(info.get("LastModified") or info.get("mtime") or info.get("created"))


def read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """A stored file's bytes in chunks, closing it at the end (a StreamingResponse's body)."""
    with handle:
        yield from iter(lambda: handle.read(CHUNK_BYTES), b"")
