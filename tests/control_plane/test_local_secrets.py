"""Secrets out of reach and out of records on the real local testbed: no secret on a platform process's command
line or (tokens, MLflow's admin secret) in its environment; no MLflow password, token or admin secret in any file
of the state folder (Ray's session logs included) nor in Ray's Jobs API; the state folder 0700 and its files 0600;
a job's MLflow login travels as a 0600 file that goes when the job ends; run as root, jobs run as a user of their
own that reads none of the platform's secrets, files or processes' environments."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import psutil
import pytest

from embedded.components import jobs_dir
from embedded.jobs_user import JOBS_USER

ALICE = "changwon-precision"
BOB = "gimhae-robotics"
pytestmark = pytest.mark.integration

_LOG_TO_MLFLOW = """
import mlflow
mlflow.set_experiment("{tenant}/secrets")
with mlflow.start_run():
    mlflow.log_metric("x", 1.0)
print("LOGGED")
"""


def _run_logging_job(local_testbed, tenant: str) -> str:
    client = local_testbed.client(tenant)
    script = base64.b64encode(_LOG_TO_MLFLOW.format(tenant=tenant).encode()).decode()
    job = client.wait(
        client.submit(entrypoint=f"python -c \"import base64; exec(base64.b64decode('{script}'))\"").id, timeout=180
    )
    assert job.status == "SUCCEEDED" and "LOGGED" in client.logs(job.id).logs, client.logs(job.id).logs
    return job.id


def _secrets(local_testbed) -> dict[str, str]:
    """Every secret of the testbed: tokens, MLflow's admin password and Flask key, the tenants' MLflow passwords."""
    credentials = local_testbed.home / "credentials"
    found = {path.name: path.read_text().strip() for path in credentials.iterdir() if path.is_file()}
    for tenant in (ALICE, BOB):
        found[f"{tenant} mlflow password"] = local_testbed.client(tenant).mlflow_credentials().password
    return {name: value for name, value in found.items() if len(value) >= 16}


@pytest.fixture(scope="module")
def jobs_ran(local_testbed) -> list[str]:
    return [_run_logging_job(local_testbed, ALICE), _run_logging_job(local_testbed, BOB)]


def test_no_secret_in_any_file_of_the_state_folder_ray_session_logs_included(local_testbed, jobs_ran):
    secrets = _secrets(local_testbed)
    assert {f"{ALICE} mlflow password", "mlflow-admin.password", "ray.token"} <= set(secrets)
    leaks = []
    scanned = 0
    for root, _folders, files in os.walk(local_testbed.home):
        if Path(root).is_relative_to(local_testbed.home / "credentials"):
            continue  # where the secrets live, 0600
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file() or path.name == "basic_auth.ini":  # MLflow's 0600 config
                continue
            data = path.read_bytes()
            scanned += 1
            leaks += [f"{what} in {path}" for what, value in secrets.items() if value.encode() in data]
    assert scanned > 20 and any((local_testbed.home / "ray").rglob("runtime_env_agent*.log"))
    assert leaks == []


def test_rays_jobs_api_shows_no_password(local_testbed, jobs_ran):
    answer = httpx.get(
        f"{local_testbed.ray_dashboard_url}/api/jobs/",
        timeout=10,
        headers=local_testbed.testbed.folder.ray_auth_headers(),
    )
    assert answer.status_code == 200 and jobs_ran[0] in answer.text
    assert not [name for name, value in _secrets(local_testbed).items() if value in answer.text]


def test_a_jobs_login_file_is_private_and_goes_when_the_job_ends(local_testbed, jobs_ran):
    logins = jobs_dir(local_testbed.state) / "logins"
    assert stat.S_IMODE(logins.stat().st_mode) == 0o700
    assert not [job for job in jobs_ran if (logins / job).exists()]


def test_no_secret_on_a_command_line_nor_a_platform_secret_in_an_environment(local_testbed, jobs_ran):
    secrets = _secrets(local_testbed)
    platform = {
        name: value for name, value in secrets.items() if "mlflow password" not in name and name != "mlflow-flask.key"
    }  # Flask's key: MLflow reads it from its environment only
    checked = 0
    for name, component in local_testbed.state.components.items():
        group = [psutil.Process(component.pid), *psutil.Process(component.pid).children(recursive=True)]
        for process in group:
            try:
                argv, environ = " ".join(process.cmdline()), process.environ()
            except psutil.NoSuchProcess:
                continue
            checked += 1
            assert not [what for what, value in secrets.items() if value in argv], (name, argv[:200])
            assert not [what for what, value in platform.items() if value in " ".join(environ.values())], name
    assert checked >= 3


def test_the_state_folder_is_the_owners_only(local_testbed, jobs_ran):
    home = local_testbed.home
    # run as root, the jobs' user may pass through it to its own folders (storage/, ray/), never list it
    assert stat.S_IMODE(home.stat().st_mode) == (0o711 if os.geteuid() == 0 else 0o700)
    # Ray re-makes some of its folders 0777 on purpose whenever it creates one (ray._common.utils.
    # try_make_directory_shared): the 0700 state folder above them keeps them out of other users' reach
    session = (home / "ray" / "session_latest").resolve()
    assert session.is_dir() and session.is_relative_to(home)
    loose = []
    for root, _folders, files in os.walk(home):
        for name in files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
                loose.append(f"{oct(stat.S_IMODE(mode))} {path}")
    assert loose == []


_PROBE = """
import json, os, pwd, sys
found = {"user": pwd.getpwuid(os.getuid()).pw_name}
for path in json.loads(sys.argv[1]):
    try:
        with open(path, "rb") as handle:
            found[path] = "read %d bytes" % len(handle.read())
    except OSError as exc:
        found[path] = type(exc).__name__
try:
    found["listing"] = os.listdir(sys.argv[2])
except OSError as exc:
    found["listing"] = type(exc).__name__
print("PROBE " + json.dumps(found))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="jobs get a user of their own only when the testbed runs as root")
def test_run_as_root_a_job_reads_no_platform_secret_file_or_environment(local_testbed, jobs_ran):
    home = local_testbed.home
    state = local_testbed.state
    targets = [
        *map(str, sorted((home / "credentials").iterdir())),  # every token, MLflow's admin secret and Flask key
        str(home / "state.json"),
        str(home / "control-plane.json"),
        str(home / "control-plane.db"),
        str(home / "mlflow" / "mlflow.db"),
        str(home / "mlflow" / "auth.db"),
        *(f"/proc/{state.components[name].pid}/environ" for name in ("control_plane", "mlflow")),
    ]
    assert any(path.endswith("operator.token") for path in targets)
    assert any(path.endswith("mlflow-admin.password") for path in targets)
    client = local_testbed.client(ALICE)
    script = base64.b64encode(_PROBE.encode()).decode()
    arguments = base64.b64encode(json.dumps(targets).encode()).decode()
    job = client.wait(
        client.submit(
            entrypoint=(
                f"python -c \"import base64, sys; sys.argv[1:] = [base64.b64decode('{arguments}').decode(), "
                f"'{home}']; exec(base64.b64decode('{script}'))\""
            )
        ).id,
        timeout=180,
    )
    logs = client.logs(job.id).logs
    assert job.status == "SUCCEEDED", logs
    found = json.loads(logs.split("PROBE ", 1)[1].splitlines()[0])
    assert found.pop("user") == JOBS_USER
    assert found.pop("listing") == "PermissionError"
    assert found == {path: "PermissionError" for path in targets}
