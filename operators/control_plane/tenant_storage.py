"""The tenants' storage as the control plane reaches it: a local folder, or any fsspec URL (``s3://...`` in a
cluster, through the control plane's own identity).

Every call names the tenant, and every path is built by :func:`testbed.storage.tenant_path` from names that were
checked first (relative, no ``..``; listing prefixes and cursors too), so no call reaches past
``<root>/<tenant>/``. Locally, jobs run as the operator's user and could plant links (or swap them in and out)
in their output folder: every local file is reached through :mod:`.contained_files`, one ``O_NOFOLLOW`` open
per component and the opened descriptor checked, so a link is never listed, read or followed.

Uploads go to ``<tenant>/uploads/<random>`` first and are moved into place when complete, so a broken upload
never shows a partial file; ``uploads/`` is never listed, and uploads left idle (a crash, a client gone) are
swept at start and then periodically (:meth:`TenantStorage.sweep_uploads`). A store that does not answer (or a missing driver, e.g. s3fs) is a 503 naming the
root; the filesystem is opened on first use, so the control plane starts (and runs jobs) without it.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import hashlib
import os
import threading
import time
import uuid
from typing import IO, Any, Callable, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from operators.control_plane import contained_files as contained
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
    prefix_problem,
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
            raise ServiceError(
                ErrorCode.STORAGE_UNAVAILABLE,
                f"tenant storage {root} does not answer: {getattr(exc, 'strerror', None) or exc}",
            ) from None

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


class Upload:
    """A file being written to ``<tenant>/uploads/``; :meth:`commit` moves it into place."""

    def __init__(self, storage: TenantStorage, tenant: str):
        self.storage, self.tenant = storage, tenant
        self.size = 0
        self._digest = hashlib.sha256()
        storage.fs  # noqa: B018 - opens the filesystem (tells whether it is local)
        if storage.local:
            self._new: contained.NewFile | None = contained.NewFile(storage.local_root(), [tenant, UPLOADS])
            self._file: IO[bytes] = self._new.file
            self.path = ""
        else:
            self._new = None
            self.path = storage.path(tenant, UPLOADS, uuid.uuid4().hex)
            storage.fs.makedirs(storage.path(tenant, UPLOADS), exist_ok=True)
            self._file = storage.fs.open(self.path, "wb")

    @guarded
    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    @guarded
    def commit(self, area: Area, name: str) -> StoredObject:
        """Move the upload to ``<tenant>/<area>/<name>`` (replacing a file there); 409 where a folder of that
        name, a file on its path or a link out of the tenant's folder is in the way."""
        conflict = ServiceError(
            ErrorCode.NAME_CONFLICT,
            f"{area} {name!r}: a folder of that name, a file on its path "
            "or a link out of the tenant's folder is in the way",
        )
        if self._new is not None:
            try:
                self._new.place([self.tenant, area, *name.split("/")])
            except (contained.Blocked, NotADirectoryError, IsADirectoryError, FileExistsError):
                raise conflict from None
        else:
            self._file.close()
            final = self.storage.path(self.tenant, area, name)
            if self.storage.fs.isdir(final):
                raise conflict
            try:
                self.storage.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self.storage.fs.mv(self.path, final)
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                raise conflict from None
        sha256 = self._digest.hexdigest()
        self.storage.remember_digest(self.tenant, area, name, self.size, sha256)
        return StoredObject(name=name, size=self.size, modified_at=iso(dt.datetime.now(dt.timezone.utc)), sha256=sha256)

    def discard(self) -> None:
        if self._new is not None:
            self._new.discard()
            return
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
        self._digests: dict[tuple[str, str, str, int], str] = {}  # (tenant, area, name, size) -> SHA-256

    def remember_digest(self, tenant: str, area: Area, name: str, size: int, sha256: str) -> None:
        """Keep an uploaded file's SHA-256 for later listings (``?sha256=true``)."""
        with self._lock:
            self._digests[(tenant, area, name, size)] = sha256

    def digest(self, tenant: str, area: Area, name: str, size: int) -> str | None:
        """A stored file's SHA-256: remembered from its upload (by name and size; the control plane is the only
        writer of data/), else read once through :meth:`open_file` and remembered; None if it vanished."""
        key = (tenant, area, name, size)
        with self._lock:
            known = self._digests.get(key)
        if known is not None:
            return known
        try:
            handle, _ = self.open_file(tenant, area, name, name)
        except ServiceError:
            return None
        sha = hashlib.sha256()
        with handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                sha.update(chunk)
        with self._lock:
            self._digests[key] = sha.hexdigest()
        return sha.hexdigest()

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

    def local_root(self) -> str:
        """The local root folder (made 0700 if missing); every local path is opened beneath it, links refused."""
        os.makedirs(self._base, mode=0o700, exist_ok=True)
        return self._base

    @staticmethod
    def _parts(tenant: str, area: Area, name: str = "") -> list[str]:
        return [tenant, area, *(name.split("/") if name else [])]

    def _file_info(self, tenant: str, area: Area, name: str) -> dict[str, Any] | None:
        if self.local:
            size = contained.file_size(self.local_root(), self._parts(tenant, area, name))
            return None if size is None else {"size": size, "type": "file"}
        path = self.path(tenant, area, name)
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
        info = self._file_info(tenant, PACKAGES, package_file(sha256))
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
    def has_folder(self, tenant: str, area: Area, folder: str) -> bool:
        self.fs  # noqa: B018
        if self.local:
            return contained.is_dir(self.local_root(), self._parts(tenant, area, folder))
        return bool(self.fs.isdir(self.path(tenant, area, folder)))

    @guarded
    def data_exists(self, tenant: str, name: str) -> bool:
        return self._file_info(tenant, DATA, name) is not None

    @guarded
    def list_files(
        self,
        tenant: str,
        area: Area,
        folder: str = "",
        prefix: str = "",
        limit: int = 50,
        after: str | None = None,
        digests: bool = False,
    ) -> tuple[list[StoredObject], bool]:
        """One page of files under ``<tenant>/<area>/<folder>`` whose names start with ``prefix``, by name,
        after ``after``; and whether more follow (``digests``: each with its SHA-256). ``prefix`` and ``after`` are checked names
        (:func:`testbed.storage.prefix_problem`): the walk never leaves the folder, nor follows a link."""
        for value in (prefix, after or ""):
            if prefix_problem(value):
                raise ValueError(f"{value[:80]!r} {prefix_problem(value)}")
        self.fs  # noqa: B018 - opens the filesystem (tells whether it is local)
        if self.local:
            found = [
                (f.name, f.size, f.mtime)
                for f in contained.walk(self.local_root(), self._parts(tenant, area, folder), prefix)
            ]
        else:
            found = self.find_remote(self.path(tenant, area, folder), prefix)
        names = sorted(item for item in found if after is None or item[0] > after)
        page = [
            StoredObject(name=name, size=int(size or 0), modified_at=iso(modified))
            for name, size, modified in names[: limit + 1]
        ]
        if digests:
            for item in page[:limit]:
                item.sha256 = self.digest(tenant, area, f"{folder}/{item.name}" if folder else item.name, item.size)
        return page[:limit], len(page) > limit

    def find_remote(self, base: str, prefix: str) -> list[tuple[str, int, Any]]:
        narrowed = f"{base}/{prefix.rsplit('/', 1)[0]}" if "/" in prefix else base
        try:
            found = self.fs.find(narrowed, detail=True) if self.fs.isdir(narrowed) else {}
        except OSError as exc:
            if not _absent(exc):
                raise
            found = {}
        names = []
        for path, info in found.items():
            name = path[len(base) + 1 :] if path.startswith(base + "/") else ""
            if name and name.startswith(prefix) and info.get("type") == "file":
                names.append((name, int(info.get("size") or 0), _modified_of(info)))
        return names

    @guarded
    def open_file(self, tenant: str, area: Area, name: str, what: str) -> tuple[IO[bytes], int]:
        """(an open file, its size) of a stored file; 404 naming ``what`` when there is none. Locally the file is
        opened once, no link followed, and the opened descriptor is what is checked."""
        self.fs  # noqa: B018
        if self.local:
            found = contained.open_file(self.local_root(), self._parts(tenant, area, name))
            if found is None:
                raise not_found(what)
            return found
        info = self._file_info(tenant, area, name)
        if info is None:
            raise not_found(what)
        return self.fs.open(self.path(tenant, area, name), "rb"), int(info["size"])

    @guarded
    def delete_file(self, tenant: str, area: Area, name: str, what: str) -> DeletedObjects:
        self.fs  # noqa: B018
        if self.local:
            size = contained.remove_file(self.local_root(), self._parts(tenant, area, name))
            if size is None:
                raise not_found(what)
            return DeletedObjects(deleted=[name], bytes=size)
        info = self._file_info(tenant, area, name)
        if info is None:
            raise not_found(what)
        self.fs.rm(self.path(tenant, area, name))
        return DeletedObjects(deleted=[name], bytes=int(info["size"]))

    @guarded
    def sweep_uploads(self, idle_seconds: float) -> int:
        """Remove uploads not written to for ``idle_seconds`` (left by a crash or a client gone away); how many."""
        self.fs  # noqa: B018
        now = time.time()
        removed = 0
        if self.local:
            root = self.local_root()
            for tenant in os.listdir(root):
                removed += len(contained.sweep(root, [tenant, UPLOADS], idle_seconds, now))
            return removed
        for path in self.fs.glob(f"{self._base}/*/{UPLOADS}/*"):
            modified = _modified_of(self.fs.info(path))
            stamp = modified.timestamp() if isinstance(modified, dt.datetime) else modified
            if stamp is not None and stamp <= now - idle_seconds:
                self.fs.rm(path)
                removed += 1
        return removed

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
        if self.local:
            contained.remove_tree(self.local_root(), self._parts(tenant, area, folder))
        else:
            base = self.path(tenant, area, folder)
            if self.fs.exists(base):
                self.fs.rm(base, recursive=True)
        return DeletedObjects(deleted=[f.name for f in files], bytes=sum(f.size for f in files))


def _modified_of(info: dict[str, Any]) -> Any:
    return info.get("LastModified") or info.get("mtime") or info.get("created")
