"""Run as root, what the control plane writes where jobs work goes to that folder's owner (the jobs' user), links
never followed; as anyone else, nothing is handed over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from operators.control_plane import contained_files as contained
from operators.control_plane.backends.ray_jobs import JobLogins
from testbed.ownership import heir

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a process running as root hands files over")


def test_nothing_is_handed_over_in_a_folder_of_root_or_by_an_ordinary_user(tmp_path: Path):
    assert heir(tmp_path.stat()) is None  # tmp_path belongs to whoever runs the tests: nothing to hand over


@as_root
def test_new_folders_and_files_in_a_jobs_users_storage_are_theirs(tmp_path: Path):
    root = tmp_path / "storage"
    root.mkdir(mode=0o700)
    os.chown(root, NOBODY, NOBODY)
    new = contained.NewFile(str(root), ["alice", "uploads"])
    new.file.write(b"x")
    new.place(["alice", "data", "imgs", "a.png"])
    for path in (root / "alice", root / "alice" / "uploads", root / "alice" / "data" / "imgs" / "a.png"):
        assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY), path
    assert oct((root / "alice" / "data" / "imgs" / "a.png").stat().st_mode & 0o777) == "0o600"


@as_root
def test_a_jobs_login_belongs_to_the_owner_of_the_logins_folder(tmp_path: Path):
    logins = tmp_path / "logins"
    logins.mkdir(mode=0o700)
    os.chown(logins, NOBODY, NOBODY)  # as the supervisor hands it over
    home = JobLogins(logins).write("job-1", {"MLFLOW_TRACKING_PASSWORD": "p" * 20})
    for path in (home, home / ".mlflow", home / ".mlflow" / "credentials"):
        assert path.stat().st_uid == NOBODY, path
    assert "p" * 20 in (home / ".mlflow" / "credentials").read_text()


@as_root
def test_a_link_a_job_planted_for_its_login_is_removed_not_followed(tmp_path: Path):
    logins, elsewhere = tmp_path / "logins", tmp_path / "elsewhere"
    logins.mkdir(mode=0o700)
    elsewhere.mkdir()
    os.chown(logins, NOBODY, NOBODY)
    (logins / "job-2").mkdir()
    (logins / "job-2" / ".mlflow").symlink_to(elsewhere)  # what a job could leave in a folder it owns
    home = JobLogins(logins).write("job-2", {"MLFLOW_TRACKING_PASSWORD": "q" * 20})
    assert not (home / ".mlflow").is_symlink() and list(elsewhere.iterdir()) == []


def test_tightening_the_state_folder_follows_no_link(tmp_path: Path):
    from embedded.state import StateFolder

    home, outside = tmp_path / "home", tmp_path / "outside.txt"
    (home / "ray").mkdir(parents=True)
    outside.write_text("x")
    outside.chmod(0o644)
    (home / "ray" / "a-link").symlink_to(outside)
    os.link(outside, home / "ray" / "a-hard-link")
    (home / "ray" / "loose.log").write_text("y")
    (home / "ray" / "loose.log").chmod(0o644)
    StateFolder(home).tighten()
    assert oct(outside.stat().st_mode & 0o777) == "0o644"  # neither the link nor the hard link changed it
    assert oct((home / "ray" / "loose.log").stat().st_mode & 0o777) == "0o600"
