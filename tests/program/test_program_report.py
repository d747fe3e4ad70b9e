"""testbed program report over two live regions on one machine (two homes), then with one of them stopped:
the stopped region is shown as such, with the time of its last good answer and its last figures (stale)."""

from __future__ import annotations

from tests.stack_files import REAL_STACK_DIR
from tests.replicas import noop_settings

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openpyxl
import pytest
import yaml

from operators.control_plane.auth import PROGRAM_OFFICE
from tests.serve import serve_in_thread
from testbed import program
from testbed.cli.main import main
from testbed.config import stack_file_for
from testbed.jobs import JobSpec, JobStatus
from testbed.net import free_port
from tests.conftest import NoopPlane, make_noop_app
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def _start_region_process(home: Path, region: str) -> tuple[subprocess.Popen, str]:
    """A region's control plane alone, on the no-op backend, in its own process (its own home)."""
    port = free_port()
    stack = stack_file_for(region, REAL_STACK_DIR)  # the real regions' stack files
    settings = noop_settings(home, stack, f"sqlite:///{home / 'cp.db'}", port=port)
    settings.write(home / "settings.json")
    process = subprocess.Popen(
        [sys.executable, "-m", "operators.control_plane", "--settings", str(home / "settings.json")],
        stdout=subprocess.DEVNULL,
        stderr=open(home / "cp.log", "wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (home / "cp.log").read_text()[-2000:]
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_report_over_two_regions_with_one_stopped(tmp_path: Path, capsys) -> None:
    office = tmp_path / "program-office"  # the program office's own machine: tokens copied here, nothing else
    office.mkdir()
    home_a, home_b = tmp_path / "gyeongnam-home", tmp_path / "daegu-home"
    home_a.mkdir(), home_b.mkdir()
    daegu, daegu_url = _start_region_process(home_b, "daegu")
    try:
        app = make_noop_app(home_a)
        with serve_in_thread(app) as gyeongnam_url:
            region_a = NoopPlane(url=gyeongnam_url, app=app, home=home_a)
            company = region_a.client("changwon-precision")
            job = company.submit(JobSpec(entrypoint="sleep 3", cpus=2, gpus=1, memory="2Gi"))  # ~2 won
            wait_until(lambda: company.get_job(job.id).status == JobStatus.SUCCEEDED, 30, f"{job.id} to succeed")
            for name, home in (("gyeongnam", home_a), ("daegu", home_b)):
                shutil.copy(home / "credentials" / f"{PROGRAM_OFFICE}.token", office / f"{name}.token")
            unreachable = f"http://127.0.0.1:{free_port()}"
            regions_file = office / "regions.yaml"
            regions_file.write_text(
                yaml.safe_dump(
                    {
                        "regions": [
                            {"name": "gyeongnam", "url": gyeongnam_url, "token_file": "gyeongnam.token"},
                            {"name": "daegu", "url": daegu_url, "token_file": "daegu.token"},
                            {"name": "jeju", "url": unreachable, "token_file": "daegu.token"},
                        ]
                    }
                )
            )

            first = program.build_report(regions_file)
            status = {r.region: r for r in first.regions}
            assert (status["gyeongnam"].status, status["daegu"].status) == ("ok", "ok")
            assert status["jeju"].status == "no answer" and status["jeju"].last_good_at is None
            usage = {t.tenant: t for t in region_a.client("operator").usage().tenants}
            charged = usage["changwon-precision"].charged_krw
            assert charged > 0
            line = next(t for t in first.tenants if t.tenant == "changwon-precision")
            assert (line.charged_krw, line.grant_krw) == (charged, usage["changwon-precision"].grant_krw)
            assert line.execution_rate == pytest.approx(charged / line.grant_krw)
            budget = app.state.plane.stack.budget
            shares = {
                k.value: v for k, v in app.state.plane.stack.tenant("changwon-precision").grant.funding_shares.items()
            }
            national = next(
                f for f in first.funding if (f.region, f.source, f.cost_item) == ("gyeongnam", "national", None)
            )
            assert national.budget_krw == budget.funding[next(k for k in budget.funding if k.value == "national")]
            assert national.executed_krw == round(charged * shares.get("national", 0))
            assert national.execution_rate == pytest.approx(national.executed_krw / national.budget_krw)
            assert national.unspent_at_end_krw == national.budget_krw - national.forecast_executed_krw
            daegu_tenants = {t.tenant for t in first.tenants if t.region == "daegu"}
            assert daegu_tenants and all(t.charged_krw == 0 for t in first.tenants if t.region == "daegu")
            cache = regions_file.with_name(".regions.cache.json")
            assert cache.stat().st_mode & 0o777 == 0o600 and set(json.loads(cache.read_text())) == {
                "gyeongnam",
                "daegu",
            }

            _stop(daegu)  # region daegu stops answering
            out = {ext: office / f"report.{ext}" for ext in ("csv", "xlsx", "html", "png")}
            assert (
                main(
                    [
                        "program",
                        "report",
                        "--regions",
                        str(regions_file),
                        "--json",
                        "--csv",
                        str(out["csv"]),
                        "--xlsx",
                        str(out["xlsx"]),
                        "--html",
                        str(out["html"]),
                        "--plot",
                        str(out["png"]),
                    ]
                )
                == 0
            )
            second = program.ProgramReport.model_validate_json(capsys.readouterr().out)
            status = {r.region: r for r in second.regions}
            assert status["gyeongnam"].status == "ok"
            assert status["daegu"].status == "no answer" and status["daegu"].stale
            assert status["daegu"].last_good_at == first.generated_at  # the time of its last good answer
            assert status["daegu"].error
            stale = {t.tenant for t in second.tenants if t.region == "daegu"}
            assert stale == daegu_tenants and all(t.stale for t in second.tenants if t.region == "daegu")
            assert [r.region for r in second.regions] == ["gyeongnam", "daegu", "jeju"]  # none dropped

            assert main(["program", "report", "--regions", str(regions_file)]) == 0
            table = capsys.readouterr().out
            assert "daegu" in table and "no answer" in table and "daegu (stale)" in table and "never" in table
            assert out["csv"].read_bytes().startswith(b"\xef\xbb\xbf") and "no answer" in out["csv"].read_text(
                "utf-8-sig"
            )
            book = openpyxl.load_workbook(out["xlsx"], read_only=True)
            assert book.sheetnames == ["regions", "funding", "tenants"]
            assert "no answer" in [cell for row in book["regions"].iter_rows(values_only=True) for cell in row]
            assert "no answer" in out["html"].read_text()
            assert out["png"].read_bytes()[:4] == b"\x89PNG"
    finally:
        _stop(daegu)


def test_a_bad_regions_file_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "regions.yaml"
    bad.write_text(yaml.safe_dump({"regions": [{"name": "gyeongnam", "url": "ftp://x", "token_file": "t"}]}))
    assert main(["program", "report", "--regions", str(bad)]) != 0
    err = capsys.readouterr().err
    assert str(bad) in err and "url" in err and len(err.strip().splitlines()) == 1
