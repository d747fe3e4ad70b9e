"""What each backend makes of a code package: Ray's own package store (uploaded once), or the tenant's s3:// URI
fetched by pods running as the tenant's ServiceAccount."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec
import pytest
import yaml

from operators.control_plane.backends.base import (
    BackendError,
    CodePackage,
    LaunchRequest,
    PermanentBackendError,
    Resources,
    RuntimeEnv,
)
from operators.control_plane.backends.kuberay import RayJobOptions, build_rayjob, resolve_targets
from operators.control_plane.backends.ray_jobs import RayJobsBackend
from testbed.config import load_region
from testbed.placement import Placement, job_service_account

BUDGET = Resources(cpus=1, gpus=0, memory=2**30)
ZIP = b"PK\x05\x06" + b"\0" * 18  # an empty zip


class PackageClient:
    """Ray's JobSubmissionClient as far as packages and submits go; ``stored`` is its package store."""

    def __init__(self, stored: dict[str, bytes] | None = None):
        self.stored = dict(stored or {})
        self.uploads: list[str] = []
        self.submitted: list[dict] = []

    def _package_exists(self, uri: str) -> bool:
        return uri in self.stored

    def _upload_package(self, uri: str, path: str, include_gitignore: bool, is_file: bool = False) -> None:
        assert is_file and not include_gitignore
        self.uploads.append(uri)
        self.stored[uri] = Path(path).read_bytes()

    def submit_job(self, **kwargs) -> str:
        self.submitted.append(kwargs)
        return kwargs["submission_id"]


def request(location: str, sha256: str, tenant: str = "acme") -> LaunchRequest:
    package = CodePackage(sha256=sha256, location=location)
    return LaunchRequest(
        job_id="job-1",
        tenant=tenant,
        region="gyeongnam",
        entrypoint="python train.py",
        budget=BUDGET,
        runtime_env=RuntimeEnv(env_vars={"A": "1"}, code_package=package),
    )


def ray_backend(client: PackageClient) -> RayJobsBackend:
    backend = RayJobsBackend("http://127.0.0.1:1")
    backend._client = client
    return backend


def test_the_ray_backend_uploads_a_package_to_rays_store_once(tmp_path):
    sha = hashlib.sha256(ZIP).hexdigest()
    (tmp_path / f"{sha}.zip").write_bytes(ZIP)
    client = PackageClient()
    backend = ray_backend(client)
    for _ in range(2):
        backend.submit(request(str(tmp_path / f"{sha}.zip"), sha))
    uri = f"gcs://_ray_pkg_{sha}.zip"
    assert client.uploads == [uri] and client.stored[uri] == ZIP  # the second submit found it there
    assert [s["runtime_env"] for s in client.submitted] == [{"env_vars": {"A": "1"}, "working_dir": uri}] * 2


def test_the_ray_backend_reads_a_package_from_object_storage():
    sha = hashlib.sha256(ZIP).hexdigest()
    location = f"memory://bucket/tenants/acme/packages/{sha}.zip"  # any fsspec URL (s3:// in a cluster)
    with fsspec.open(location, "wb") as f:
        f.write(ZIP)
    client = PackageClient()
    ray_backend(client).submit(request(location, sha))
    assert client.stored[f"gcs://_ray_pkg_{sha}.zip"] == ZIP


def test_a_package_gone_from_storage_fails_the_job_once(tmp_path):
    with pytest.raises(PermanentBackendError, match="the code package of job-1 cannot be read"):
        ray_backend(PackageClient()).submit(request(str(tmp_path / "gone.zip"), "0" * 64))
    with pytest.raises(BackendError):
        ray_backend(PackageClient()).submit(request("memory://bucket/nothing.zip", "1" * 64))


def _targets():
    stack = load_region("gyeongnam")
    return stack, resolve_targets(Placement.for_stack(stack), stack)


def test_rayjobs_fetch_the_package_from_s3_as_their_tenants_service_account():
    stack, targets = _targets()
    alice, bob = stack.tenants[0], stack.tenants[1]
    sha = "a" * 64
    location = f"s3://bucket/tenants/{alice.id}/packages/{sha}.zip"
    manifest = build_rayjob(request(location, sha, alice.id), targets[alice.id], RayJobOptions())
    assert yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])["working_dir"] == location
    cluster = manifest["spec"]["rayClusterSpec"]
    pods = [
        cluster["headGroupSpec"]["template"],
        *[g["template"] for g in cluster["workerGroupSpecs"]],
        manifest["spec"]["submitterPodTemplate"],
    ]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == job_service_account(alice) != job_service_account(bob)
        assert pod["spec"]["automountServiceAccountToken"] is False  # an identity for S3, no Kubernetes API token
    assert manifest["metadata"]["namespace"] == f"tenant-{alice.id}"


def test_a_package_on_the_control_planes_disk_cannot_reach_a_cluster():
    stack, targets = _targets()
    tenant = stack.tenants[0].id
    with pytest.raises(PermanentBackendError, match="the kuberay backend needs storage_path in object storage"):
        build_rayjob(request("/var/testbed/storage/x.zip", "b" * 64, tenant), targets[tenant], RayJobOptions())
