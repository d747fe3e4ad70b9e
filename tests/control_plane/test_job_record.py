"""A job record's billing start is written once: the sync and a request's refresh both observe a starting job, and
the one that read the record before the other wrote it does not move the start afterwards, nor the last time the job
was seen running back (real SQLite)."""

from __future__ import annotations

from tests.job_rows import add_rows, job_row

STARTED, LATER = 1000.0011, 1000.0019  # two observers' estimates of the same start


def test_a_later_observation_from_an_earlier_read_does_not_move_the_start(store):
    add_rows(store, [job_row("job-1", "t1", dispatched=True)])
    store.update_job("job-1", status="RUNNING", started_at=STARTED, last_seen_at=STARTED)  # the first to see it
    row = store.update_job("job-1", status="RUNNING", started_at=LATER, last_seen_at=LATER)  # read it before that
    assert row is not None and row.started_at == STARTED
    ended = store.update_job("job-1", status="SUCCEEDED", started_at=LATER, ended_at=STARTED + 60)
    assert ended is not None and ended.started_at == STARTED
    assert store.get_job("job-1").started_at == STARTED  # what is stored, not only what came back


def test_the_kept_start_is_still_clamped_to_the_end(store):
    add_rows(store, [job_row("job-2", "t1", dispatched=True)])
    store.update_job("job-2", status="RUNNING", started_at=STARTED)
    ended = store.update_job("job-2", status="SUCCEEDED", started_at=LATER, ended_at=STARTED - 0.5)
    assert ended is not None and ended.started_at == ended.ended_at == STARTED - 0.5


def test_a_later_write_of_an_earlier_look_does_not_move_the_last_sighting_back(store):
    add_rows(store, [job_row("job-3", "t1", dispatched=True)])
    store.update_job("job-3", status="RUNNING", started_at=STARTED, last_seen_at=STARTED + 30)  # the sync, now
    row = store.update_job("job-3", status="RUNNING", last_seen_at=STARTED + 10)  # a refresh that looked before
    assert row is not None and row.last_seen_at == STARTED + 30
    assert store.get_job("job-3").last_seen_at == STARTED + 30
    assert store.update_job("job-3", status="RUNNING", last_seen_at=STARTED + 40).last_seen_at == STARTED + 40
