"""Folders of data over real HTTP (no-op backend): upload recursively and resume, list with SHA-256, fetch,
remove with a count, name a folder as a template's data; refused folders leave nothing behind."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.client import TestbedError
from testbed.storage import DATA_SCHEME

ALICE = "changwon-precision"
BOB = "gimhae-robotics"


def image_folder(root: Path) -> Path:
    """Class sub-folders of small files, as a company's photo folder looks."""
    for label in ("ok", "scratch"):
        for i in range(3):
            path = root / label / f"part-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{label}-{i}".encode() * 100)
    return root


def cli(noop_plane, tenant: str, *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {"TESTBED_URL": noop_plane.url, "TESTBED_TOKEN": noop_plane.token(tenant), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", *argv], env=env, capture_output=True, text=True, input=stdin, timeout=120
    )


def test_folder_upload_resumes_lists_digests_downloads_and_removes(noop_plane, tmp_path):
    alice = noop_plane.client(ALICE)
    local = image_folder(tmp_path / "photos")
    progress: list[tuple[int, int]] = []
    first = alice.upload_folder(local, "parts/photos", progress=lambda done, total: progress.append((done, total)))
    assert first.folder == "parts/photos" and len(first.transferred) == 6 and not first.skipped
    assert progress[-1][0] == progress[-1][1] == sum(p.stat().st_size for p in local.rglob("*.png"))
    listed = {o.name: o.sha256 for o in alice.iter_data("parts/photos/", sha256=True)}
    assert (
        listed["parts/photos/ok/part-0.png"] == hashlib.sha256((local / "ok" / "part-0.png").read_bytes()).hexdigest()
    )

    (local / "scratch" / "part-1.png").write_bytes(b"changed")  # one file changed, one new: only those are sent
    (local / "scratch" / "part-9.png").write_bytes(b"new")
    again = alice.upload_folder(local, "parts/photos")
    assert sorted(o.name for o in again.transferred) == [
        "parts/photos/scratch/part-1.png",
        "parts/photos/scratch/part-9.png",
    ]
    assert len(again.skipped) == 5 and again.bytes == len(b"changed") + len(b"new")

    fetched = alice.download_folder("parts/photos/", tmp_path / "back")
    assert len(fetched.transferred) == 7
    for path in local.rglob("*.png"):
        assert (tmp_path / "back" / path.relative_to(local)).read_bytes() == path.read_bytes()

    bob = noop_plane.client(BOB)
    with pytest.raises(TestbedError) as err:
        bob.download_folder("parts/photos", tmp_path / "bob")
    assert err.value.status_code == 404  # Alice's folder is not Bob's
    removed = alice.delete_folder("parts/photos/")
    assert len(removed.deleted) == 7 and not list(alice.iter_data("parts/"))


def test_a_template_reads_a_folder_by_name(noop_plane, tmp_path):
    alice = noop_plane.client(ALICE)
    alice.upload_folder(image_folder(tmp_path / "photos"), "photos")
    for ref in (f"{DATA_SCHEME}photos", f"{DATA_SCHEME}photos/"):
        job = alice.submit({"template": "defect-inspection", "params": {"data_path": ref, "epochs": 1}})
        assert f"--data_path={noop_plane.home / 'storage' / ALICE / 'data' / 'photos'}" in job.entrypoint.split()
    with pytest.raises(TestbedError) as err:
        noop_plane.client(BOB).submit(
            {"template": "defect-inspection", "params": {"data_path": f"{DATA_SCHEME}photos"}}
        )
    assert err.value.status_code == 404


def test_a_refused_folder_sends_nothing(noop_plane, tmp_path):
    alice = noop_plane.client(ALICE)
    local = image_folder(tmp_path / "photos")
    (local / "ok" / ".DS_Store").write_bytes(b"hidden")
    with pytest.raises(TestbedError, match=r"\.DS_Store: data name .* none starting with '\.'"):
        alice.upload_folder(local)
    (local / "ok" / ".DS_Store").unlink()
    (local / "ok" / "link.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(TestbedError, match=r"link\.png: is a link"):
        alice.upload_folder(local)
    assert not list(alice.iter_data())


@pytest.mark.integration  # starts a process (a CLI, a server, a database)
def test_cli_folder_commands_with_progress_and_confirmation(noop_plane, tmp_path):
    local = image_folder(tmp_path / "photos")
    up = cli(noop_plane, ALICE, "data", "upload", str(local), "photos")
    assert up.returncode == 0, up.stderr
    assert "photos/: 6 files" in up.stdout and f"use it as {DATA_SCHEME}photos" in up.stdout
    assert "100%" in up.stderr  # the progress bar
    again = json.loads(cli(noop_plane, ALICE, "data", "upload", str(local), "photos", "--json").stdout)
    assert len(again["skipped"]) == 6 and again["transferred"] == []
    got = cli(noop_plane, ALICE, "data", "get", "photos/", str(tmp_path / "got"))
    assert got.returncode == 0 and (tmp_path / "got" / "ok" / "part-0.png").exists(), got.stderr
    asked = cli(noop_plane, ALICE, "data", "rm", "photos/")
    assert asked.returncode != 0 and "6 files" in asked.stderr and "--yes" in asked.stderr  # no terminal: not removed
    assert cli(noop_plane, ALICE, "data", "ls", "photos/", "--json").stdout.count('"name"') == 6
    removed = cli(noop_plane, ALICE, "data", "rm", "photos/", "--yes")
    assert removed.returncode == 0 and "removed 6 files" in removed.stdout, removed.stderr
