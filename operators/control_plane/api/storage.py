"""The API of each tenant's storage: code packages, data, and a job's outputs (checkpoints).

``PUT /v1/packages/{ref}`` takes a zip whose SHA-256 the path names (``sha256:<hex>``), checks it (the digest,
a zip, no path outside itself, at most ``max_package_bytes`` packed and unpacked) and stores it once in the
caller's ``packages/``; ``GET`` says whether the caller has it. ``PUT|GET|DELETE /v1/data/{name}`` and
``GET /v1/data`` manage the caller's ``data/`` (streamed, at most ``max_data_file_bytes`` a file);
``GET /v1/jobs/{id}/outputs[/{name}]`` lists and reads a job's folder, ``DELETE /v1/jobs/{id}/outputs`` removes
it once the job ended. A tenant reaches its own storage only: another tenant's package, data or job is a 404.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from typing import IO, Annotated, Any, Iterator

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from operators.control_plane.api.deps import Caller, Plane
from operators.control_plane.auth import Principal
from operators.control_plane.errors import ServiceError, error_responses
from operators.control_plane.guards import UploadLimit
from operators.control_plane.tenant_storage import CHUNK_BYTES, Upload
from testbed.limits import DEFAULT_PAGE_SIZE, MAX_ID_CHARS, MAX_PAGE_SIZE
from testbed.packaging import MAX_PACKAGE_FILES
from testbed.settings import ControlPlaneSettings
from testbed.storage import (
    DATA,
    DATA_NAME,
    JOBS,
    MAX_NAME_CHARS,
    OUTPUT_NAME,
    PACKAGE_REF,
    DeletedObjects,
    ObjectList,
    StoredObject,
    StoredPackage,
    package_sha256,
    prefix_problem,
    valid_name,
)
from testbed.errors import ErrorCode

PackageRef = Annotated[str, Path(pattern=PACKAGE_REF, description="'sha256:' and the zip's SHA-256 (hex)")]
DataName = Annotated[str, Path(max_length=MAX_NAME_CHARS, pattern=DATA_NAME, description="e.g. sensors/2025-03.csv")]
OutputName = Annotated[str, Path(max_length=1024, pattern=OUTPUT_NAME, description="as listed, e.g. ckpt/model.pt")]
JobId = Annotated[str, Path(max_length=MAX_ID_CHARS)]
Prefix = Annotated[str, Query(max_length=MAX_NAME_CHARS, description="only names starting with this")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]
Cursor = Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page")]
Digests = Annotated[bool, Query(description="each file with its SHA-256 (read once per file, then remembered)")]
SPOOL_BYTES = 16 * 2**20  # a package is held in memory up to this, then on the control plane's temporary disk
BINARY = {"schema": {"type": "string", "format": "binary"}}
FILE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": BINARY}, "description": "the file's bytes"}
}


def upload_limits(settings: ControlPlaneSettings) -> list[UploadLimit]:
    """The upload routes' body limits (every other route keeps the JSON limit)."""
    return [
        UploadLimit("PUT", "/v1/packages/", settings.max_package_bytes, "a code package"),
        UploadLimit("PUT", "/v1/data/", settings.max_data_file_bytes, "a data file"),
    ]


def _body(media: str, what: str, limit: int) -> dict[str, Any]:
    schema = {"schema": {"type": "string", "format": "binary", "minLength": 1}}
    return {
        "requestBody": {
            "required": True,
            "description": f"{what}: 1 to {limit} bytes (413 beyond)",
            "content": {media: schema, "application/octet-stream": schema},
        }
    }


def tenant_of(caller: Principal) -> str:
    """The caller's tenant: storage belongs to tenants (the operator and monitoring have none)."""
    if caller.role != "tenant":
        raise ServiceError(
            ErrorCode.FORBIDDEN, f"the {caller.role} token has no storage of its own; use a tenant token"
        )
    return caller.subject


def _errors(*statuses: int, too_large: str = "") -> dict[int | str, dict[str, Any]]:
    """``error_responses`` with the upload's own 413 description."""
    responses = error_responses(*statuses)
    if too_large:
        responses[413]["description"] = too_large
    return responses


def checked_listing(prefix: str, cursor: str | None) -> None:
    """422 naming the query field when a prefix or cursor is not a name inside the listed folder."""
    for field, value in (("prefix", prefix), ("cursor", cursor or "")):
        problem = prefix_problem(value)
        if problem:
            raise ServiceError(
                ErrorCode.INVALID_SPEC,
                f"query.{field}: {value[:80]!r} {problem}; give a relative name "
                "inside the listed folder, e.g. 'sensors/' or 'ckpt/epoch-'",
            )


def checked_name(name: str, request: Request) -> str:
    """The data name, whole: Starlette's ``{name:path}`` stops before a trailing newline (``x%0A`` would be
    ``x``), so the name must be the whole rest of the decoded path; 422 otherwise."""
    if not valid_name(name) or not request.scope["path"].endswith("/" + name):
        name = request.scope["path"].removeprefix("/v1/data/")
        raise ServiceError(
            ErrorCode.INVALID_SPEC,
            f"path.name: {name[:80]!r} is not a data name: '/'-separated parts "
            "of letters, digits, '.', '_' or '-', none starting with '.'",
        )
    return name


def _answer(model: Any, status: int) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def router_for(settings: ControlPlaneSettings) -> APIRouter:
    """The storage routes (their OpenAPI names the configured upload limits, so the router is built per settings)."""
    router = APIRouter()
    max_package = settings.max_package_bytes

    @router.get("/v1/packages/{ref}", response_model=StoredPackage, responses=error_responses(401, 403, 404, 422, 503))
    def get_package(ref: PackageRef, caller: Caller, plane: Plane) -> StoredPackage:
        """Whether the caller has this package (the client asks before uploading)."""
        found = plane.storage.package(tenant_of(caller), package_sha256(ref))
        if found is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no code package {ref} in tenant {caller.subject!r}'s storage")
        return found

    @router.put(
        "/v1/packages/{ref}",
        response_model=StoredPackage,
        status_code=201,
        responses={
            200: {"model": StoredPackage, "description": "already stored (created: false)"},
            **_errors(401, 403, 409, 413, 422, 503, too_large=f"package over {max_package} bytes, packed or unpacked"),
        },
        openapi_extra=_body("application/zip", "the package zip", max_package),
    )
    async def put_package(ref: PackageRef, request: Request, caller: Caller, plane: Plane) -> JSONResponse:
        """Store a code package; 409 when the body's SHA-256 is not the one ``ref`` names."""
        tenant, sha256 = tenant_of(caller), package_sha256(ref)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            digest = hashlib.sha256()
            async for chunk in request.stream():  # the middleware stops it past max_package (413)
                digest.update(chunk)
                spool.write(chunk)
            if digest.hexdigest() != sha256:
                raise ServiceError(
                    ErrorCode.DIGEST_MISMATCH,
                    f"path.ref: the body's SHA-256 is {digest.hexdigest()}, not the {sha256} the path names",
                )
            spool.seek(0)
            await run_in_threadpool(check_zip, spool, max_package, f"package {ref}")
            stored = await run_in_threadpool(plane.storage.store_package, tenant, sha256, spool)
        return _answer(stored, 201 if stored.created else 200)

    @router.put(
        "/v1/data/{name:path}",
        response_model=StoredObject,
        status_code=201,
        responses=_errors(401, 403, 409, 413, 422, 503, too_large=f"file over {settings.max_data_file_bytes} bytes"),
        openapi_extra=_body("application/octet-stream", "the file", settings.max_data_file_bytes),
    )
    async def put_data(name: DataName, request: Request, caller: Caller, plane: Plane) -> JSONResponse:
        """Store (or replace) a data file under ``data/<name>``, streamed; an empty body is a 422, a name that
        a folder of your data holds (or a file on its path) a 409."""
        checked_name(name, request)
        upload = await run_in_threadpool(Upload, plane.storage, tenant_of(caller))
        try:
            async for chunk in request.stream():  # the middleware stops it past max_data_file_bytes (413)
                await run_in_threadpool(upload.write, chunk)
            if upload.size == 0:  # also what a PUT without a body looks like
                raise ServiceError(ErrorCode.INVALID_SPEC, f"body: is empty; data {name!r} needs at least one byte")
            stored = await run_in_threadpool(upload.commit, DATA, name)
        except BaseException:
            await run_in_threadpool(upload.discard)
            raise
        return _answer(stored, 201)

    @router.get("/v1/data", response_model=ObjectList, responses=error_responses(401, 403, 422, 503))
    def list_data(
        caller: Caller,
        plane: Plane,
        prefix: Prefix = "",
        limit: Limit = DEFAULT_PAGE_SIZE,
        cursor: Cursor = None,
        sha256: Digests = False,
    ) -> ObjectList:
        """The caller's data files by name (those starting with ``prefix``; a folder's: ``NAME/``), a page at a
        time; with ``sha256=true`` each with its SHA-256."""
        checked_listing(prefix, cursor)
        page, more = plane.storage.list_files(
            tenant_of(caller), DATA, prefix=prefix, limit=limit, after=cursor, digests=sha256
        )
        return ObjectList(objects=page, next_cursor=page[-1].name if more else None)

    @router.get(
        "/v1/data/{name:path}",
        response_class=StreamingResponse,
        responses={**FILE_ANSWER, **error_responses(401, 403, 404, 422, 503)},
    )
    def get_data(name: DataName, request: Request, caller: Caller, plane: Plane) -> StreamingResponse:
        handle, size = plane.storage.open_file(tenant_of(caller), DATA, checked_name(name, request), f"data {name!r}")
        return _stream(handle, size)

    @router.delete(
        "/v1/data/{name:path}", response_model=DeletedObjects, responses=error_responses(401, 403, 404, 422, 503)
    )
    def delete_data(name: DataName, request: Request, caller: Caller, plane: Plane) -> DeletedObjects:
        return plane.storage.delete_file(tenant_of(caller), DATA, checked_name(name, request), f"data {name!r}")

    @router.get("/v1/jobs/{job_id}/outputs", response_model=ObjectList, responses=error_responses(401, 404, 422, 503))
    def list_outputs(
        job_id: JobId,
        caller: Caller,
        plane: Plane,
        prefix: Prefix = "",
        limit: Limit = DEFAULT_PAGE_SIZE,
        cursor: Cursor = None,
    ) -> ObjectList:
        """The files the job wrote to its folder (``TESTBED_STORAGE_PATH``): checkpoints and outputs; 404 while
        it has none (none written yet, or removed)."""
        checked_listing(prefix, cursor)
        row = plane.visible_job(caller, job_id)
        if not plane.storage.has_folder(row.tenant, JOBS, row.id):
            raise ServiceError(ErrorCode.NOT_FOUND, f"no outputs of job {job_id!r} (none written yet, or removed)")
        page, more = plane.storage.list_files(row.tenant, JOBS, row.id, prefix=prefix, limit=limit, after=cursor)
        return ObjectList(objects=page, next_cursor=page[-1].name if more else None)

    @router.get(
        "/v1/jobs/{job_id}/outputs/{name:path}",
        response_class=StreamingResponse,
        responses={**FILE_ANSWER, **error_responses(401, 404, 422, 503)},
    )
    def get_output(
        job_id: JobId, name: OutputName, request: Request, caller: Caller, plane: Plane
    ) -> StreamingResponse:
        if not request.scope["path"].endswith("/" + name):  # a trailing newline the route's pattern dropped
            raise ServiceError(
                ErrorCode.INVALID_SPEC, f"path.name: {request.scope['path'][-80:]!r} is not an output name"
            )
        row = plane.visible_job(caller, job_id)
        handle, size = plane.storage.open_file(
            row.tenant, JOBS, f"{row.id}/{name}", f"output {name!r} of job {job_id!r}"
        )
        return _stream(handle, size)

    @router.delete(
        "/v1/jobs/{job_id}/outputs", response_model=DeletedObjects, responses=error_responses(401, 404, 409, 422, 503)
    )
    def delete_outputs(job_id: JobId, caller: Caller, plane: Plane) -> DeletedObjects:
        """Remove a job's folder once the job ended (409 while it may still write there); removing again removes
        nothing."""
        row = plane.visible_job(caller, job_id)
        if not row.terminal:
            raise ServiceError(
                ErrorCode.JOB_ACTIVE,
                f"job {job_id!r} is {row.status}: its outputs can be removed once it ended (stop it first)",
            )
        return plane.storage.delete_folder(row.tenant, JOBS, row.id)

    return router


def _stream(handle: Any, size: int) -> StreamingResponse:
    return StreamingResponse(
        read_chunks(handle, size), media_type="application/octet-stream", headers={"Content-Length": str(size)}
    )


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
            raise ServiceError(
                ErrorCode.INVALID_SPEC, f"{what}: the zip names a path outside itself: {entry.filename!r}"
            )
        if (entry.external_attr >> 16) & 0o170000 == 0o120000:
            raise ServiceError(ErrorCode.INVALID_SPEC, f"{what}: the zip holds a link: {entry.filename!r}")
    if len(entries) > MAX_PACKAGE_FILES:  # the same limit the client packs by (testbed.packaging)
        raise ServiceError(
            ErrorCode.TOO_LARGE,
            f"{what}: the zip holds {len(entries)} entries, over the {MAX_PACKAGE_FILES}-entry limit of a code package",
        )
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > max_unpacked:
        raise ServiceError(
            ErrorCode.TOO_LARGE,
            f"{what}: the zip unpacks to {unpacked} bytes, over the {max_unpacked}-byte limit of a code package",
        )
    return unpacked


def read_chunks(handle: IO[bytes], size: int | None = None) -> Iterator[bytes]:
    """A stored file's bytes in chunks (at most ``size``: what Content-Length announced, even if the file grows
    meanwhile), closing it at the end (a StreamingResponse's body)."""
    left = size
    with handle:
        while left is None or left > 0:
            chunk = handle.read(CHUNK_BYTES if left is None else min(CHUNK_BYTES, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
