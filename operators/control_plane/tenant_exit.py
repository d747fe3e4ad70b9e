"""The end of the program for a company: hand it everything it owns, then remove it.

``GET /v1/tenants/{id}/archive`` (operator): one zip of the tenant's storage (code packages, data, every job's
outputs), its job records with their logs, its usage and its money-ledger entries; each export is recorded
(``tenant_exits``: when, the archive's SHA-256 and size). ``testbed tenants export ID --out DIR`` fetches it and
adds the company's MLflow runs and models (testbed/tenant_export.py).

``POST /v1/tenants/{id}/purge`` (operator, body ``{"confirm": "<id>"}``): only after an export that is newer than
the tenant's last job, and with none of its jobs active. It deletes the tenant's MLflow workspace (experiments,
runs, artifacts, registered models, traces, prompts; with the control plane's MLflow admin login) and user, the
tenant's storage, empties its jobs' logs and specs, revokes its tokens (kept, marked revoked) and records the purge
in ``tenant_exits`` and the audit trail. The job rows (ids, times, resources), the usage totals, the money ledger
and the audit trail stay: settlement needs them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from typing import IO

from sqlalchemy import func, select, update

from operators.control_plane import audit
from operators.control_plane import contained_files as contained
from operators.control_plane.audit import AuditKind
from operators.control_plane.auth import Principal
from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.plane import ControlPlane
from operators.control_plane.tenant_storage import CHUNK_BYTES
from operators.control_plane.db.models import JobRow, TenantExitRow, TokenRow
from testbed.jobs import TERMINAL_STATUSES
from testbed.tenant_exit import PurgeResult

ARCHIVE_MEDIA_TYPE = "application/zip"


def operator_only(caller: Principal) -> None:
    if not caller.is_operator:
        raise ServiceError(ErrorCode.FORBIDDEN, "only the operator token can export or purge a tenant")


def _all_files(plane: ControlPlane, tenant: str) -> list[tuple[str, int]]:
    """(name under the tenant's folder, size) of every regular file of the tenant's storage, by name. Locally the
    walk never follows a link (a planted link never leads out of the tenant's folder), as the storage's own."""
    storage = plane.storage
    storage.fs  # noqa: B018 - opens the filesystem (tells whether it is local)
    if storage.local:
        return sorted((f.name, f.size) for f in contained.walk(storage.local_root(), [tenant]))
    return sorted((name, size) for name, size, _ in storage.find_remote(storage.path(tenant), ""))


def _open(plane: ControlPlane, tenant: str, name: str) -> IO[bytes] | None:
    storage = plane.storage
    if storage.local:
        found = contained.open_file(storage.local_root(), [tenant, *name.split("/")])
        return found[0] if found is not None else None  # gone or replaced by a link since the walk: left out
    return storage.fs.open(f"{storage.path(tenant)}/{name}", "rb")


def _remove_all(plane: ControlPlane, tenant: str) -> None:
    storage = plane.storage
    if storage.local:
        contained.remove_tree(storage.local_root(), [tenant])
    elif storage.fs.exists(storage.path(tenant)):
        storage.fs.rm(storage.path(tenant), recursive=True)


def build_archive(plane: ControlPlane, tenant: str) -> tuple[IO[bytes], str, int]:
    """The tenant's archive in a temporary file: (file at offset 0, SHA-256, size)."""
    import zipfile

    from operators.control_plane.api.jobs import job_view
    from operators.metering import build_report

    jobs = plane.store.list_jobs(tenant=tenant)
    records = [{**job_view(row).model_dump(mode="json"), "logs": row.logs or ""} for row in jobs]
    usage = build_report(plane.ledger, plane.stack, [tenant], money=plane.money)
    ledger = [entry.model_dump(mode="json") for entry in plane.money.entries(tenant=tenant)]
    spool = tempfile.TemporaryFile()
    fixed = (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, value in (
            ("jobs.json", records),
            ("usage.json", usage.model_dump(mode="json")),
            ("ledger.json", ledger),
        ):
            archive.writestr(zipfile.ZipInfo(name, fixed), json.dumps(value, indent=1, ensure_ascii=False))
        for name, _ in _all_files(plane, tenant):
            source = _open(plane, tenant, name)
            if source is None:
                continue
            with source, archive.open(zipfile.ZipInfo(f"storage/{name}", fixed), "w", force_zip64=True) as target:
                while chunk := source.read(CHUNK_BYTES):
                    target.write(chunk)
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.sha256()
    while chunk := spool.read(CHUNK_BYTES):
        digest.update(chunk)
    spool.seek(0)
    return spool, digest.hexdigest(), size


def purge(plane: ControlPlane, tenant: str, actor: str | None) -> PurgeResult:
    store = plane.store
    with store.tenant_lock(tenant) as s:
        export = s.scalars(
            select(TenantExitRow)
            .where(TenantExitRow.tenant == tenant, TenantExitRow.kind == "export")
            .order_by(TenantExitRow.at.desc())
            .limit(1)
        ).first()
        last_job = s.scalar(select(func.max(JobRow.submitted_at)).where(JobRow.tenant == tenant))
        if export is None or (last_job is not None and last_job >= export.at):
            raise ServiceError(
                ErrorCode.EXPORT_REQUIRED,
                f"export tenant {tenant!r} first (`testbed tenants export "
                f"{tenant} --out DIR`): a purge needs an export newer than its last job",
            )
        terminal = [status.value for status in TERMINAL_STATUSES]
        active = s.scalar(select(func.count(JobRow.id)).where(JobRow.tenant == tenant, JobRow.status.not_in(terminal)))
        if active:
            raise ServiceError(
                ErrorCode.JOB_ACTIVE, f"tenant {tenant!r} has {active} job(s) not yet ended; stop them first"
            )
        mlflow = plane.mlflow.purge(tenant)  # first: if MLflow fails, nothing here has changed yet
        scrubbed = s.execute(update(JobRow).where(JobRow.tenant == tenant).values(logs="", spec={})).rowcount
        now = time.time()
        revoked = s.execute(
            update(TokenRow)
            .where(TokenRow.subject == tenant, TokenRow.role == "tenant", TokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        files = _all_files(plane, tenant)
        sizes = sum(size for _, size in files)
        _remove_all(plane, tenant)
        s.add(TenantExitRow(tenant=tenant, kind="purge", at=now, sha256=export.sha256, bytes=sizes, actor=actor))
        audit.append(
            s,
            AuditKind.TENANT_PURGED,
            tenant=tenant,
            actor=actor,
            detail={
                "export_sha256": export.sha256,
                "deleted_files": len(files),
                "deleted_bytes": sizes,
                "jobs_scrubbed": scrubbed or 0,
                "tokens_revoked": revoked or 0,
                "mlflow": mlflow.model_dump() if mlflow is not None else None,
            },
        )
        result = PurgeResult(
            tenant=tenant,
            export_sha256=export.sha256 or "",
            exported_at=export.at,
            deleted_files=len(files),
            deleted_bytes=sizes,
            jobs_scrubbed=scrubbed or 0,
            tokens_revoked=revoked or 0,
            mlflow=mlflow,
        )
    plane.tokens.clear()
    if plane.settings.credentials_dir is not None:
        (plane.settings.credentials_dir / f"{tenant}.token").unlink(missing_ok=True)
    return result


def known_tenant(plane: ControlPlane, tenant: str) -> None:
    """404 unless ``tenant`` is in the region or has jobs recorded (a tenant removed from the stack file)."""
    if tenant not in plane.tenants and not plane.store.list_jobs(tenant=tenant, limit=1):
        raise not_found(f"tenant {tenant!r} in region {plane.stack.region.id!r}")


def record_export(plane: ControlPlane, tenant: str, sha256: str, size: int, actor: str | None) -> None:
    """The export, recorded (what a purge checks for) and audited in one transaction."""
    with plane.store.write_session() as s:
        s.add(TenantExitRow(tenant=tenant, kind="export", at=time.time(), sha256=sha256, bytes=size, actor=actor))
        audit.append(s, AuditKind.TENANT_EXPORTED, tenant=tenant, actor=actor, detail={"sha256": sha256, "bytes": size})
