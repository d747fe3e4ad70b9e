"""Code packages, data and job outputs over real HTTP (no-op backend): content-addressed, size-limited, per tenant."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from operators.control_plane.app import create_app
from operators.control_plane.launch import launch_request
from tests.serve import serve_in_thread
from tests.replicas import issued_token, noop_settings
from testbed.client import TestbedClient, TestbedError
from testbed.config import stack_file_for
from testbed.packaging import build_package
from testbed.storage import DATA_SCHEME

ALICE = "changwon-precision"
BOB = "gimhae-robotics"


@contextmanager
def plane(tmp_path: Path, **settings) -> Iterator[tuple[str, object]]:
    """A no-op control plane with extra settings (e.g. lower upload limits): (url, app)."""
    app = create_app(
        noop_settings(tmp_path, stack_file_for("gyeongnam"), f"sqlite:///{tmp_path / 'cp.db'}", **settings)
    )
    with serve_in_thread(app) as url:
        yield url, app


def client(tmp_path: Path, url: str, subject: str) -> TestbedClient:
    return TestbedClient(url, issued_token(tmp_path, subject))


def refused(call, status: int, code: str) -> str:
    with pytest.raises(TestbedError) as err:
        call()
    assert (err.value.status_code, err.value.code) == (status, code), err.value
    return err.value.detail


def code_folder(root: Path) -> Path:
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("GREETING = 'hello from the package'\n")
    (root / "train.py").write_text("from mypkg import GREETING\nprint(GREETING)\n")
    return root


def raw_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def put(url: str, token: str, path: str, body) -> httpx.Response:
    return httpx.put(url + path, content=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_package_is_stored_once_and_runs_as_the_jobs_working_dir(noop_plane):
    alice = noop_plane.client(ALICE)
    folder = code_folder(noop_plane.home / "mycode")
    first = alice.upload_package(folder)
    again = alice.upload_package(folder)
    assert first.created and not again.created and first.ref == again.ref
    stored = list((noop_plane.home / "storage" / ALICE / "packages").iterdir())
    assert [p.name for p in stored] == [f"{first.sha256}.zip"]  # one file, named by its SHA-256
    assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == first.sha256
    # the same digest PUT again stores nothing new (200, created false)
    answer = put(noop_plane.url, noop_plane.token(ALICE), f"/v1/packages/{first.ref}", stored[0].read_bytes())
    assert answer.status_code == 200 and answer.json()["created"] is False

    job = alice.submit(entrypoint="python train.py", working_dir=folder)
    request = launch_request(noop_plane.plane.store.get_job(job.id), noop_plane.plane.settings)
    assert request.runtime_env.code_package.location == str(stored[0])
    assert request.runtime_env.code_package.gcs_uri == f"gcs://_ray_pkg_{first.sha256}.zip"
    env = request.runtime_env.env_vars
    storage = noop_plane.home / "storage"
    assert env["TESTBED_STORAGE_PATH"] == f"{storage}/{ALICE}/jobs/{job.id}"
    assert env["TESTBED_DATA_PATH"] == f"{storage}/{ALICE}/data"


def test_another_tenants_package_cannot_be_used_or_seen(noop_plane):
    alice, bob = noop_plane.client(ALICE), noop_plane.client(BOB)
    ref = alice.upload_package(code_folder(noop_plane.home / "mycode")).ref
    assert ref in refused(lambda: bob.submit(entrypoint="python train.py", code_package=ref), 404, "not_found")
    assert "body.code_package" in refused(
        lambda: bob.submit(entrypoint="python train.py", code_package=ref), 404, "not_found"
    )
    seen = httpx.get(
        f"{noop_plane.url}/v1/packages/{ref}", headers={"Authorization": f"Bearer {noop_plane.token(BOB)}"}
    )
    assert seen.status_code == 404 and seen.json()["error"] == "not_found"
    assert bob.list_jobs().jobs == []  # nothing recorded
    assert alice.submit(entrypoint="python train.py", code_package=ref).status


def test_a_package_body_is_checked(tmp_path):
    with plane(tmp_path, max_package_bytes=64 * 1024) as (url, _app):
        token = issued_token(tmp_path, ALICE)
        body = raw_zip({"train.py": b"print(1)\n"})
        sha = hashlib.sha256(body).hexdigest()
        wrong = put(url, token, f"/v1/packages/sha256:{'0' * 64}", body)
        assert wrong.status_code == 409 and sha in wrong.json()["detail"]
        not_zip = b"not a zip at all"
        answer = put(url, token, f"/v1/packages/sha256:{hashlib.sha256(not_zip).hexdigest()}", not_zip)
        assert answer.status_code == 422 and "not a zip" in answer.json()["detail"]
        escape = raw_zip({"../../credentials/x": b"x"})
        answer = put(url, token, f"/v1/packages/sha256:{hashlib.sha256(escape).hexdigest()}", escape)
        assert answer.status_code == 422 and "outside itself" in answer.json()["detail"]
        # over the limit packed (413 naming the limit) or unpacked (a zip bomb)
        big = os.urandom(100 * 1024)
        answer = put(url, token, f"/v1/packages/sha256:{hashlib.sha256(big).hexdigest()}", big)
        assert answer.status_code == 413 and str(64 * 1024) in answer.json()["detail"], answer.text
        bomb = raw_zip({"zeros.bin": bytes(1024 * 1024)})
        answer = put(url, token, f"/v1/packages/sha256:{hashlib.sha256(bomb).hexdigest()}", bomb)
        assert answer.status_code == 413 and "unpacks to 1048576 bytes" in answer.json()["detail"]
        assert put(url, token, f"/v1/packages/sha256:{sha}", body).status_code == 201
        assert [p.name for p in (tmp_path / "storage" / ALICE / "packages").iterdir()] == [f"{sha}.zip"]
        assert not list((tmp_path / "storage" / ALICE / "uploads").iterdir())  # nothing half-written left


def test_the_client_packs_what_it_should_and_refuses_links_out(tmp_path):
    folder = code_folder(tmp_path / "code")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: x")
    (folder / "mypkg" / "__pycache__").mkdir()
    (folder / "mypkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "big.ckpt").write_bytes(b"\0" * 10)
    (folder / "notes.txt").write_text("x")
    (folder / ".testbedignore").write_text("# comment\ncheckpoints/\n")
    (folder / "alias.py").symlink_to(folder / "train.py")  # a link inside: packed as what it points to
    package = build_package(folder, excludes=["notes.txt"])
    names = sorted(zipfile.ZipFile(io.BytesIO(package.data)).namelist())
    assert names == [".testbed-package", ".testbedignore", "alias.py", "mypkg/__init__.py", "train.py"]
    assert build_package(folder, excludes=["notes.txt"]).sha256 == package.sha256  # the same zip every time
    (folder / "secrets").symlink_to(tmp_path)  # a link that leads outside the folder
    with pytest.raises(ValueError, match=f"{folder}: link secrets -> {tmp_path} leads outside the folder"):
        build_package(folder)
    assert build_package(folder, excludes=["secrets"]).files == 5


def test_a_package_over_the_limit_is_refused_here_naming_folder_and_size(tmp_path, noop_plane):
    folder = code_folder(tmp_path / "big")
    with open(folder / "weights.bin", "wb") as f:
        f.truncate(101 * 2**20)  # sparse: nothing is read before the refusal
    alice = noop_plane.client(ALICE)
    detail = refused(lambda: alice.submit(entrypoint="python train.py", working_dir=folder), None, "refused_here")
    assert detail == (
        f"{folder}: 101.0 MiB in 3 files, over the 100.0 MiB limit of a code package; exclude data and "
        "checkpoints in .testbedignore (upload data with `testbed data upload`)"
    )
    assert alice.list_jobs().jobs == [] and not (noop_plane.home / "storage" / ALICE / "packages").exists()
    with pytest.raises(ValueError, match="zip grows past the 0.0 MiB limit"):
        build_package(code_folder(tmp_path / "small"), max_bytes=100)


def test_working_dir_in_a_spec_is_refused_with_the_way_to_upload(noop_plane):
    alice = noop_plane.client(ALICE)
    detail = refused(lambda: alice.submit({"entrypoint": "ls", "working_dir": "proj"}), 422, "invalid_spec")
    assert "upload your folder" in detail and "--working-dir" in detail


def test_data_upload_list_read_delete_and_tenant_isolation(noop_plane, tmp_path):
    alice, bob = noop_plane.client(ALICE), noop_plane.client(BOB)
    local = tmp_path / "sensors.csv"
    local.write_text("machine_id,label\n1,0\n")
    assert alice.upload_data(local).name == "sensors.csv"
    assert alice.upload_data(local, "2025/march.csv").size == local.stat().st_size
    assert [o.name for o in alice.list_data().objects] == ["2025/march.csv", "sensors.csv"]
    assert [o.name for o in alice.list_data("2025/").objects] == ["2025/march.csv"]
    page = alice.list_data(limit=1)
    assert [o.name for o in page.objects] == ["2025/march.csv"] and page.next_cursor == "2025/march.csv"
    assert [o.name for o in alice.list_data(cursor=page.next_cursor).objects] == ["sensors.csv"]
    assert alice.download_data("sensors.csv", tmp_path / "back.csv").read_text() == local.read_text()
    # Bob sees nothing of Alice's: not in his list, not by name (404, as for a name that does not exist)
    assert bob.list_data().objects == []
    refused(lambda: bob.download_data("sensors.csv", tmp_path / "stolen.csv"), 404, "not_found")
    refused(lambda: bob.delete_data("sensors.csv"), 404, "not_found")
    assert not (tmp_path / "stolen.csv").exists() and not (tmp_path / "stolen.csv.part").exists()
    assert alice.delete_data("sensors.csv").deleted == ["sensors.csv"]
    assert [o.name for o in alice.list_data().objects] == ["2025/march.csv"]
    # names are relative: no '..', no absolute path, no hidden file (client and server alike)
    for name in ("../x.csv", "/etc/passwd", ".hidden", "a/../../b"):
        refused(lambda: alice.upload_data(local, name), None, "refused_here")
    auth = {"Authorization": f"Bearer {noop_plane.token(ALICE)}"}
    for path in ("/v1/data/..%2F..%2Fcredentials%2Foperator.token", "/v1/data/.hidden", "/v1/data/a%2F..%2Fb"):
        assert httpx.put(noop_plane.url + path, content=b"x", headers=auth).status_code in (404, 422), path
        assert httpx.get(noop_plane.url + path, headers=auth).status_code in (404, 422), path
    # a name that a folder holds, or that passes through a file, is a conflict (local folders; S3 has none)
    assert "in the way" in refused(lambda: alice.upload_data(local, "2025"), 409, "name_conflict")
    assert "in the way" in refused(lambda: alice.upload_data(local, "2025/march.csv/x"), 409, "name_conflict")
    # the operator token has no storage of its own
    refused(lambda: noop_plane.client("operator").list_data(), 403, "forbidden")


def test_a_data_file_over_the_limit_is_413(tmp_path):
    with plane(tmp_path, max_data_file_bytes=1000) as (url, _app):
        token = issued_token(tmp_path, ALICE)
        declared = put(url, token, "/v1/data/x.bin", b"x" * 5000)  # refused by its Content-Length, unread
        streamed = put(url, token, "/v1/data/x.bin", iter([b"x" * 600] * 5))  # chunked: refused once past 1000
        for answer in (declared, streamed):
            assert answer.status_code == 413, answer.text
            assert "larger than 1000 bytes (the limit of a data file)" in answer.json()["detail"]
        assert not list((tmp_path / "storage" / ALICE / "uploads").iterdir())  # the partial upload is gone
        assert not (tmp_path / "storage" / ALICE / "data").exists()
        assert put(url, token, "/v1/data/x.bin", b"x" * 1000).status_code == 201


def test_data_path_names_the_tenants_own_data(noop_plane, tmp_path):
    alice, bob = noop_plane.client(ALICE), noop_plane.client(BOB)
    ref = f"{DATA_SCHEME}sensors.csv"
    spec = {"template": "predictive-maintenance", "params": {"data_path": ref, "epochs": 1}}
    assert "body.params.data_path: no data 'sensors.csv'" in refused(lambda: alice.submit(spec), 404, "not_found")
    (tmp_path / "s.csv").write_text("x")
    alice.upload_data(tmp_path / "s.csv", "sensors.csv")
    job = alice.submit(spec)
    assert job.params["data_path"] == ref  # the job shows what was asked for...
    located = f"--data_path={noop_plane.home / 'storage' / ALICE / 'data' / 'sensors.csv'}"
    assert located in job.entrypoint.split()  # ...and runs on the tenant's own copy
    refused(lambda: bob.submit(spec), 404, "not_found")  # Bob has no such data; Alice's is not his
    refused(
        lambda: alice.submit({**spec, "params": {"data_path": f"{DATA_SCHEME}../{BOB}/data/x"}}), 422, "invalid_spec"
    )


def test_job_outputs_are_the_owners_only(noop_plane):
    alice, bob = noop_plane.client(ALICE), noop_plane.client(BOB)
    job = alice.wait(alice.submit(entrypoint="true").id, timeout=30)
    folder = noop_plane.home / "storage" / ALICE / "jobs" / job.id
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / "model.pt").write_bytes(b"weights")
    bob_data = noop_plane.home / "storage" / BOB / "data"
    bob_data.mkdir(parents=True)
    (bob_data / "secret.csv").write_text("bob's")
    (folder / "planted").symlink_to(bob_data / "secret.csv")  # a job could plant a link: never followed
    assert [o.name for o in alice.list_outputs(job.id).objects] == ["ckpt/model.pt"]
    assert alice.download_output(job.id, "ckpt/model.pt", folder.parent / "m.pt").read_bytes() == b"weights"
    refused(lambda: alice.download_output(job.id, "planted", folder.parent / "p"), 404, "not_found")
    for call in (
        lambda: bob.list_outputs(job.id),
        lambda: bob.delete_outputs(job.id),
        lambda: bob.download_output(job.id, "ckpt/model.pt", folder.parent / "b.pt"),
    ):
        refused(call, 404, "not_found")
    removed = alice.delete_outputs(job.id)
    assert removed.deleted == ["ckpt/model.pt"] and removed.bytes == 7
    assert not folder.exists() and (bob_data / "secret.csv").read_text() == "bob's"


def test_storage_routes_in_the_openapi_document(noop_plane):
    spec = httpx.get(noop_plane.url + "/openapi.json").json()
    put_package = spec["paths"]["/v1/packages/{ref}"]["put"]
    assert "application/zip" in put_package["requestBody"]["content"]
    assert str(100 * 2**20) in put_package["requestBody"]["description"]
    assert {"200", "201", "409", "413"} <= set(put_package["responses"])
    assert "application/octet-stream" in spec["paths"]["/v1/data/{name}"]["get"]["responses"]["200"]["content"]
    assert json.dumps(spec).count("/outputs") >= 2


def test_storage_that_does_not_answer_is_a_503_and_jobs_still_run(noop_plane):
    class Unreachable:
        def __getattr__(self, _name):
            def fail(*_args, **_kwargs):
                raise ConnectionError("connect timeout on endpoint URL")

            return fail

    storage = noop_plane.plane.storage
    storage.fs  # opened: now make it stop answering
    storage._fs, storage.local = Unreachable(), False  # a remote store (s3://) that stopped answering
    alice = noop_plane.client(ALICE)
    detail = refused(lambda: alice.list_data(), 503, "storage_unavailable")
    assert detail == f"tenant storage {storage.root} does not answer: connect timeout on endpoint URL"
    refused(lambda: alice.submit(entrypoint="true", code_package="sha256:" + "0" * 64), 503, "storage_unavailable")
    assert alice.submit(entrypoint="true").status  # a job without code or data needs no storage at admission


def cli(plane_url: str, token: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTBED_")}
    env.update(TESTBED_URL=plane_url, TESTBED_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "embedded.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.integration  # starts a real process
def test_the_data_commands_and_their_json(noop_plane, tmp_path):
    alice, bob = noop_plane.token(ALICE), noop_plane.token(BOB)
    (tmp_path / "mine.csv").write_text("a,b\n1,2\n")
    up = cli(noop_plane.url, alice, tmp_path, "data", "upload", "mine.csv", "plant/readings.csv", "--json")
    assert json.loads(up.stdout)["name"] == "plant/readings.csv", up.stderr
    assert (
        "use it as testbed-data://x.csv"
        in cli(noop_plane.url, alice, tmp_path, "data", "upload", "mine.csv", "x.csv").stdout
    )
    listed = json.loads(cli(noop_plane.url, alice, tmp_path, "data", "ls", "plant/", "--json").stdout)
    assert [o["name"] for o in listed["objects"]] == ["plant/readings.csv"] and listed["next_cursor"] is None
    table = cli(noop_plane.url, alice, tmp_path, "data", "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "MODIFIED_AT"] and len(table) == 3
    got = cli(noop_plane.url, alice, tmp_path, "data", "get", "plant/readings.csv", "--json")
    assert json.loads(got.stdout)["size"] == 8 and (tmp_path / "readings.csv").read_text() == "a,b\n1,2\n"
    stolen = cli(noop_plane.url, bob, tmp_path, "data", "rm", "plant/readings.csv")
    assert stolen.returncode == 1 and stolen.stderr.strip() == (
        "testbed: error: 404 Not Found: no data 'plant/readings.csv'"
    )
    assert json.loads(cli(noop_plane.url, bob, tmp_path, "data", "ls", "--json").stdout)["objects"] == []
    removed = json.loads(cli(noop_plane.url, alice, tmp_path, "data", "rm", "x.csv", "--json").stdout)
    assert removed == {"deleted": ["x.csv"], "bytes": 8}
    both = cli(noop_plane.url, alice, tmp_path, "data", "rm", "x.csv", "--job", "job-1")
    assert both.returncode == 1 and "not both" in both.stderr
