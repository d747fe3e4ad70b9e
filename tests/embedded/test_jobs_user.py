"""Run as root, `testbed up` checks before Ray starts that the jobs' user can run the environment's Python and reach
its folder in the state folder, and says what to change where it cannot."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from embedded.errors import LocalTestbedError
from embedded.jobs_user import JOBS_USER, check_reach, hand_over, jobs_user
from testbed import local_address

pytestmark = [
    pytest.mark.integration,  # runs a process as the jobs' user
    pytest.mark.skipif(os.geteuid() != 0, reason="jobs get a user of their own only when the testbed runs as root"),
]


def _state_folder(parent: Path) -> Path:
    home = parent / "home"
    (home / "ray").mkdir(parents=True)
    home.chmod(0o711)
    return home


def test_a_state_folder_others_may_pass_through_is_reached():
    parent = Path(tempfile.mkdtemp(prefix="tb-reach-", dir="/tmp"))  # pytest's tmp_path is under a 0700 folder
    try:
        parent.chmod(0o711)
        home = _state_folder(parent)
        user = jobs_user()
        assert user is not None and user.name == JOBS_USER
        hand_over(user, home / "ray")
        check_reach(user, home / "ray")  # no error
    finally:
        shutil.rmtree(parent)


def test_a_state_folder_under_a_closed_folder_is_refused_naming_it(tmp_path: Path):
    tmp_path.chmod(0o700)  # like root's home
    home = _state_folder(tmp_path)
    user = jobs_user()
    assert user is not None
    hand_over(user, home / "ray")
    with pytest.raises(LocalTestbedError, match=rf"cannot reach {home / 'ray'}.*TESTBED_HOME"):
        check_reach(user, home / "ray")


def test_roots_default_state_folder_is_outside_its_closed_home(monkeypatch):
    monkeypatch.delenv("TESTBED_HOME", raising=False)
    root_home = local_address.ROOT_TESTBED_HOME
    assert local_address.testbed_home() == root_home and not root_home.is_relative_to(Path.home())
