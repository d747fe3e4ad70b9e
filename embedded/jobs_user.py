"""The jobs' own OS user, when the local testbed runs as root (CI does).

Run as an ordinary user, the platform and the jobs share that user: one trust domain (``testbed.isolation``). Run
as root, Ray and so every tenant's job run as ``testbed-jobs``, a system user made once with ``useradd``, which
owns only where jobs work: in the jobs' folder (the platform's) its copy of the Ray token, Ray's HOME and the jobs'
MLflow logins; Ray's folder and the tenants' storage. The platform's processes (the control plane, MLflow, the supervisor) stay root's, and so
do the token files, MLflow's admin secret and the platform's databases (0600 in 0700 folders), and their
processes' environments (``/proc/<pid>/environ`` is the owner's only): a job reaches none of them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from embedded.errors import LocalTestbedError

JOBS_USER = "testbed-jobs"


@dataclass(frozen=True)
class JobsUser:
    name: str
    uid: int
    gid: int


def jobs_user() -> JobsUser | None:
    """The jobs' user when this process runs as root (made if missing), else None: jobs run as the caller."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(JOBS_USER)
    except KeyError:
        _create_user()
        entry = pwd.getpwnam(JOBS_USER)
    return JobsUser(JOBS_USER, entry.pw_uid, entry.pw_gid)


def _create_user() -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)), None)
    try:
        subprocess.run(
            [*command, *(["--shell", nologin] if nologin else []), JOBS_USER],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise LocalTestbedError(
            f"running as root, the testbed runs jobs as user {JOBS_USER!r}, which could not be created "
            f"({useradd}: {detail.strip()}); create it (`useradd --system {JOBS_USER}`) or run as an ordinary user"
        ) from None


def check_reach(user: JobsUser, folder: Path) -> None:
    """The jobs' user can run this environment's interpreter (jobs run ``python`` from it) and reach ``folder``
    (one of its folders in the state folder); else LocalTestbedError saying which and what to do."""
    try:
        subprocess.run(
            [sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(folder)],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            check=True,
            capture_output=True,
            timeout=60,
            cwd="/",
        )
    except (OSError, subprocess.TimeoutExpired):  # the interpreter itself could not be run
        raise LocalTestbedError(
            f"running as root, the testbed runs jobs as user {user.name!r}, which cannot run this environment's "
            f"Python ({sys.executable} -> {os.path.realpath(sys.executable)}): a folder on its way is closed to "
            "other users (e.g. pyenv's under /root). Make the environment from a Python every user can run "
            "(`make clean install` picks one: scripts/base-python) or run the testbed as an ordinary user"
        ) from None
    except subprocess.CalledProcessError:
        raise LocalTestbedError(
            f"running as root, the testbed runs jobs as user {user.name!r}, which cannot reach {folder}: a folder "
            f"above the state folder is closed to other users. Set TESTBED_HOME to a folder others may pass "
            f"through (the default as root is /var/lib/testbed) or run the testbed as an ordinary user"
        ) from None


def hand_over(user: JobsUser, *paths: Path) -> None:
    """Give these folders and files, not what is in them, to the jobs' user. Each must be a name in a folder of the
    platform's (the state folder, the jobs' folder), which the jobs' user cannot rename: root never walks or
    writes by name where a job could swap a link in. What the platform creates in them later is handed over
    on creation (:mod:`testbed.ownership`)."""
    for path in paths:
        try:
            if os.lstat(path).st_uid != user.uid:
                os.chown(path, user.uid, user.gid, follow_symlinks=False)
        except FileNotFoundError:
            continue
