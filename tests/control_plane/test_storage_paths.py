"""Storage paths that cannot leave the tenant's folder, over real HTTP (no-op backend): listing prefixes and
cursors, links planted or swapped in a job's folder (a bounded race), abandoned uploads, odd names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.control_plane.test_storage_api import ALICE, BOB, plane, put
from tests.waiting import wait_until

SECRET = b"alice's private data\n"


def get(url: str, token: str, path: str, **params) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def upload(noop_plane, subject: str, name: str, body: bytes) -> None:
    assert put(noop_plane.url, noop_plane.token(subject), f"/v1/data/{name}", body).status_code == 201


def bob_job_folder(noop_plane) -> tuple[str, Path]:
    """A job of BOB's and its output folder on disk (what its code would write to)."""
    job = noop_plane.client(BOB).submit(entrypoint="true")
    folder = noop_plane.home / "storage" / BOB / "jobs" / job.id
    folder.mkdir(parents=True)
    return job.id, folder


@pytest.mark.parametrize(
    "prefix",
    [
        "../uploads/",
        "../jobs/",
        "../packages/",
        "../../",
        "../../../../tmp/x/",
        "/etc/",
        "a\\b",
        "x\n",
        "a//b",
        "./",
        "sub/../../",
    ],
)
def test_a_prefix_or_cursor_that_leaves_the_folder_is_a_422(noop_plane, prefix):
    token = noop_plane.token(BOB)
    job_id, _ = bob_job_folder(noop_plane)
    for path in ("/v1/data", f"/v1/jobs/{job_id}/outputs"):
        for field in ("prefix", "cursor"):
            answer = get(noop_plane.url, token, path, **{field: prefix})
            assert answer.status_code == 422, (path, field, answer.text)
            assert answer.json()["error"] == "invalid_spec" and f"query.{field}" in answer.json()["detail"]


def test_listing_shows_only_the_area_never_uploads_in_flight_or_links(noop_plane):
    bob = noop_plane.client(BOB)
    upload(noop_plane, ALICE, "secret.csv", SECRET)
    upload(noop_plane, BOB, "sensors/a.csv", b"1\n")
    upload(noop_plane, BOB, "sensors-b.csv", b"2\n")
    storage = noop_plane.home / "storage"
    (storage / BOB / "uploads").mkdir(exist_ok=True)
    (storage / BOB / "uploads" / "in-flight").write_bytes(b"partial")
    (storage / BOB / "data" / "alice-link.csv").symlink_to(storage / ALICE / "data" / "secret.csv")
    (storage / BOB / "data" / "alice-dir").symlink_to(storage / ALICE / "data", target_is_directory=True)
    os.link(storage / ALICE / "data" / "secret.csv", storage / BOB / "data" / "hard.csv")
    names = [o.name for o in bob.list_data().objects]
    assert names == ["sensors-b.csv", "sensors/a.csv"]  # no link, no hard link, no upload, no other area
    assert [o.name for o in bob.list_data(prefix="sensors/").objects] == ["sensors/a.csv"]
    assert [o.name for o in bob.list_data(prefix="sensors").objects] == ["sensors-b.csv", "sensors/a.csv"]
    token = noop_plane.token(BOB)
    for name in ("alice-link.csv", "alice-dir/secret.csv", "hard.csv"):
        assert get(noop_plane.url, token, f"/v1/data/{name}").status_code == 404, name
    # deleting through a link removes nothing of ALICE's
    assert (
        httpx.delete(
            f"{noop_plane.url}/v1/data/alice-dir/secret.csv", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )
    assert (storage / ALICE / "data" / "secret.csv").read_bytes() == SECRET


_SWAPPER = """
import os, signal, sys
from pathlib import Path
folder, alice = Path(sys.argv[1]), Path(sys.argv[2])
swaps = 0
def done(*_):
    print(swaps, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
dir_link, file_link = folder / "sub.link", folder / "race.link"
while True:
    (folder / "own.tmp").write_bytes(b"bob's own\\n")
    os.replace(folder / "own.tmp", folder / "race.txt")  # a regular file ...
    file_link.symlink_to(alice / "secret.csv")
    os.replace(file_link, folder / "race.txt")  # ... swapped for a link to ALICE's file
    os.rename(folder / "sub", folder / "sub.real")
    os.rename(dir_link, folder / "sub")  # a folder swapped for a link to ALICE's folder ...
    os.rename(folder / "sub", dir_link)
    os.rename(folder / "sub.real", folder / "sub")  # ... and back
    swaps += 1
"""


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_a_link_swapped_in_and_out_never_serves_another_tenants_file(noop_plane):
    """The check-then-open race: a job swaps its output file (and a folder) between a real one and a link to
    ALICE's data while BOB reads; bounded to a few seconds, never ALICE's bytes."""
    upload(noop_plane, ALICE, "secret.csv", SECRET)
    alice_data = noop_plane.home / "storage" / ALICE / "data"
    job_id, folder = bob_job_folder(noop_plane)
    (folder / "sub").mkdir()
    (folder / "sub" / "secret.csv").write_bytes(b"bob's own\n")
    dir_link = folder / "sub.link"
    dir_link.symlink_to(alice_data, target_is_directory=True)
    # the swapper is a process of its own (as a job is), so it runs truly beside the server's threads
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(folder), str(alice_data)], stdout=subprocess.PIPE, text=True
    )
    served: dict[int, int] = {}
    leaked = []
    deadline = time.monotonic() + 6
    with httpx.Client(base_url=noop_plane.url, headers={"Authorization": f"Bearer {noop_plane.token(BOB)}"}) as http:
        try:
            rounds = 0
            while time.monotonic() < deadline:
                rounds += 1
                for path in ("race.txt", "sub/secret.csv", "race.txt", "race.txt"):
                    answer = http.get(f"/v1/jobs/{job_id}/outputs/{path}")
                    served[answer.status_code] = served.get(answer.status_code, 0) + 1
                    if answer.status_code == 200 and answer.content != b"bob's own\n":  # any byte of ALICE's
                        leaked.append(path)
                if rounds % 8:
                    continue
                answer = http.get(f"/v1/jobs/{job_id}/outputs")
                assert answer.status_code == 200, answer.text
                listing = answer.json()["objects"]
                leaked += [o["name"] for o in listing if o["size"] == len(SECRET)]  # BOB's files are shorter
        finally:
            swapper.terminate()
            swaps = int((swapper.communicate(timeout=10)[0] or "0").strip() or 0)
    print(f"swaps {swaps}, answers {served}, leaked {len(leaked)}")
    assert swaps > 10 and served.get(200, 0) > 10, (swaps, served)  # the race really ran, both ways
    assert leaked == []


def test_abandoned_uploads_are_removed_at_start_and_after_the_idle_timeout(tmp_path):
    uploads = tmp_path / "storage" / BOB / "uploads"
    uploads.mkdir(parents=True)
    stale, fresh = uploads / "crashed-before", uploads / "just-now"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with plane(tmp_path, upload_idle_seconds=2.0):
        wait_until(lambda: not stale.exists(), 5, "the sweep at start")
        assert fresh.exists()  # at start: only what was idle past the timeout
        wait_until(lambda: not fresh.exists(), 10, "the periodic sweep, once the upload is idle")


def test_a_name_with_a_newline_or_a_dot_part_is_refused_and_nothing_is_stored(noop_plane):
    token = noop_plane.token(BOB)
    for name in ("x%0A", "x%0D", "a/%2E%2E/b", "x%00"):
        answer = put(noop_plane.url, token, f"/v1/data/{name}", b"data")
        assert answer.status_code in (404, 422), (name, answer.status_code)
    data = noop_plane.home / "storage" / BOB / "data"
    assert not data.exists() or list(data.rglob("*")) == []
    job_id, folder = bob_job_folder(noop_plane)
    (folder / "x").write_bytes(b"out")
    assert get(noop_plane.url, token, f"/v1/jobs/{job_id}/outputs/x").status_code == 200
    assert get(noop_plane.url, token, f"/v1/jobs/{job_id}/outputs/x%0A").status_code == 422


def test_the_server_refuses_a_package_of_more_entries_than_the_client_packs(noop_plane):
    import hashlib
    import io
    import zipfile

    from testbed.packaging import MAX_PACKAGE_FILES

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(MAX_PACKAGE_FILES + 1):
            archive.writestr(f"f{i}", b"")
    body = buffer.getvalue()
    token = noop_plane.token(BOB)
    answer = put(noop_plane.url, token, f"/v1/packages/sha256:{hashlib.sha256(body).hexdigest()}", body)
    assert answer.status_code == 413 and f"{MAX_PACKAGE_FILES + 1} entries" in answer.json()["detail"], answer.text
    assert not list((noop_plane.home / "storage" / BOB).glob("packages/*"))
