"""testbed tenants export / purge: the archive holds everything the platform keeps of a tenant; a purge needs an
export newer than the tenant's last job, removes its storage, job logs and tokens, and leaves the ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from testbed.cli.main import main
from testbed.client import TestbedError
from testbed.jobs import JobSpec, JobStatus
from tests.waiting import wait_until

TENANT, OTHER = "changwon-precision", "gimhae-robotics"


def _finished_job(client) -> str:
    job = client.submit(JobSpec(entrypoint="sleep 1", cpus=1, gpus=1, memory="1Gi"))
    wait_until(lambda: client.get_job(job.id).status == JobStatus.SUCCEEDED, 30, f"{job.id} to succeed")
    return job.id


def test_export_then_purge(noop_plane, tmp_path: Path, capsys) -> None:
    company, other = noop_plane.client(TENANT), noop_plane.client(OTHER)
    source = tmp_path / "sensors.csv"
    source.write_text("t,v\n1,2\n")
    company.upload_data(source, "plant/sensors.csv")
    other.upload_data(source, "theirs.csv")
    job_id = _finished_job(company)
    operator = ["--url", noop_plane.url, "--token", noop_plane.token("operator")]

    # purge before any export: refused, nothing removed
    assert main(["tenants", "purge", TENANT, "--yes", *operator]) != 0
    assert "export" in capsys.readouterr().err
    assert [o.name for o in company.list_data().objects] == ["plant/sensors.csv"]

    out = tmp_path / "handover"
    assert main(["tenants", "export", TENANT, "--out", str(out), "--json", *operator]) == 0
    manifest = json.loads(capsys.readouterr().out)
    folder = out / TENANT
    assert (folder / "storage" / "data" / "plant" / "sensors.csv").read_text() == "t,v\n1,2\n"
    jobs = json.loads((folder / "jobs.json").read_text())
    assert [j["id"] for j in jobs] == [job_id] and "logs" in jobs[0]
    ledger = json.loads((folder / "ledger.json").read_text())
    assert ledger and {e["tenant"] for e in ledger} == {TENANT}
    usage = json.loads((folder / "usage.json").read_text())
    assert [t["tenant"] for t in usage["tenants"]] == [TENANT]
    assert not any("theirs.csv" in str(p) for p in folder.rglob("*"))  # nothing of another tenant
    assert manifest["files"] >= 4 and manifest["mlflow_note"]  # this region's MLflow has no access control: noted

    # a tenant or the program office cannot export; another tenant's archive is not a tenant's business
    for token in (noop_plane.token(TENANT), noop_plane.token("program-office")):
        response = httpx.get(
            f"{noop_plane.url}/v1/tenants/{OTHER}/archive", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 403

    ledger_rows = sqlite3.connect(noop_plane.home / "cp.db").execute("select count(*) from money_ledger").fetchone()[0]
    assert main(["tenants", "purge", TENANT, "--yes", "--json", *operator]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["deleted_files"] >= 1 and result["jobs_scrubbed"] == 1 and result["tokens_revoked"] == 1
    assert result["export_sha256"] == manifest["archive_sha256"]
    with pytest.raises(TestbedError) as refused:
        company.list_data()
    assert refused.value.status_code == 401  # its token is gone
    assert not (noop_plane.home / "credentials" / f"{TENANT}.token").exists()
    assert not (noop_plane.home / "storage" / TENANT).exists()
    row = noop_plane.plane.store.get_job(job_id)
    assert row is not None and row.logs == "" and row.spec == {}  # the job row stays for settlement, emptied
    db = sqlite3.connect(noop_plane.home / "cp.db")
    assert db.execute("select count(*) from money_ledger").fetchone()[0] == ledger_rows  # the ledger stays
    assert [k for (k,) in db.execute("select kind from tenant_exits where tenant=? order by id", (TENANT,))] == [
        "export",
        "purge",
    ]
    audited = [
        k
        for (k,) in db.execute(
            "select kind from audit_log where tenant=? and kind like 'tenant.%' order by seq", (TENANT,)
        )
    ]
    assert audited == ["tenant.exported", "tenant.purged"]
    revoked = db.execute("select count(*) from tokens where subject=? and revoked_at is not null", (TENANT,)).fetchone()
    assert revoked[0] >= 1  # revoked, kept: the actions it took still name it
    assert [o.name for o in other.list_data().objects] == ["theirs.csv"]  # the other tenant is untouched


def test_purge_needs_an_export_newer_than_the_last_job(noop_plane, tmp_path: Path) -> None:
    company = noop_plane.client(TENANT)
    operator = noop_plane.client("operator")
    _finished_job(company)
    operator.download_tenant_archive(TENANT, tmp_path / "old.zip")
    _finished_job(company)  # work after the export: the export is stale
    with pytest.raises(TestbedError) as refused:
        operator.purge_tenant(TENANT)
    assert refused.value.status_code == 409 and refused.value.code == "export_required"
    running = company.submit(JobSpec(entrypoint="sleep 60", cpus=1, memory="1Gi"))
    operator.download_tenant_archive(TENANT, tmp_path / "new.zip")
    with pytest.raises(TestbedError) as busy:
        operator.purge_tenant(TENANT)
    assert busy.value.status_code == 409 and busy.value.code == "job_active"
    company.stop(running.id)


def test_purge_without_yes_and_without_a_terminal_is_refused(noop_plane, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    assert main(["tenants", "purge", TENANT, "--url", noop_plane.url, "--token", noop_plane.token("operator")]) != 0
    assert "--yes" in capsys.readouterr().err
    assert noop_plane.client(TENANT).list_jobs().jobs == []  # its token still works: nothing was purged
