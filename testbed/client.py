"""Python SDK for the control plane, shaped like Ray's ``JobSubmissionClient``; every answer is a typed model.

client = TestbedClient.from_env()                  # or TestbedClient(url, token)
job = client.submit(template="smoke", params={"epochs": 3})
job = client.wait(job.id); print(job.status, client.logs(job.id).logs)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ValidationError

from testbed.client_error import TestbedError
from testbed.tls import tls_context
from testbed.local_address import local_control_plane_url, testbed_home
from testbed.api import Health, IssuedToken, MlflowLogin, TemplateList, TenantList, TokenList
from testbed.audit import AuditEntry, AuditPage, AuditVerification
from testbed.errors import format_validation_errors
from testbed.jobs import Job, JobList, JobLogs, JobSpec, JobStatus
from testbed.limits import MAX_DATA_FILE_BYTES
from testbed.money import Quote
from testbed.packaging import PackageError, build_package, mib
from testbed.statements import MonthClosed, Statement
from testbed.storage import (
    DeletedObjects,
    FolderTransfer,
    ObjectList,
    StoredObject,
    StoredPackage,
    check_name,
)
from testbed.tenant_exit import PurgeResult
from testbed.usage import UsageReport

ENV_URL = "TESTBED_URL"
ENV_TOKEN = "TESTBED_TOKEN"
Model = TypeVar("Model", bound=BaseModel)
__all__ = ["ENV_TOKEN", "ENV_URL", "TestbedClient", "TestbedError", "local_control_plane_url", "testbed_home"]


class TestbedClient:
    """One control plane, one token: jobs (submit, get_job, status, list_jobs, iter_jobs, logs, stop, wait), your code
    and data (upload_package, upload_data, list_data, download_data, delete_data, list_outputs, download_output,
    delete_outputs), templates, tenants, token rotation, usage and health."""

    __test__ = False

    def __init__(self, url: str, token: str | None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=tls_context())

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> "TestbedClient":
        """URL from the argument, ``$TESTBED_URL`` or the local state; token from the argument or ``$TESTBED_TOKEN``."""
        url = url or os.environ.get(ENV_URL) or local_control_plane_url()
        if not url:
            raise TestbedError(
                f"no control plane address: set {ENV_URL}, pass --url, or start one with `testbed up`", "no_address"
            )
        token = token or os.environ.get(ENV_TOKEN)
        if not token:
            raise TestbedError(
                f"no token: set {ENV_TOKEN} or pass --token "
                "(the local operator prints one with `testbed tenants token ID`)",
                "no_token",
            )
        return cls(url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TestbedClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, answer: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        """One request; the answer validated as ``answer``, any failure raised as :class:`TestbedError`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TestbedError(f"cannot reach the control plane at {self.url}: {exc}", "unreachable") from None
        if response.status_code >= 400:
            raise TestbedError.from_response(response)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise TestbedError(
                f"unexpected answer from {method} {path}: {format_validation_errors(exc.errors())}", "bad_answer"
            ) from None

    def _download(self, path: str, dest: str | Path) -> Path:
        """Stream a file answer into ``dest``; a failure as :class:`TestbedError` (no partial file is left)."""
        target, part = Path(dest), Path(f"{dest}.part")
        try:
            with self._http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise TestbedError.from_response(response)
                with open(part, "wb") as out:
                    for chunk in response.iter_bytes(2**20):
                        out.write(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise TestbedError(f"cannot reach the control plane at {self.url}: {exc}", "unreachable") from None
        part.replace(target)
        return target

    # -- jobs -----------------------------------------------------------------------------
    def submit(
        self,
        spec: JobSpec | Mapping[str, Any] | None = None,
        working_dir: str | Path | None = None,
        excludes: Sequence[str] = (),
        **fields: Any,
    ) -> Job:
        """Submit a job (a ``JobSpec``, a dict, or keyword fields of one); the control plane validates it.

        ``working_dir``: a folder on this machine, packed and uploaded (:meth:`upload_package`) and run as the
        job's working directory, as Ray's ``runtime_env={"working_dir": ...}``; ``excludes`` as Ray's.
        """
        body = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, JobSpec) else dict(spec or {})
        if working_dir is not None:
            fields["code_package"] = self.upload_package(working_dir, excludes).ref
        return self._call(Job, "POST", "/v1/jobs", json={**body, **fields})

    def quote(self, spec: JobSpec | Mapping[str, Any] | None = None, **fields: Any) -> Quote:
        """The hold (maximum cost in won) a job would take if submitted now, and whether it fits your grant's
        balance; nothing is submitted (``POST /v1/jobs/quote``, the same body as :meth:`submit`)."""
        body = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, JobSpec) else dict(spec or {})
        return self._call(Quote, "POST", "/v1/jobs/quote", json={**body, **fields})

    def get_job(self, job_id: str) -> Job:
        return self._call(Job, "GET", f"/v1/jobs/{job_id}")

    def status(self, job_id: str) -> JobStatus:
        return self.get_job(job_id).status

    def list_jobs(
        self, status: JobStatus | str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> JobList:
        """One page of your jobs (the operator's: every tenant's), newest first; optionally of one status.

        ``limit`` is the page size (the server's default and maximum apply); ``cursor`` is the
        ``next_cursor`` of the previous page. :meth:`iter_jobs` walks every page.
        """
        params = {"status": JobStatus(status).value if status else None, "limit": limit, "cursor": cursor}
        return self._call(JobList, "GET", "/v1/jobs", params=_present(params))

    def iter_jobs(self, status: JobStatus | str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job :meth:`list_jobs` would page through, newest first, one page fetched at a time."""
        cursor = None
        while True:
            page = self.list_jobs(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def logs(self, job_id: str) -> JobLogs:
        """The job's logs so far; ``final`` once the job ended and the control plane stored them."""
        return self._call(JobLogs, "GET", f"/v1/jobs/{job_id}/logs")

    def stop(self, job_id: str) -> Job:
        return self._call(Job, "POST", f"/v1/jobs/{job_id}/stop")

    def wait(
        self, job_id: str, timeout: float = 600.0, poll: float = 0.25, on_update: Callable[[Job], None] | None = None
    ) -> Job:
        """Poll until the job ends; ``on_update`` sees the job after every poll. Raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if job.status.terminal:
                return job
            if time.monotonic() > deadline:
                raise TestbedError(f"job {job_id} still {job.status.value} after {timeout:g}s", "timeout")
            time.sleep(poll)

    # -- your code and data -----------------------------------------------------------------
    def upload_package(self, folder: str | Path, excludes: Sequence[str] = ()) -> StoredPackage:
        """Pack ``folder`` (:mod:`testbed.packaging`: excludes, links, size limit) and store it in your storage,
        unless it is there already; a job names it by the answer's ``ref`` (``code_package``)."""
        try:
            package = build_package(folder, excludes)
        except (PackageError, OSError) as exc:
            raise TestbedError(str(exc), "refused_here") from None
        try:
            return self._call(StoredPackage, "GET", f"/v1/packages/{package.ref}")
        except TestbedError as exc:
            if exc.status_code != 404:
                raise
        return self._call(
            StoredPackage,
            "PUT",
            f"/v1/packages/{package.ref}",
            content=package.data,
            headers={"Content-Type": "application/zip"},
        )

    def upload_data(self, local: str | Path, name: str | None = None) -> StoredObject:
        """Store a file as ``data/<name>`` (default: its file name), streamed; jobs read it as
        ``testbed-data://<name>`` (a template's ``data_path``) or under ``$TESTBED_DATA_PATH``."""
        path = Path(local)
        name = name or path.name
        try:
            check_name(name, "data name")
            size = path.stat().st_size
        except (ValueError, OSError) as exc:
            raise TestbedError(f"{local}: {getattr(exc, 'strerror', None) or exc}", "refused_here") from None
        if not path.is_file() or size > MAX_DATA_FILE_BYTES:
            why = "not a file" if not path.is_file() else f"{mib(size)}, over the {mib(MAX_DATA_FILE_BYTES)} limit"
            raise TestbedError(f"{local}: {why} of a data file", "refused_here")
        with open(path, "rb") as body:
            return self._call(
                StoredObject,
                "PUT",
                f"/v1/data/{quote(name)}",
                content=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )

    def list_data(
        self, prefix: str = "", limit: int | None = None, cursor: str | None = None, sha256: bool = False
    ) -> ObjectList:
        """One page of your data files by name; ``next_cursor`` for the next (:meth:`iter_data` walks them all);
        ``sha256``: each with its SHA-256."""
        params = {"prefix": prefix or None, "limit": limit, "cursor": cursor, "sha256": "true" if sha256 else None}
        return self._call(ObjectList, "GET", "/v1/data", params=_present(params))

    def iter_data(self, prefix: str = "", sha256: bool = False) -> Iterator[StoredObject]:
        return _pages(lambda cursor: self.list_data(prefix, cursor=cursor, sha256=sha256))

    def upload_folder(
        self,
        local: str | Path,
        name: str | None = None,
        workers: int = 4,
        progress: Callable[[int, int], None] | None = None,
    ) -> FolderTransfer:
        """Store a folder (recursively) as ``data/<name>/<relative path>`` (default name: the folder's), ``workers``
        files at a time; a file already stored with the same size and SHA-256 is skipped, so an interrupted upload
        resumes. ``progress(bytes_done, bytes_total)`` after each file. Jobs read it as ``testbed-data://<name>``."""
        from testbed.folders import upload_folder

        return upload_folder(self, Path(local), name, workers, progress)

    def download_folder(
        self, name: str, dest: str | Path, workers: int = 4, progress: Callable[[int, int], None] | None = None
    ) -> FolderTransfer:
        """Fetch every file of your data folder ``name`` into ``dest`` (created), keeping the relative paths."""
        from testbed.folders import download_folder

        return download_folder(self, name, Path(dest), workers, progress)

    def delete_folder(self, name: str, workers: int = 4) -> DeletedObjects:
        """Remove every file of your data folder ``name``."""
        from testbed.folders import delete_folder

        return delete_folder(self, name, workers)

    def download_data(self, name: str, dest: str | Path) -> Path:
        return self._download(f"/v1/data/{quote(name)}", dest)

    def delete_data(self, name: str) -> DeletedObjects:
        return self._call(DeletedObjects, "DELETE", f"/v1/data/{quote(name)}")

    def list_outputs(
        self, job_id: str, prefix: str = "", limit: int | None = None, cursor: str | None = None
    ) -> ObjectList:
        """One page of the files a job wrote to its folder (checkpoints, outputs)."""
        params = {"prefix": prefix or None, "limit": limit, "cursor": cursor}
        return self._call(ObjectList, "GET", f"/v1/jobs/{job_id}/outputs", params=_present(params))

    def iter_outputs(self, job_id: str, prefix: str = "") -> Iterator[StoredObject]:
        return _pages(lambda cursor: self.list_outputs(job_id, prefix, cursor=cursor))

    def download_output(self, job_id: str, name: str, dest: str | Path) -> Path:
        return self._download(f"/v1/jobs/{job_id}/outputs/{quote(name)}", dest)

    def delete_outputs(self, job_id: str) -> DeletedObjects:
        """Remove everything an ended job wrote to its folder."""
        return self._call(DeletedObjects, "DELETE", f"/v1/jobs/{job_id}/outputs")

    # -- region ---------------------------------------------------------------------------
    def templates(self) -> TemplateList:
        return self._call(TemplateList, "GET", "/v1/templates")

    def tenants(self) -> TenantList:
        """The region's tenants the token may see (the operator: all of them)."""
        return self._call(TenantList, "GET", "/v1/tenants")

    def mlflow_credentials(self) -> MlflowLogin:
        """This token's own MLflow login (a tenant: its user and workspace; the operator: read-only).

        ``login.env()`` is the environment the MLflow client reads; or pass it on:
        ``os.environ.update(client.mlflow_credentials().env())`` then use ``mlflow`` as usual.
        """
        return self._call(MlflowLogin, "GET", "/v1/mlflow/credentials")

    def rotate_token(self, subject: str, name: str | None = None) -> IssuedToken:
        """Operator only: a new token for a tenant (or ``operator``), named ``name`` (a person; default
        ``default``); the subject's old token of that name stops working, its other named tokens do not."""
        return self._call(IssuedToken, "POST", f"/v1/tenants/{subject}/token", params=_present({"name": name}))

    def list_tokens(self, subject: str) -> TokenList:
        """Operator only: a subject's named tokens (active and revoked), never the tokens themselves."""
        return self._call(TokenList, "GET", f"/v1/tenants/{subject}/tokens")

    def revoke_token(self, subject: str, name: str) -> TokenList:
        """Operator only: the subject's token ``name`` stops working; its earlier actions still name it."""
        return self._call(TokenList, "DELETE", f"/v1/tenants/{subject}/tokens/{quote(name, safe='')}")

    def audit(
        self,
        tenant: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditPage:
        """Operator only: one page of the audit trail, oldest first."""
        params = {"tenant": tenant, "kind": kind, "since": since, "until": until, "limit": limit, "cursor": cursor}
        return self._call(AuditPage, "GET", "/v1/audit", params=_present(params))

    def iter_audit(self, **filters: Any) -> Iterator[AuditEntry]:
        cursor = None
        while True:
            page = self.audit(cursor=cursor, **filters)
            yield from page.entries
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def statement(self, month: str, tenant: str | None = None) -> Statement:
        """A month's statement rows (a tenant: its own; provisional while the month is open)."""
        return self._call(Statement, "GET", f"/v1/statements/{month}", params=_present({"tenant": tenant}))

    def close_month(self, month: str) -> MonthClosed:
        """Operator only: close a month (Asia/Seoul); its statement never changes afterwards."""
        return self._call(MonthClosed, "POST", f"/v1/statements/{month}/close")

    def download_statement(self, month: str, format: str, dest: str | Path, tenant: str | None = None) -> Path:
        """Save the month's statement as ``format`` (csv, xlsx, or pdf: one tenant's) into the file ``dest``."""
        query = urlencode(_present({"format": format, "tenant": tenant}))
        return self._download(f"/v1/statements/{month}/download?{query}", dest)

    def audit_verify(self, expect_head: str | None = None) -> AuditVerification:
        """Operator only: the control plane recomputes the audit trail's hash chain."""
        return self._call(AuditVerification, "GET", "/v1/audit/verify", params=_present({"expect_head": expect_head}))

    def download_tenant_archive(self, tenant: str, dest: str | Path) -> Path:
        """Operator only: everything the platform keeps of a tenant, as one zip (the export is recorded)."""
        return self._download(f"/v1/tenants/{tenant}/archive", dest)

    def purge_tenant(self, tenant: str) -> PurgeResult:
        """Operator only, after an export: remove the tenant's storage, job logs and tokens (ledger rows stay)."""
        return self._call(PurgeResult, "POST", f"/v1/tenants/{tenant}/purge", json={"confirm": tenant})

    def usage(self, tenant: str | None = None, series: bool = False) -> UsageReport:
        """Allocated use per tenant against its grant; ``series`` adds each tenant's cumulative GPU burn."""
        params = {"tenant": tenant, "series": "true" if series else None}
        return self._call(UsageReport, "GET", "/v1/usage", params=_present(params))

    def health(self) -> Health:
        return self._call(Health, "GET", "/healthz")


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


def _pages(page: Callable[[str | None], ObjectList]) -> Iterator[StoredObject]:
    """Every file of a paged listing, one page fetched at a time."""
    cursor = None
    while True:
        answer = page(cursor)
        yield from answer.objects
        if answer.next_cursor is None:
            return
        cursor = answer.next_cursor
