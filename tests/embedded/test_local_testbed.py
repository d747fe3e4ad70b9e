"""The embedded testbed for real: Ray head, MLflow server and control plane on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from testbed.client import TestbedError
from testbed.jobs import Job
from tests.waiting import wait_until
from embedded import Component, ComponentExited, LocalState, StateFolder, instance_processes, stop_process_group
from embedded.supervisor import Supervisor

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
TESTBED = [sys.executable, "-m", "embedded.cli"]


def cli(local_testbed, *args: str, token: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    env = local_testbed.env()
    if token:
        env["TESTBED_TOKEN"] = token
    result = subprocess.run([*TESTBED, *args], env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def wait_for_status(client, job_id: str, status: str, timeout: float = 60) -> Job:
    def reached() -> Job | None:
        job = client.get_job(job_id)
        assert job.status in ("PENDING", "RUNNING"), job
        return job if job.status == status else None

    return wait_until(reached, timeout, f"{job_id} to reach {status}", every=0.2)


def test_status_json_reports_every_component(local_testbed):
    from testbed.isolation import LOCAL_MODE_LINE

    status = json.loads(cli(local_testbed, "status", "--json", check=True).stdout)
    assert status["healthy"] is True and status["trust"] == LOCAL_MODE_LINE
    assert cli(local_testbed, "status", check=True).stdout.strip().splitlines()[-1] == LOCAL_MODE_LINE
    assert cli(local_testbed, "up", check=True).stdout.splitlines()[0] == LOCAL_MODE_LINE  # idempotent: already up
    assert {c["name"] for c in status["components"] if c["healthy"]} == {"ray", "mlflow", "control_plane"}
    for key in ("control_plane_url", "mlflow_url", "ray_dashboard_url"):
        assert status[key].startswith("http://127.0.0.1:")
        assert httpx.get(status[key], timeout=5).status_code < 500


def test_up_is_idempotent(local_testbed):
    before = {n: c.pid for n, c in local_testbed.state.components.items()}
    local_testbed.testbed.up(region="gyeongnam")  # its time: tests/benchmarks/bench_local_testbed.py
    assert {n: c.pid for n, c in local_testbed.state.components.items()} == before


def test_command_job_succeeds_with_its_environment_and_logs(local_testbed):
    script = "import os; print('hello', os.environ['MLFLOW_EXPERIMENT_NAME'], os.environ['TESTBED_JOB_ID'])"
    result = cli(
        local_testbed,
        "submit",
        "--wait",
        "--json",
        "--name",
        "hello",
        "--",
        "python",
        "-c",
        script,
        token=local_testbed.tokens[ALICE],
        check=True,
    )
    job = Job.model_validate_json(result.stdout)
    assert job.status == "SUCCEEDED" and job.tenant == ALICE
    assert job.started_at and job.ended_at and job.started_at <= job.ended_at
    logs = cli(local_testbed, "jobs", "logs", job.id, token=local_testbed.tokens[ALICE], check=True).stdout
    assert f"hello {ALICE}/hello {job.id}" in logs


def test_failing_job_is_failed_and_cli_exits_nonzero(local_testbed):
    result = cli(
        local_testbed,
        "submit",
        "--wait",
        "--",
        "python",
        "-c",
        "import sys; print('boom'); sys.exit(3)",
        token=local_testbed.tokens[ALICE],
    )
    assert result.returncode != 0
    job_id = result.stdout.split()[0]
    job = local_testbed.client(ALICE).get_job(job_id)
    assert job.status == "FAILED"
    assert "boom" in local_testbed.client(ALICE).logs(job_id).logs


def test_stop_a_running_job_and_isolation_on_the_real_backend(local_testbed):
    alice, bob = local_testbed.client(ALICE), local_testbed.client(BOB)
    job = alice.submit(entrypoint="python -c 'import time; print(\"started\", flush=True); time.sleep(120)'")
    wait_for_status(alice, job.id, "RUNNING")
    for call in (bob.get_job, bob.logs, bob.stop):
        with pytest.raises(TestbedError) as err:
            call(job.id)
        assert err.value.status_code == 404
    assert job.id not in {j.id for j in bob.list_jobs().jobs}
    assert alice.get_job(job.id).status == "RUNNING"  # bob's stop did nothing
    alice.stop(job.id)
    final = alice.wait(job.id, timeout=60)
    assert final.status == "STOPPED" and final.ended_at


def test_smoke_template_is_tracked_in_mlflow_with_job_tags(local_testbed):
    from mlflow.tracking import MlflowClient

    alice = local_testbed.client(ALICE)
    job = alice.wait(alice.submit(template="smoke", params={"epochs": 3}).id, timeout=180)
    assert job.status == "SUCCEEDED", alice.logs(job.id).logs
    with alice.mlflow_credentials().active():  # MLflow answers only a tenant's own login
        mlflow = MlflowClient(local_testbed.mlflow_url)
        experiment = mlflow.get_experiment_by_name(f"{ALICE}/smoke")
        assert experiment is not None
        runs = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`testbed.job_id` = '{job.id}'")
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert tags["testbed.tenant"] == ALICE and tags["testbed.region"] == "gyeongnam"
    assert runs[0].data.metrics  # it logged metrics


# A job of ALICE's: logs a run, registers a model and points its champion alias at it, as itself (its job env).
_REGISTER = """
import mlflow
from mlflow import MlflowClient
mlflow.set_experiment("{tenant}/wired")
with mlflow.start_run() as run:
    mlflow.log_metric("accuracy", 0.9)
client = MlflowClient()
client.create_registered_model("{tenant}.wired")
version = client.create_model_version("{tenant}.wired", f"runs:/{{run.info.run_id}}/model", run.info.run_id)
client.set_registered_model_alias("{tenant}.wired", "champion", version.version)
print("REGISTERED", run.info.run_id, version.version)
"""
# The job prints its login's user and the SHA-256 of its password (a job's log is kept at rest: printing the
# password itself would put it in the control plane's database, which test_local_secrets.py forbids).
_PRINT_MLFLOW_ENV = (
    "import hashlib, json, os; from mlflow.utils.credentials import read_mlflow_creds as r; c = r(); "
    "print('ENV=' + json.dumps({**{k: v for k, v in os.environ.items() if 'MLFLOW' in k}, "
    "'login': [c.username, hashlib.sha256(c.password.encode()).hexdigest()]}))"
)


def test_mlflow_access_control_between_tenants_on_the_real_testbed(local_testbed):
    """A's job registers a champion; B (its login from the control plane, or its job's) sees nothing of A's;
    MLflow refuses anonymous calls; B's job holds B's login only; no API answer carries an MLflow password."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    alice, bob = local_testbed.client(ALICE), local_testbed.client(BOB)
    script = base64.b64encode(_REGISTER.format(tenant=ALICE).encode()).decode()  # no package: ALICE's stay as they are
    entrypoint = f"python -c \"import base64; exec(base64.b64decode('{script}').decode())\""
    job = alice.wait(alice.submit(entrypoint=entrypoint).id, timeout=180)
    logs = alice.logs(job.id).logs
    assert job.status == "SUCCEEDED", logs
    run_id, version = next(line for line in logs.splitlines() if line.startswith("REGISTERED")).split()[1:]
    with alice.mlflow_credentials().active():
        assert MlflowClient().get_model_version_by_alias(f"{ALICE}.wired", "champion").version == version

    b_login = bob.mlflow_credentials()
    assert (b_login.username, b_login.workspace) == (BOB, BOB)
    with b_login.active():
        client = MlflowClient()
        assert client.get_experiment_by_name(f"{ALICE}/wired") is None
        assert not [m.name for m in client.search_registered_models() if m.name.startswith(ALICE)]  # B's own may exist
        for read in (
            lambda: client.get_run(run_id),
            lambda: client.get_registered_model(f"{ALICE}.wired"),
            lambda: client.get_model_version_by_alias(f"{ALICE}.wired", "champion"),
        ):
            with pytest.raises(MlflowException):
                read()
    assert (
        httpx.get(
            f"{local_testbed.mlflow_url}/api/2.0/mlflow/experiments/search", params={"max_results": 5}
        ).status_code
        == 401
    )
    assert httpx.get(f"{local_testbed.mlflow_url}/health").status_code == 200

    b_job = bob.wait(bob.submit(entrypoint=f'python -c "{_PRINT_MLFLOW_ENV}"').id, timeout=120)
    b_logs = bob.logs(b_job.id).logs
    assert b_job.status == "SUCCEEDED", b_logs
    env = json.loads(next(line for line in b_logs.splitlines() if line.startswith("ENV="))[4:])
    b_digest = hashlib.sha256(b_login.password.encode()).hexdigest()
    assert env["MLFLOW_WORKSPACE"] == BOB and env["login"] == [BOB, b_digest]  # what its MLflow client reads
    assert "MLFLOW_TRACKING_PASSWORD" not in env  # a 0600 file, not the runtime env Ray logs
    admin_password = (local_testbed.home / "credentials" / "mlflow-admin.password").read_text().strip()
    a_password = alice.mlflow_credentials().password
    assert not [k for k, v in env.items() if admin_password in str(v) or a_password in str(v)]
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env
    for client, job_id, password in ((alice, job.id, a_password), (bob, b_job.id, b_login.password)):
        assert password not in client.get_job(job_id).model_dump_json()
        assert password not in client.list_jobs().model_dump_json()
    # the secrets stay in the credentials folder, owner-only, never in state.json or the settings file
    for name in ("mlflow-admin.password", "mlflow-flask.key"):
        assert (local_testbed.home / "credentials" / name).stat().st_mode & 0o077 == 0
    for path in ("state.json", "control-plane.json"):
        assert admin_password not in (local_testbed.home / path).read_text()
    for log in (local_testbed.home / "logs").glob("*.log"):
        assert admin_password not in log.read_text(errors="replace"), log


def test_control_plane_crash_mid_job_loses_nothing(local_testbed):
    alice = local_testbed.client(ALICE)
    job = alice.submit(entrypoint="python -c 'import time; time.sleep(4); print(\"survived\")'")
    running = wait_for_status(alice, job.id, "RUNNING")
    local_testbed.restart_control_plane(crash=True)
    final = local_testbed.client(ALICE).wait(job.id, timeout=60)
    assert final.status == "SUCCEEDED"
    assert final.started_at == running.started_at
    assert "survived" in local_testbed.client(ALICE).logs(job.id).logs


def test_job_environment_names_no_platform_path(local_testbed):
    """A job inherits no path to the credentials or the state folder, and runs outside it."""
    script = "import json, os; print('ENV=' + json.dumps(dict(os.environ))); print('CWD=' + os.getcwd())"
    alice = local_testbed.client(ALICE)
    job = alice.wait(alice.submit(entrypoint=f'python -c "{script}"').id, timeout=120)
    assert job.status == "SUCCEEDED", alice.logs(job.id).logs
    lines = alice.logs(job.id).logs.splitlines()
    env = json.loads(next(line for line in lines if line.startswith("ENV="))[4:])
    cwd = next(line for line in lines if line.startswith("CWD="))[4:]
    assert not {"RAY_AUTH_TOKEN", "TESTBED_HOME", "TESTBED_CONTROL_PLANE_SETTINGS"} & set(env)
    assert not env["RAY_AUTH_TOKEN_PATH"].startswith(str(local_testbed.home))  # the jobs' copy, outside the state
    credentials = str(local_testbed.home / "credentials")
    assert not [k for k, v in env.items() if credentials in v or str(local_testbed.home / "control-plane") in v]
    assert not cwd.startswith(str(local_testbed.home))


def test_corrupt_state_is_adopted_never_doubled(local_testbed):
    before = {n: (c.pid, c.ports) for n, c in local_testbed.state.components.items()}
    url = local_testbed.control_plane_url
    local_testbed.testbed.folder.state_file.write_text("{not json")
    local_testbed.testbed.up(region="gyeongnam")
    assert {n: (c.pid, c.ports) for n, c in local_testbed.state.components.items()} == before
    heads = [
        p
        for p in psutil.process_iter(["cmdline"])
        if {"start", "--head"} <= set(p.info["cmdline"] or [])
        and any(str(local_testbed.home) in a for a in p.info["cmdline"])
    ]  # one `ray start --head`
    assert len(heads) == 1 and local_testbed.control_plane_url == url


def test_control_plane_keeps_its_port_after_a_crash(local_testbed):
    url = local_testbed.control_plane_url
    with httpx.Client() as kept_alive:  # its connection lingers in TIME_WAIT once the server dies
        kept_alive.get(url + "/healthz")
        local_testbed.restart_control_plane(crash=True)
    assert local_testbed.control_plane_url == url
    pid = local_testbed.state.components["control_plane"].pid
    local_testbed.testbed.folder.state_file.unlink()  # state lost and the plane down: its settings file keeps the port
    os.killpg(pid, signal.SIGKILL)
    stop_process_group(pid, timeout=15)
    local_testbed.testbed.up(region="gyeongnam")
    assert local_testbed.control_plane_url == url


def test_up_stops_job_drivers_that_outlived_ray(local_testbed):
    alice = local_testbed.client(ALICE)
    job = alice.submit(entrypoint="python -c 'import time; time.sleep(600)'")
    wait_for_status(alice, job.id, "RUNNING")
    drivers = [
        p.pid for p in psutil.process_iter(["cmdline"]) if "time.sleep(600)" in " ".join(p.info["cmdline"] or [])
    ]
    assert drivers
    ray_pid = local_testbed.state.components["ray"].pid
    os.killpg(ray_pid, signal.SIGKILL)  # Ray crashes; its drivers do not
    wait_until(
        lambda: not psutil.pid_exists(ray_pid) or psutil.Process(ray_pid).status() == psutil.STATUS_ZOMBIE,
        30,
        "Ray's head to exit",
    )
    assert any(psutil.pid_exists(pid) for pid in drivers)
    local_testbed.testbed.up(region="gyeongnam")
    assert not [
        pid for pid in drivers if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert local_testbed.client(ALICE).wait(job.id, timeout=30).status == "FAILED"  # lost, not running unmetered


def test_down_leaves_no_process_and_up_keeps_history(local_testbed):
    alice = local_testbed.client(ALICE)
    done = alice.wait(alice.submit(entrypoint="python -c 'print(\"kept after down\")'").id, timeout=60)
    assert done.status == "SUCCEEDED"
    lost = alice.submit(entrypoint="python -c 'import time; time.sleep(300)'")
    wait_for_status(alice, lost.id, "RUNNING")
    instance = local_testbed.instance

    result = cli(local_testbed, "down", check=True)  # its time: tests/benchmarks/bench_local_testbed.py
    assert "stopped" in result.stdout
    assert instance_processes(instance) == []
    assert json.loads(cli(local_testbed, "status", "--json").stdout)["running"] is False

    local_testbed.testbed.up(region="gyeongnam")
    alice = local_testbed.client(ALICE)
    kept = alice.get_job(done.id)
    assert kept.status == "SUCCEEDED" and kept.ended_at == done.ended_at
    assert "kept after down" in alice.logs(done.id).logs
    after = alice.wait(lost.id, timeout=30)
    assert after.status == "FAILED" and "lost" in after.message
    assert after.ended_at is not None


# -- the supervisor alone, on a stand-in component (no Ray, no MLflow) -----------------------
def _web_component(tmp_path: Path, failures: int) -> Component:
    """An HTTP server with a helper child in its group; its first ``failures`` starts die."""

    def command(folder: StateFolder, state: LocalState) -> list[str]:
        script = (
            "import pathlib, subprocess, sys, http.server\n"
            f"tries = pathlib.Path({str(tmp_path / 'tries')!r})\n"
            "n = len(tries.read_text()) if tries.exists() else 0\n"
            "tries.write_text('x' * (n + 1))\n"
            f"if n < {failures}: sys.exit('Error: address already in use')\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            f"http.server.ThreadingHTTPServer(('127.0.0.1', {state.port('web', 'http')}), "
            "http.server.SimpleHTTPRequestHandler).serve_forever()\n"
        )
        return [sys.executable, "-c", script]

    return Component(
        name="web",
        ports=("http",),
        command=command,
        health_path="/",
        url=lambda state: f"http://127.0.0.1:{state.port('web', 'http')}",
    )


def _supervised(tmp_path: Path) -> tuple[Supervisor, LocalState, list[str]]:
    folder = StateFolder(tmp_path)
    folder.prepare()
    messages: list[str] = []
    state = LocalState(instance=secrets.token_hex(6), region="gyeongnam", num_cpus=1)
    return Supervisor(folder, messages.append), state, messages


@pytest.mark.integration  # starts a real process
def test_supervisor_retries_once_then_stops_the_whole_group(tmp_path):
    supervisor, state, messages = _supervised(tmp_path)
    web = _web_component(tmp_path, failures=1)
    supervisor.start(state, web, deadline=time.monotonic() + 60)
    assert messages == ["web: starting", "web: starting again on fresh ports"]
    assert supervisor.healthy(state, web)
    assert StateFolder(tmp_path).load().components["web"].pid == state.components["web"].pid
    assert len(instance_processes(state.instance)) == 2  # the server and its helper
    assert supervisor.stop(state, "web", timeout=10)
    assert instance_processes(state.instance) == []
    assert not supervisor.running(state, "web")


@pytest.mark.integration  # starts a real process
def test_supervisor_gives_up_after_the_retry_naming_the_error(tmp_path):
    supervisor, state, _ = _supervised(tmp_path)
    with pytest.raises(ComponentExited, match="web exited while starting: Error: address already in use"):
        supervisor.start(state, _web_component(tmp_path, failures=2), deadline=time.monotonic() + 60)
    assert (tmp_path / "tries").read_text() == "xx"
    assert StateFolder(tmp_path).load().components["web"].pid is None
    assert instance_processes(state.instance) == []
