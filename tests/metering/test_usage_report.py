"""GET /v1/usage and `testbed usage`: who sees what, table, --json, --csv, --plot, errors."""

from __future__ import annotations

import csv
import json
import time

import httpx
import pytest

from embedded.cli import main as cli
from testbed.config import StackConfig
from testbed.usage import CSV_COLUMNS, UsageReport

from .helpers import add_job

HOUR = 3600.0


@pytest.fixture()
def plane(noop_plane, stack: StackConfig):
    """The noop control plane with two tenants' jobs at fixed times inside their grant."""
    first, second = stack.tenants[0], stack.tenants[1]
    t0 = first.grant.start_timestamp + 86400
    noop_plane.plane.dispatcher.stop_sync()  # the rows stay as written: no sync round refreshes them
    store = noop_plane.plane.store
    add_job(store, first.id, "SUCCEEDED", started=t0, ended=t0 + 2 * HOUR, cpus=4, gpus=2, gpu_model="l4")
    add_job(store, first.id, "FAILED", started=t0 + 3 * HOUR, ended=t0 + 4 * HOUR, cpus=1)
    add_job(store, second.id, "STOPPED", started=t0, ended=t0 + HOUR / 2, cpus=2, gpus=4, gpu_model="a100")
    add_job(store, second.id, "RUNNING", started=time.time() - 100, last_seen=time.time(), cpus=1)
    return noop_plane


def _get(plane, token: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{plane.url}/v1/usage", params=params, headers=headers, timeout=10)


def test_usage_needs_a_valid_token(plane) -> None:
    assert _get(plane, None).status_code == 401
    assert _get(plane, "tbt_not-a-token").status_code == 401


def test_a_tenant_sees_only_its_own_usage(plane, stack: StackConfig) -> None:
    first, second = stack.tenants[0], stack.tenants[1]
    report = UsageReport.model_validate(_get(plane, plane.token(first.id)).json())
    assert [t.tenant for t in report.tenants] == [first.id]
    usage = report.tenants[0]
    assert usage.gpu_hours == pytest.approx(4.0)
    assert usage.cpu_hours == pytest.approx(4 * 2 + 1)
    assert usage.jobs["SUCCEEDED"] == 1 and usage.jobs["FAILED"] == 1 and usage.jobs_total == 2
    assert usage.grant_used_ratio == pytest.approx(4.0 / first.grant.gpu_hours)
    assert _get(plane, plane.token(first.id), tenant=second.id).status_code == 404


def test_the_operator_sees_every_tenant(plane, stack: StackConfig) -> None:
    report = UsageReport.model_validate(_get(plane, plane.token("operator")).json())
    assert {t.tenant for t in report.tenants} == {t.id for t in stack.tenants}
    by_id = {t.tenant: t for t in report.tenants}
    second = by_id[stack.tenants[1].id]
    assert second.gpu_seconds_by_model == {"a100": pytest.approx(2 * HOUR)}
    assert second.jobs["RUNNING"] == 1 and second.cpu_seconds == pytest.approx(HOUR + 100, abs=5)
    only = UsageReport.model_validate(_get(plane, plane.token("operator"), tenant=stack.tenants[1].id).json())
    assert [t.tenant for t in only.tenants] == [stack.tenants[1].id]
    assert _get(plane, plane.token("operator"), tenant="no-such-tenant").status_code == 404


def test_series_give_a_cumulative_gpu_burn(plane, stack: StackConfig) -> None:
    report = UsageReport.model_validate(_get(plane, plane.token(stack.tenants[0].id), series="true").json())
    burn = report.tenants[0].burn
    assert burn is not None and [p.gpu_seconds for p in burn] == pytest.approx([0, 4 * HOUR, 4 * HOUR])
    assert all(a.timestamp <= b.timestamp for a, b in zip(burn, burn[1:]))


def test_cli_table_json_csv_and_plot(plane, stack: StackConfig, tmp_path, capsys) -> None:
    base = ["--url", plane.url, "--token", plane.token("operator"), "usage"]
    assert cli(base) == 0
    table = capsys.readouterr().out
    assert "GPU-HOURS" in table and stack.tenants[0].id in table and stack.tenants[-1].id in table

    assert cli([*base, "--json"]) == 0
    report = UsageReport.model_validate(json.loads(capsys.readouterr().out))
    assert len(report.tenants) == len(stack.tenants)

    settlement, plot = tmp_path / "usage.csv", tmp_path / "burn.png"
    assert cli([*base, "--csv", str(settlement), "--plot", str(plot)]) == 0
    with settlement.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == CSV_COLUMNS
    first = next(r for r in rows if r["tenant"] == stack.tenants[0].id)
    assert float(first["gpu_hours"]) == pytest.approx(4.0) and first["jobs_failed"] == "1"
    assert first["gpu_hours_by_model"] == "l4=4.000000"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_cli_errors_are_one_line_without_traceback(plane, stack: StackConfig, tmp_path, capsys) -> None:
    assert cli(["--url", plane.url, "--token", "tbt_wrong", "usage"]) != 0
    err = capsys.readouterr().err.strip()
    assert "401" in err and len(err.splitlines()) == 1 and "Traceback" not in err

    token = plane.token(stack.tenants[0].id)
    assert cli(["--url", plane.url, "--token", token, "usage", "--csv", str(tmp_path / "missing" / "x.csv")]) != 0
    err = capsys.readouterr().err.strip()
    assert "cannot write" in err and len(err.splitlines()) == 1

    assert cli(["--url", "http://127.0.0.1:9", "--token", token, "usage"]) != 0
    err = capsys.readouterr().err.strip()
    assert "cannot reach" in err and len(err.splitlines()) == 1
