"""Each entrypoint of the testbed image starts from a clean venv holding only the project's wheel (conftest.py), with
the files and flags the stack renders: the control plane on a real PostgreSQL with the settings, placement and stack
files of ``infra.addons.control_plane``; the MLflow server with the arguments of ``infra.addons.mlflow`` (PostgreSQL
backend store, ``s3://`` artifacts); a Ray head as KubeRay starts it, running a job that imports ``workloads``.

What differs from the pod, and only that: the files live in a scratch folder instead of their mount points, servers
bind 127.0.0.1 on free ports instead of 0.0.0.0, and there is no cluster or S3 (the kuberay backend reports itself
unhealthy; MLflow's S3 is a local stand-in that records the upload).
"""

from __future__ import annotations

import json
import secrets
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import sqlalchemy

from infra.addons.control_plane import (
    CONFIG_DIR,
    PLACEMENT_FILE,
    SETTINGS_DIR,
    SETTINGS_FILE,
    container_args,
    render_placement,
    render_settings,
    render_stack_file,
)
from infra.addons.mlflow import ARTIFACTS_ENV, BACKEND_STORE_ENV, server_args
from infra.naming import MLFLOW, MLFLOW_PORT, PLATFORM_NS, service_url
from infra.storage import CONTROL_PLANE_DB, MLFLOW_AUTH_DB, MLFLOW_DB, SQLALCHEMY_SCHEME
from operators.mlflow_access import cluster_server_auth, new_secret
from testbed.config import load_region
from testbed.settings import token_sha256
from embedded import HOST, MARKER_ENV, RAY_LOOPBACK_ENV, free_port, instance_processes, stop_process_group
from embedded.components import RAY_PORT_FLAGS

pytestmark = pytest.mark.image

REGION = "gyeongnam"  # an eks stack: the control plane's storage is s3://, its database PostgreSQL
IMAGE = f"123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/testbed-{REGION}@sha256:{'0' * 64}"
MLFLOW_URL = service_url(MLFLOW, PLATFORM_NS, MLFLOW_PORT)
BUCKET = "testbed-mlflow-gyeongnam-test"
STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def databases(postgres_server) -> dict[str, str]:
    """MLflow's and the control plane's databases, as the stack's init Job creates them, with the URIs' scheme."""
    urls = {name: postgres_server.create_database(name) for name in (MLFLOW_DB, CONTROL_PLANE_DB, MLFLOW_AUTH_DB)}
    return {name: f"{SQLALCHEMY_SCHEME}://{url.split('://', 1)[1]}" for name, url in urls.items()}


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen]:
    """A process in its own group, marked, stopped with everything it started; nothing of it may survive."""
    instance = uuid.uuid4().hex
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**env, MARKER_ENV: instance},
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_process_group(process.pid)
        process.wait(timeout=10)
        assert instance_processes(instance) == [], f"processes of {argv[0]} outlived it"


def wait_http(
    url: str, process: subprocess.Popen, log: Path, timeout: float = STARTUP_SECONDS, expect: str | None = None
) -> httpx.Response:
    """Poll ``url`` until it answers 200 (with ``expect`` in its body) or the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200 and (expect is None or expect in response.text):
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def run_in_venv(image_env, code: str) -> str:
    result = subprocess.run(
        [image_env.python, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=image_env.env,
        cwd=image_env.root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def kubernetes_expand(arg: str, env: dict[str, str]) -> str:
    """``$(VAR)`` in a container's args, as the kubelet expands it from the container's env."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


def test_the_venv_holds_the_wheel_and_every_driver(image_env):
    out = run_in_venv(
        image_env,
        (
            "import json, boto3, psycopg2, s3fs, mlflow, ray, torch, operators.control_plane, workloads, testbed\n"
            "print(json.dumps({m.__name__: m.__file__ for m in (operators.control_plane, workloads, testbed)}))"
        ),
    )
    for module, path in json.loads(out).items():
        assert path.startswith(str(image_env.venv)), f"{module} comes from {path}, not from the installed wheel"


def test_control_plane_starts_with_the_rendered_files(image_env, databases, tmp_path):
    stack = load_region(REGION)
    config_dir, settings_dir = tmp_path / CONFIG_DIR.strip("/"), tmp_path / SETTINGS_DIR.strip("/")
    config_dir.mkdir(parents=True)
    settings_dir.mkdir(parents=True)
    # The ConfigMap's two files and the Secret's settings, exactly as the stack renders them.
    (config_dir / f"Pulumi.{REGION}.yaml").write_text(render_stack_file(stack))
    (config_dir / PLACEMENT_FILE).write_text(render_placement(stack))
    monitoring_token = secrets.token_urlsafe(32)  # what the stack's RandomPassword stands for
    settings = json.loads(
        render_settings(
            stack,
            databases[CONTROL_PLANE_DB],
            MLFLOW_URL,
            f"s3://{BUCKET}/jobs",
            ray_image=IMAGE,
            operator_token_sha256=token_sha256(secrets.token_hex(8)),
            monitoring_token_sha256=token_sha256(monitoring_token),
        )
    )
    assert settings["backend"] == "kuberay" and settings["ray_image"] == IMAGE
    port = free_port()
    settings.update(
        {key: settings[key].replace(CONFIG_DIR, str(config_dir)) for key in ("stack_file", "placement_file")}
    )
    settings.update(host=HOST, port=port)
    # The mounted key of the mlflow-auth Secret: the control plane reads MLflow's admin password from it.
    assert settings["mlflow_admin_password_file"]
    admin_password = tmp_path / "mlflow-admin-password"
    admin_password.write_text(secrets.token_urlsafe(16))
    settings["mlflow_admin_password_file"] = str(admin_password)
    (settings_dir / SETTINGS_FILE).write_text(json.dumps(settings))
    argv = container_args()
    assert argv[0] == "python"
    argv = [image_env.python, *[a.replace(SETTINGS_DIR, str(settings_dir)) for a in argv[1:]]]
    env = {
        **image_env.env,
        "TESTBED_REGION": REGION,
        "TESTBED_STACK_DIR": str(config_dir),
        "TESTBED_CONTROL_PLANE_SETTINGS": str(settings_dir / SETTINGS_FILE),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }  # no cluster here: the backend is unhealthy, not broken
    log = tmp_path / "control-plane.log"
    with running(argv, env, log, tmp_path) as process:
        health = wait_http(f"http://{HOST}:{port}/healthz", process, log).json()
        # No cluster: the backend is unhealthy, so the plane says it is degraded; its database answers.
        assert health == {
            "status": "degraded",
            "region": REGION,
            "backend": "kuberay",
            "backend_healthy": False,
            "database": "ok",
            "reconciler": health["reconciler"],
            "mlflow": "unavailable",  # no MLflow server in this test: seen, and not a reason to be down
        }
        assert httpx.get(f"http://{HOST}:{port}/v1/jobs", timeout=10).status_code == 401  # the API, behind tokens
        assert httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).status_code == 401
        scrape = httpx.get(
            f"http://{HOST}:{port}/metrics", headers={"Authorization": f"Bearer {monitoring_token}"}, timeout=10
        )
        assert scrape.status_code == 200 and "testbed_" in scrape.text  # as Prometheus's ServiceMonitor scrapes it
    engine = sqlalchemy.create_engine(databases[CONTROL_PLANE_DB])
    try:
        assert sqlalchemy.inspect(engine).get_table_names()  # its schema is in PostgreSQL
    finally:
        engine.dispose()


class FakeS3(ThreadingHTTPServer):
    """Just enough of S3 for one PutObject (path-style, as boto3 addresses an IP endpoint): it records the request."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes]] = []
        super().__init__((HOST, 0), _S3Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


class _S3Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # boto3 sends Expect: 100-continue

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.puts.append((self.path, body))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def s3() -> Iterator[FakeS3]:
    server = FakeS3()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_mlflow_starts_with_the_rendered_args(image_env, databases, s3, tmp_path):
    port = free_port()
    args = server_args(HOST, port)
    # The auth Secret and guard ConfigMap as the stack renders them, "mounted" in folders here.
    admin_password = new_secret()
    auth = cluster_server_auth(databases[MLFLOW_AUTH_DB], admin_password, new_secret())
    for folder, files in ((tmp_path / "auth", auth.secret_data), (tmp_path / "guard", auth.guard_data)):
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    mounted = {auth.mount_dir: str(tmp_path / "auth"), auth.guard_mount_dir: str(tmp_path / "guard")}
    auth_env = {
        k: next((v.replace(d, f) for d, f in mounted.items() if v.startswith(d)), v) for k, v in auth.env.items()
    }
    auth_env.update({k: auth.secret_data[key] for k, key in auth.secret_env.items()})
    admin = ("_admin", admin_password)
    env = {
        **image_env.env,
        **auth_env,
        BACKEND_STORE_ENV: databases[MLFLOW_DB],
        ARTIFACTS_ENV: f"s3://{BUCKET}/artifacts",
        # S3 is not reachable from here: boto3 talks to a local stand-in, with placeholder keys.
        "MLFLOW_S3_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "AWS_MAX_ATTEMPTS": "1",
    }
    argv = [kubernetes_expand(a, env) for a in args]
    assert argv[:2] == ["mlflow", "server"] and "$(" not in " ".join(argv)
    argv[0] = str(image_env.bin / "mlflow")
    log = tmp_path / "mlflow.log"
    base = f"http://{HOST}:{port}"
    with running(argv, env, log, tmp_path) as process:
        wait_http(f"{base}/health", process, log, expect="OK")
        # Jobs and the control plane reach it by its Service's name; its host guard lets exactly those in.
        in_cluster = {"Host": f"{MLFLOW}.{PLATFORM_NS}.svc.cluster.local:{MLFLOW_PORT}"}
        assert (
            httpx.get(
                f"{base}/api/2.0/mlflow/experiments/search?max_results=10", headers=in_cluster, timeout=30
            ).status_code
            == 401
        )  # basic-auth: no login, nothing
        created = httpx.post(
            f"{base}/api/2.0/mlflow/experiments/create",
            json={"name": "image-test"},
            headers=in_cluster,
            auth=admin,
            timeout=30,
        )
        assert created.status_code == 200, created.text
        experiment = created.json()["experiment_id"]
        assert (
            httpx.get(
                f"{base}/api/2.0/mlflow/experiments/search?max_results=10",
                headers={"Host": "evil.example"},
                auth=admin,
                timeout=30,
            ).status_code
            == 403
        )
        # Artifacts go through the server (--serve-artifacts) to the s3:// destination, written with boto3.
        upload = httpx.put(
            f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment}/probe.txt",
            content=b"probe-artifact",
            headers=in_cluster,
            auth=admin,
            timeout=120,
        )
        assert upload.status_code == 200, upload.text + log.read_text()[-3000:]
    [(path, body)] = s3.puts
    assert path.split("?")[0] == f"/{BUCKET}/artifacts/{experiment}/probe.txt" and b"probe-artifact" in body
    engine = sqlalchemy.create_engine(databases[MLFLOW_DB])
    try:
        with engine.connect() as connection:
            names = connection.execute(sqlalchemy.text("SELECT name FROM experiments")).scalars().all()
        assert "image-test" in names  # tracked in PostgreSQL
    finally:
        engine.dispose()


def test_ray_head_runs_a_job_importing_workloads(image_env, tmp_path):
    """``ray start`` as KubeRay runs it in the image, on loopback: a job (submitted like KubeRay's submitter does)
    imports ``workloads`` in its driver and in a task."""
    temp = Path(tempfile.mkdtemp(prefix="tbimg-", dir="/tmp"))  # short: Ray's socket paths must fit AF_UNIX
    ports = {name: free_port() for name in RAY_PORT_FLAGS}  # the flags the local testbed's Ray head sets
    ray = str(image_env.bin / "ray")
    argv = [
        ray,
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        f"--node-ip-address={HOST}",
        "--include-dashboard=true",
        f"--dashboard-host={HOST}",
        *(f"{flag}={ports[name]}" for name, flag in RAY_PORT_FLAGS.items()),
        "--num-cpus=1",
        "--num-gpus=0",
        f"--object-store-memory={256 * 2**20}",
        f"--temp-dir={temp}",
    ]
    env = {**image_env.env, **RAY_LOOPBACK_ENV, "RAY_ADDRESS": ""}
    log = tmp_path / "ray.log"
    dashboard = f"http://{HOST}:{ports['dashboard']}"
    code = (
        "import ray, workloads\n"
        "ray.init()\n"
        "task = ray.remote(lambda: __import__('workloads').__file__)\n"
        "print('WORKLOADS', workloads.__file__, ray.get(task.remote()))\n"
    )
    try:
        with running(argv, env, log, tmp_path) as process:
            # KubeRay's readiness probes of a head pod: GCS through the dashboard, the raylet through its agent.
            wait_http(f"{dashboard}/api/gcs_healthz", process, log, expect="success")
            wait_http(f"http://{HOST}:{ports['agent_listen']}/api/local_raylet_healthz", process, log, expect="success")
            submit = subprocess.run(
                [ray, "job", "submit", "--address", dashboard, "--", "python", "-c", code],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                cwd=tmp_path,
            )
            assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
            [line] = [line for line in submit.stdout.splitlines() if line.startswith("WORKLOADS ")]
            _, driver, task = line.split()
            assert driver == task and driver.startswith(str(image_env.venv))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
