"""The Ray Jobs backend against a fake JobSubmissionClient: what it sends, and how every Ray SDK
failure is translated (in one place) into JobNotFound, adoption, or BackendError."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from operators.control_plane.backends.base import (
    NO_RESOURCES,
    AlreadyExists,
    BackendError,
    JobNotFound,
    LaunchRequest,
    PermanentBackendError,
    Resources,
    RuntimeEnv,
)
from operators.control_plane.backends.ray_jobs import RayJobsBackend, translate_ray_error
from testbed.jobs import JobStatus

GIB = 2**30
# What Ray's SDK raises (dashboard_sdk._raise_error, job_manager): status code and server text.
MISSING = RuntimeError("Request failed with status code 404: Job job-1 does not exist.")
DUPLICATE = RuntimeError(
    "Request failed with status code 400: Traceback (most recent call last):\n"
    "ValueError: Job with submission_id job-1 already exists. Please use a different submission_id."
)
BROKEN = RuntimeError("Request failed with status code 500: Internal Server Error\nmore lines")


class FakeClient:
    """Records calls; raises ``fail`` from every call when set."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.calls: list[tuple[str, dict]] = []

    def _call(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if self.fail is not None:
            raise self.fail

    def submit_job(self, **kwargs):
        self._call("submit_job", **kwargs)
        return kwargs["submission_id"]

    def get_job_info(self, ref):
        self._call("get_job_info", ref=ref)
        return SimpleNamespace(status=JobStatus.RUNNING, message="running", start_time=1_000_000, end_time=None)

    def get_job_logs(self, ref):
        self._call("get_job_logs", ref=ref)
        return "hello\n"

    def stop_job(self, ref):
        self._call("stop_job", ref=ref)
        return True


def backend_with(client: FakeClient) -> RayJobsBackend:
    backend = RayJobsBackend("http://127.0.0.1:1")
    backend._client = client
    return backend


def request(template: bool = False) -> LaunchRequest:
    budget = Resources(cpus=2, gpus=1, memory=4 * GIB)
    return LaunchRequest(
        job_id="job-1",
        tenant="acme",
        region="gyeongnam",
        entrypoint="python train.py",
        budget=budget,
        driver=NO_RESOURCES if template else budget,
        runtime_env=RuntimeEnv(env_vars={"A": "1"}, working_dir="pkg://code"),
    )


@pytest.mark.parametrize("template", [False, True])
def test_submit_sends_the_runtime_env_metadata_and_the_driver_share(template):
    client = FakeClient()
    assert backend_with(client).submit(request(template)) == "job-1"
    [(name, kwargs)] = client.calls
    assert kwargs["submission_id"] == "job-1" and kwargs["entrypoint"] == "python train.py"
    assert kwargs["runtime_env"] == {"env_vars": {"A": "1"}, "working_dir": "pkg://code"}
    assert kwargs["metadata"] == {"testbed.tenant": "acme", "testbed.job_id": "job-1", "testbed.region": "gyeongnam"}
    expected = (0, 0, None) if template else (2, 1, 4 * GIB)
    assert (kwargs["entrypoint_num_cpus"], kwargs["entrypoint_num_gpus"], kwargs["entrypoint_memory"]) == expected


def test_a_job_submitted_before_a_crash_is_adopted():
    assert backend_with(FakeClient(fail=DUPLICATE)).submit(request()) == "job-1"


@pytest.mark.parametrize("call", ["info", "logs", "stop"])
def test_every_call_says_job_not_found_for_a_forgotten_job(call):
    with pytest.raises(JobNotFound, match="Ray does not know job job-1"):
        getattr(backend_with(FakeClient(fail=MISSING)), call)("job-1")


@pytest.mark.parametrize(
    ("call", "prefix"),
    [
        ("info", "Ray Jobs API error for job-1"),
        ("logs", "cannot read logs of job-1"),
        ("stop", "cannot stop job-1"),
        ("submit", "Ray refused job job-1"),
    ],
)
def test_other_failures_are_backend_errors_with_one_line(call, prefix):
    backend = backend_with(FakeClient(fail=BROKEN))
    with pytest.raises(BackendError) as err:
        backend.submit(request()) if call == "submit" else getattr(backend, call)("job-1")
    assert not isinstance(err.value, (JobNotFound, AlreadyExists))
    assert str(err.value) == f"{prefix}: Request failed with status code 500: Internal Server Error"


def test_translation_keeps_backend_errors_and_names_empty_messages():
    unreachable = BackendError("Ray Jobs API at http://x is not reachable")
    assert translate_ray_error(unreachable, "cannot stop", "job-1") is unreachable
    assert str(translate_ray_error(TimeoutError(), "cannot stop", "job-1")) == "cannot stop job-1: TimeoutError"
    assert isinstance(translate_ray_error(MISSING, "cannot stop", "job-1"), JobNotFound)
    assert isinstance(translate_ray_error(DUPLICATE, "Ray refused job", "job-1"), AlreadyExists)


def test_info_maps_ray_times_to_seconds():
    info = backend_with(FakeClient()).info("job-1")
    assert (info.status, info.message, info.start_time, info.end_time) == (JobStatus.RUNNING, "running", 1000.0, None)


def test_launch_request_refuses_a_driver_share_beyond_the_budget():
    with pytest.raises(ValueError, match="exceeds the job's budget"):
        LaunchRequest(
            job_id="job-1",
            tenant="acme",
            region="gyeongnam",
            entrypoint="true",
            budget=Resources(cpus=1, gpus=0, memory=GIB),
            driver=Resources(cpus=2, gpus=0, memory=GIB),
        )


BAD_RUNTIME_ENV = RuntimeError(
    "Request failed with status code 400: Traceback (most recent call last):\n"
    '  File "job_head.py", line 1\n'
    "ValueError: runtime_env field 'pip' must be a list of strings"
)


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (BAD_RUNTIME_ENV, "ValueError: runtime_env field 'pip' must be a list of strings"),
        (
            RuntimeError("Request failed with status code 413: Request Entity Too Large"),
            "Request failed with status code 413: Request Entity Too Large",
        ),
        (ValueError("working_dir must be an existing directory"), "working_dir must be an existing directory"),
    ],
)
def test_a_refusal_that_cannot_change_is_permanent(failure, reason):
    with pytest.raises(PermanentBackendError) as err:
        backend_with(FakeClient(fail=failure)).submit(request())
    assert str(err.value) == f"Ray refused job job-1: {reason}"


def test_timing_failures_stay_transient():
    for failure in (BROKEN, RuntimeError("Request failed with status code 429: Too Many Requests"), TimeoutError()):
        err = translate_ray_error(failure, "Ray refused job", "job-1")
        assert type(err) is BackendError


def test_info_says_whether_the_driver_ever_started():
    client = FakeClient()
    client.get_job_info = lambda ref: SimpleNamespace(  # a job whose supervisor never started
        status="FAILED",
        message="Job supervisor actor failed to start within 900.0 seconds.",
        start_time=1_000_000,
        end_time=1_900_000,
        driver_node_id=None,
        driver_exit_code=None,
    )
    assert backend_with(client).info("job-1").ran is False
    client.get_job_info = lambda ref: SimpleNamespace(
        status="FAILED", message="exit 3", start_time=1, end_time=2, driver_node_id="abc", driver_exit_code=3
    )
    assert backend_with(client).info("job-1").ran is True
