"""The SDK answers typed models; the CLI goes through it; its errors are one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.api import TenantList
from embedded.cli import main as cli
from testbed.client import TestbedClient, TestbedError
from testbed.jobs import Job, JobList, JobLogs, JobSpec, JobStatus
from testbed.usage import UsageReport

TESTBED = [sys.executable, "-m", "embedded.cli"]
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TESTBED_")}
    full_env.update(env or {})
    return subprocess.run([*TESTBED, *args], capture_output=True, text=True, env=full_env, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("testbed: error: ") and needle in lines[0], lines[0]


@pytest.mark.integration  # starts a real process
def test_no_token(tmp_path):
    result = run("jobs", "list", env={"TESTBED_HOME": str(tmp_path), "TESTBED_URL": "http://127.0.0.1:9"})
    assert_one_line_error(result, "no token")


@pytest.mark.integration  # starts a real process
def test_no_address(tmp_path):
    result = run("jobs", "list", env={"TESTBED_HOME": str(tmp_path), "TESTBED_TOKEN": "x"})
    assert_one_line_error(result, "no control plane address")


@pytest.mark.integration  # starts a real process
def test_unreachable_control_plane(tmp_path):
    result = run(
        "jobs", "list", env={"TESTBED_HOME": str(tmp_path), "TESTBED_URL": "http://127.0.0.1:9", "TESTBED_TOKEN": "x"}
    )
    assert_one_line_error(result, "cannot reach the control plane at http://127.0.0.1:9")


@pytest.mark.integration  # starts a real process
def test_errors_from_the_server_are_one_line(noop_plane):
    env = {"TESTBED_URL": noop_plane.url, "TESTBED_TOKEN": noop_plane.token("changwon-precision")}
    assert_one_line_error(run("jobs", "show", "job-nope", env=env), "404 Not Found: no job 'job-nope'")
    assert_one_line_error(run("submit", "--cpus", "99", "--", "true", env=env), "can never fit")
    assert_one_line_error(
        run("submit", "--template", "smoke", "--param", "epochs=x", env=env),
        "param 'epochs': Input should be a valid integer",
    )
    assert_one_line_error(run("jobs", "list", env={**env, "TESTBED_TOKEN": "bad"}), "401 Unauthorized: invalid token")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["submit"], "nothing to run"),
        (["submit", "--param", "a=1", "--", "true"], "--param only applies with --template"),
        (["submit", "--template", "smoke", "--param", "novalue"], "must look like KEY=VALUE"),
        (["submit", "--working-dir", "/does/not/exist", "--", "true"], "/does/not/exist: not a folder"),
        (["submit", "--memory", "lots", "--", "true"], "--memory"),
    ],
)
@pytest.mark.integration  # starts a real process
def test_local_argument_errors(args, needle):
    assert_one_line_error(run(*args, env={"TESTBED_URL": "http://127.0.0.1:9", "TESTBED_TOKEN": "x"}), needle)


@pytest.mark.integration  # starts a real process
def test_submit_json_prints_the_job(noop_plane):
    env = {"TESTBED_URL": noop_plane.url, "TESTBED_TOKEN": noop_plane.token("changwon-precision")}
    result = run("submit", "--json", "--cpus", "2", "--", "echo", "hi there", env=env)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["id"].startswith("job-") and job["cpus"] == 2.0 and job["entrypoint"] == "echo 'hi there'"
    plain = run("submit", "--", "true", env=env)
    assert plain.stdout.strip().startswith("job-") and len(plain.stdout.split()) == 1


@pytest.mark.integration  # starts a real process
def test_templates_list_json():
    templates = json.loads(run("templates", "list", "--json").stdout)["templates"]
    assert {"name", "kind", "params"} <= set(templates[0])
    assert "smoke" in {t["name"] for t in templates}


# -- the typed SDK and the commands built on it ---------------------------------------------
ALICE, BOB = "changwon-precision", "geoje-marine-welding"


def test_sdk_answers_are_typed_models(noop_plane):
    alice, operator = noop_plane.client(ALICE), noop_plane.client("operator")
    job = alice.submit(JobSpec(entrypoint="true", cpus=2))
    assert isinstance(job, Job) and job.tenant == ALICE and job.cpus == 2.0
    done = alice.wait(job.id, timeout=10)
    assert done.status is JobStatus.SUCCEEDED and alice.status(job.id) is JobStatus.SUCCEEDED
    assert [j.id for j in alice.list_jobs(status="SUCCEEDED").jobs] == [job.id]
    logs = alice.logs(job.id)
    assert isinstance(logs, JobLogs) and logs.final and logs.status is JobStatus.SUCCEEDED
    assert alice.stop(job.id).status is JobStatus.SUCCEEDED
    assert "smoke" in {t.name for t in alice.templates().templates}
    assert [t.id for t in alice.tenants().tenants] == [ALICE]
    assert {ALICE, BOB} <= {t.id for t in operator.tenants().tenants}
    report = alice.usage(series=True)
    assert isinstance(report, UsageReport) and [t.tenant for t in report.tenants] == [ALICE]
    assert report.tenants[0].burn is not None and operator.usage(tenant=BOB).tenants[0].tenant == BOB
    assert alice.health().status == "ok"


def test_sdk_errors_carry_status_code_and_detail(noop_plane):
    alice = noop_plane.client(ALICE)
    with pytest.raises(TestbedError) as err:
        alice.get_job("job-nope")
    assert (err.value.status_code, err.value.code, err.value.detail) == (404, "not_found", "no job 'job-nope'")
    with pytest.raises(TestbedError) as err:
        alice.rotate_token(BOB)
    assert err.value.status_code == 403 and err.value.code == "forbidden"
    issued = noop_plane.client("operator").rotate_token(ALICE)
    assert issued.subject == ALICE
    with pytest.raises(TestbedError) as err:
        alice.list_jobs()
    assert err.value.status_code == 401 and "\n" not in str(err.value)
    assert TestbedClient(noop_plane.url, issued.token).list_jobs().jobs == []
    with pytest.raises(TestbedError) as err:
        TestbedClient("http://127.0.0.1:9", "x").health()
    assert err.value.code == "unreachable" and err.value.status_code is None


def test_job_commands_print_tables_and_models(noop_plane, monkeypatch, capsys):
    monkeypatch.setenv("TESTBED_URL", noop_plane.url)
    monkeypatch.setenv("TESTBED_TOKEN", noop_plane.token(ALICE))

    def out(*args: str) -> str:
        assert cli(list(args)) == 0
        return capsys.readouterr().out

    job_id = out("submit", "--wait", "--name", "exp1", "--", "true").split()[0]
    assert out("jobs", "wait", job_id).strip() == f"{job_id} SUCCEEDED"
    table = out("jobs", "list").splitlines()
    assert table[0].split()[:4] == ["ID", "TENANT", "NAME", "STATUS"] and table[1].split()[:4] == [
        job_id,
        ALICE,
        "exp1",
        "SUCCEEDED",
    ]
    assert JobList.model_validate_json(out("jobs", "list", "--json")).jobs[0].id == job_id
    assert f"experiment    {ALICE}/exp1" in out("jobs", "show", job_id)
    assert JobLogs.model_validate_json(out("jobs", "logs", "--json", job_id)).final
    assert out("jobs", "stop", job_id).strip() == f"{job_id} SUCCEEDED"
    assert "(none)" in out("jobs", "list", "--status", "RUNNING")


def test_tenant_commands_default_to_the_local_operator(noop_plane, monkeypatch, capsys):
    monkeypatch.setenv("TESTBED_HOME", str(noop_plane.home))  # credentials/operator.token lives there
    monkeypatch.setenv("TESTBED_URL", noop_plane.url)
    monkeypatch.setenv("TESTBED_TOKEN", noop_plane.token(ALICE))
    assert cli(["tenants", "list", "--json"]) == 0
    assert {ALICE, BOB} <= {t.id for t in TenantList.model_validate_json(capsys.readouterr().out).tenants}
    assert cli(["tenants", "list"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["ID", "NAME", "INDUSTRY"]
    old = noop_plane.token(BOB)
    assert cli(["tenants", "token", BOB, "--rotate"]) == 0
    new = capsys.readouterr().out.strip()
    assert new != old and new == noop_plane.token(BOB)  # the control plane rewrote the credentials file
    assert cli(["tenants", "token", BOB]) == 0 and capsys.readouterr().out.strip() == new
    assert cli(["--token", old, "jobs", "list"]) == 1
    assert capsys.readouterr().err.strip() == "testbed: error: 401 Unauthorized: invalid token"
