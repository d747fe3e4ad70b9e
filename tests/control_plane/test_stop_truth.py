"""A job stopped while starting is recorded with what Ray did (real local testbed): if its entrypoint ran, its
output is kept and it is billed from when Ray reported it started; if not, it bills nothing."""

from __future__ import annotations

import pytest

ALICE = "changwon-precision"
pytestmark = pytest.mark.integration


def test_a_job_stopped_right_after_submission_is_recorded_as_ray_ran_it(local_testbed):
    alice = local_testbed.client(ALICE)
    outcomes = []
    for _ in range(3):
        job = alice.submit(
            entrypoint="python -c \"print('ENTRYPOINT STARTED', flush=True); import time; time.sleep(30)\""
        )
        stopped = alice.stop(job.id)
        final = alice.wait(job.id, timeout=60)
        logs = alice.logs(job.id)
        assert final.status == "STOPPED" and logs.final, (final, stopped)
        ran = "ENTRYPOINT STARTED" in logs.logs
        # the truth either way: an entrypoint that printed ran, so it is billed from its start with its output kept;
        # a job recorded as never run printed nothing
        assert not ran or final.started_at is not None, (final, logs.logs[-500:])
        if final.started_at is None:
            assert "before it ran" in final.message and not ran
        outcomes.append(ran)
    print(f"stopped right after submission, the entrypoint had run in {sum(outcomes)} of {len(outcomes)}")
