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
def test_a_jobs_login_belongs_to_the_owner_of_the_jobs_folder(tmp_path: Path):
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o700)
    os.chown(jobs, NOBODY, NOBODY)
    home = JobLogins(jobs / "logins").write("job-1", {"MLFLOW_TRACKING_PASSWORD": "p" * 20})
    for path in (jobs / "logins", home, home / ".mlflow", home / ".mlflow" / "credentials"):
        assert path.stat().st_uid == NOBODY, path
