"""Run jobs on any Ray cluster through its Jobs API (the dashboard address)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import fsspec

from operators.control_plane.backends.base import (
    AlreadyExists,
    Backend,
    BackendError,
    BackendJobInfo,
    Capacity,
    CodePackage,
    JobNotFound,
    LaunchRequest,
    PermanentBackendError,
)
from operators.control_plane import contained_files as contained
from testbed.jobs import JobStatus
from testbed.ownership import heir


# Ray's SDK raises RuntimeError("Request failed with status code 404: Job ... does not exist.") and
# the like: the status code and the server's words are all there is to tell the cases apart.
class JobLogins:
    """Each job's MLflow login as MLflow's own credentials file, ``<dir>/<job id>/.mlflow/credentials`` (0600 in
    0700 folders); the job gets ``HOME=<dir>/<job id>`` and its MLflow client reads the login from there
    (``mlflow.utils.credentials``), so no password is in Ray's runtime env, its logs or its Jobs API."""

    def __init__(self, folder: Path | None):
        self.folder = folder or Path(tempfile.mkdtemp(prefix="testbed-job-logins-"))

    def write(self, job_id: str, secrets: dict[str, str]) -> Path:
        """The job's home with its login, made fresh. Where jobs run as a user of their own (:mod:`testbed.ownership`)
        the folder is theirs: everything here is reached through descriptors, never by a name a job could have
        swapped for a link, and handed to them once written."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        body = "[mlflow]\n" + "".join(f"{key.lower()} = {value}\n" for key, value in sorted(secrets.items()))
        opened: list[int] = []
        try:
            folder = os.open(self.folder, contained.DIR_FLAGS)
            opened.append(folder)
            owner = heir(os.fstat(folder))
            shutil.rmtree(
                job_id, dir_fd=folder, ignore_errors=True
            )  # an earlier dispatch's, links removed not followed
            os.mkdir(job_id, 0o700, dir_fd=folder)
            home = os.open(job_id, contained.DIR_FLAGS, dir_fd=folder)
            opened.append(home)
            os.mkdir(".mlflow", 0o700, dir_fd=home)
            dot_mlflow = os.open(".mlflow", contained.DIR_FLAGS, dir_fd=home)
            opened.append(dot_mlflow)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            login = os.open("credentials", flags, 0o600, dir_fd=dot_mlflow)
            opened.append(login)
            os.write(login, body.encode())
            for fd in (login, dot_mlflow, home) if owner is not None else ():
                os.fchown(fd, *owner)
        finally:
            for fd in opened:
                os.close(fd)
        return self.folder / job_id

    def remove(self, job_id: str) -> None:
        if re.fullmatch(r"[A-Za-z0-9_.-]+", job_id) and job_id not in (".", ".."):
            shutil.rmtree(self.folder / job_id, ignore_errors=True)


_NOT_FOUND = re.compile(r"status code 404|does not exist|not found", re.IGNORECASE)
_ALREADY_EXISTS = re.compile(r"already exists", re.IGNORECASE)
# Ray answered that the request itself is wrong (400 bad runtime env, 413 package too large, ...):
# sending it again gets the same answer. 408 and 429 are about timing, not the request.
_REFUSED = re.compile(r"status code (4(?!08|29)\d\d)")
# The SDK checks a runtime env before sending it (a working_dir that is no folder, a bad field).
_CLIENT_SIDE_REFUSALS = (ValueError, TypeError)


def translate_ray_error(exc: BaseException, what: str, ref: str) -> BackendError:
    """The BackendError a Ray SDK failure of ``what`` (e.g. "cannot stop") on job ``ref`` means."""
    if isinstance(exc, BackendError):
        return exc
    text = str(exc)
    if _ALREADY_EXISTS.search(text):
        return AlreadyExists(f"Ray already has job {ref}")
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if _REFUSED.search(text) and not _NOT_FOUND.search(first_line):
        return PermanentBackendError(f"{what} {ref}: {_reason(text)}")
    if _NOT_FOUND.search(text):
        return JobNotFound(f"Ray does not know job {ref}")
    if isinstance(exc, _CLIENT_SIDE_REFUSALS):
        return PermanentBackendError(f"{what} {ref}: {first_line}")
    return BackendError(f"{what} {ref}: {first_line}")


def _reason(text: str) -> str:
    """Ray's own words for a refusal: the last line of its server-side traceback, else the first line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if len(lines) > 1 and "Error" in lines[-1] else lines[0]


@contextmanager
def ray_errors(what: str, ref: str) -> Iterator[None]:
    """Run a Ray SDK call; any failure leaves as the BackendError :func:`translate_ray_error` gives."""
    try:
        yield
    except Exception as exc:
        raise translate_ray_error(exc, what, ref) from None


class RayJobsBackend(Backend):
    """Submits with the control plane's job id as Ray's submission id, so a retry is idempotent."""

    name = "ray"

    def __init__(self, address: str, capacity: Capacity | None = None, logins_dir: Path | None = None):
        self.address = address
        self.logins = JobLogins(logins_dir)
        self._capacity = capacity or Capacity()
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        """Ray's JobSubmissionClient, created on first use (it checks the cluster when built)."""
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as exc:  # connection refused, version mismatch, ...
                    raise BackendError(f"Ray Jobs API at {self.address} is not reachable: {exc}") from None
            return self._client

    def submit(self, request: LaunchRequest) -> str:
        driver = request.driver
        runtime_env = request.runtime_env
        if runtime_env.code_package is not None:
            runtime_env = runtime_env.with_working_dir(self.ensure_package(runtime_env.code_package, request.job_id))
        if request.secret_env:  # the login travels as a 0600 file, never in the runtime env Ray logs and shows
            home = self.logins.write(request.job_id, request.secret_env)
            runtime_env = runtime_env.model_copy(update={"env_vars": {**runtime_env.env_vars, "HOME": str(home)}})
        try:
            with ray_errors("Ray refused job", request.job_id):
                return self.client.submit_job(
                    entrypoint=request.entrypoint,
                    submission_id=request.job_id,
                    runtime_env=runtime_env.to_ray(),
                    metadata=request.metadata,
                    entrypoint_num_cpus=driver.cpus,
                    entrypoint_num_gpus=driver.gpus,
                    entrypoint_memory=driver.memory or None,
                )
        except AlreadyExists:  # submitted before a crash: adopt it
            return request.job_id

    def ensure_package(self, package: CodePackage, job_id: str) -> str:
        """The package in the Ray cluster's own package store, uploaded once: its ``gcs://_ray_pkg_<sha256>.zip``.

        Through the Jobs API's package routes, as Ray's job client uploads a working_dir (``JobSubmissionClient.
        _package_exists`` / ``_upload_package``, Ray 2.60 ``dashboard/modules/dashboard_sdk.py``); asking whether
        it exists also pins it in Ray for a while, so it outlives the submit that follows.
        """
        uri = package.gcs_uri
        with ray_errors("cannot check the code package of", job_id):
            if self.client._package_exists(uri):
                return uri
        with tempfile.TemporaryDirectory(prefix="testbed-package-") as folder:
            path = package.location
            try:
                if "://" in path:  # object storage: copy it here first
                    path = f"{folder}/{package.sha256}.zip"
                    with fsspec.open(package.location, "rb") as source, open(path, "wb") as target:
                        shutil.copyfileobj(source, target, 2**20)
                open(path, "rb").close()
            except OSError as exc:  # gone for good, or the store does not answer now
                error = PermanentBackendError if isinstance(exc, FileNotFoundError) else BackendError
                raise error(
                    f"the code package of {job_id} cannot be read from the tenant's storage "
                    f"({package.location}): {exc.strerror or exc}"
                ) from None
            with ray_errors("cannot upload the code package of", job_id):
                self.client._upload_package(uri, path, include_gitignore=False, is_file=True)
        return uri

    def info(self, ref: str) -> BackendJobInfo:
        with ray_errors("Ray Jobs API error for", ref):
            info = self.client.get_job_info(ref)
        if JobStatus(str(info.status.value if hasattr(info.status, "value") else info.status)).terminal:
            self.logins.remove(ref)  # the job ended: its login file goes
        return BackendJobInfo(
            status=JobStatus(str(info.status.value if hasattr(info.status, "value") else info.status)),
            message=info.message or "",
            start_time=info.start_time / 1000 if info.start_time else None,
            end_time=info.end_time / 1000 if info.end_time else None,
            # The supervisor records the driver's node when it starts the driver, its exit code when it ends.
            ran=bool(getattr(info, "driver_node_id", None)) or getattr(info, "driver_exit_code", None) is not None,
        )

    def logs(self, ref: str) -> str:
        with ray_errors("cannot read logs of", ref):
            return self.client.get_job_logs(ref)

    def stop(self, ref: str) -> None:
        with ray_errors("cannot stop", ref):
            self.client.stop_job(ref)

    def capacity(self) -> Capacity:
        return self._capacity

    def healthy(self) -> bool:
        try:
            self.client.get_version()  # cheap, unlike listing every job
            return True
        except Exception:
            return False
