"""The ledger: allocated resource-seconds of finished, failed, stopped and running jobs."""

from __future__ import annotations


import pytest

from operators.control_plane.db.store import Store
from operators.control_plane.db.ledger import Ledger, fold_jobs
from operators.control_plane.db.models import JobRow, UsageTotalRow
from .helpers import add_job

GIB = 2**30
T0 = 1_780_000_000.0


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "STOPPED"])
def test_finished_jobs_are_metered_start_to_end_whatever_their_status(
    store: Store, ledger: Ledger, status: str
) -> None:
    add_job(store, "a", status, started=T0, ended=T0 + 100, cpus=2, gpus=1, gpu_model="l4", memory=4 * GIB)
    meter = ledger.snapshot(now=T0 + 10_000)["a"]
    assert meter.cpu_seconds == pytest.approx(200)
    assert meter.gpu_seconds == {"l4": pytest.approx(100)}
    assert meter.memory_byte_seconds == pytest.approx(400 * GIB)
    assert meter.jobs[status] == 1 and sum(meter.jobs.values()) == 1


def test_job_stopped_before_it_started_costs_nothing_but_counts(store: Store, ledger: Ledger) -> None:
    add_job(store, "a", "STOPPED", started=None, ended=T0, cpus=4, gpus=2, gpu_model="a100")
    meter = ledger.snapshot(now=T0 + 100)["a"]
    assert (meter.cpu_seconds, meter.gpu_seconds_total, meter.memory_byte_seconds) == (0, 0, 0)
    assert meter.jobs["STOPPED"] == 1


def test_running_job_is_metered_up_to_when_it_was_last_seen_running(store: Store, ledger: Ledger) -> None:
    add_job(store, "a", "RUNNING", started=T0, last_seen=T0 + 50, cpus=3, gpus=2, gpu_model="a100")
    meter = ledger.snapshot(now=T0 + 50.2)["a"]
    assert meter.cpu_seconds == pytest.approx(150)
    assert meter.gpu_seconds == {"a100": pytest.approx(100)}
    assert meter.jobs["RUNNING"] == 1
    # never past now, whatever last_seen says
    assert ledger.snapshot(now=T0 + 20)["a"].cpu_seconds == pytest.approx(60)


def test_pending_job_costs_nothing(store: Store, ledger: Ledger) -> None:
    add_job(store, "a", "PENDING", started=None, cpus=8)
    meter = ledger.snapshot(now=T0)["a"]
    assert meter.cpu_seconds == 0 and meter.jobs["PENDING"] == 1


def test_metering_never_goes_back_when_a_running_job_ends(store: Store, ledger: Ledger) -> None:
    job = add_job(store, "a", "RUNNING", started=T0, last_seen=T0 + 30, cpus=2)
    running = ledger.snapshot(now=T0 + 30.1)["a"].cpu_seconds
    # the backend reports an end time after the last time we saw it running
    store.update_job(job, status="SUCCEEDED", ended_at=T0 + 30.2)
    finished = ledger.snapshot(now=T0 + 31)["a"].cpu_seconds
    assert finished >= running
    assert finished == pytest.approx(2 * 30.2)


def test_terminal_hook_folds_each_job_once(store: Store, ledger: Ledger) -> None:
    job = add_job(store, "a", "SUCCEEDED", started=T0, ended=T0 + 10, cpus=1)
    store.update_job(job, status="FAILED", ended_at=T0 + 999)  # a terminal record is final
    ledger.install()  # installing twice does not register the hook twice
    assert store.on_terminal.count(fold_jobs) == 1
    meter = ledger.snapshot(now=T0 + 2000)["a"]
    assert meter.cpu_seconds == pytest.approx(10) and meter.jobs["SUCCEEDED"] == 1 and meter.jobs["FAILED"] == 0


def test_two_tenants_are_metered_independently(store: Store, ledger: Ledger) -> None:
    add_job(store, "a", "SUCCEEDED", started=T0, ended=T0 + 100, cpus=1, gpus=1, gpu_model="l4")
    add_job(store, "a", "RUNNING", started=T0, last_seen=T0 + 100, cpus=1)
    add_job(store, "b", "FAILED", started=T0, ended=T0 + 10, cpus=4, gpus=2, gpu_model="a100")
    add_job(store, "b", "SUCCEEDED", started=T0, ended=T0 + 20, cpus=4, gpus=1, gpu_model="l4")
    meters = ledger.snapshot(now=T0 + 100)
    assert meters["a"].cpu_seconds == pytest.approx(200)
    assert meters["a"].gpu_seconds == {"l4": pytest.approx(100)}
    assert meters["b"].cpu_seconds == pytest.approx(120)
    assert meters["b"].gpu_seconds == {"a100": pytest.approx(20), "l4": pytest.approx(20)}
    assert ledger.snapshot(now=T0 + 100, tenants=["b"]).keys() == {"b"}


def test_rebuild_matches_the_hook_and_backfills_jobs_from_before_metering(store: Store) -> None:
    for i, status in enumerate(["SUCCEEDED", "FAILED", "STOPPED", "SUCCEEDED"]):
        add_job(store, f"t{i % 2}", status, started=T0, ended=T0 + 10 * (i + 1), cpus=i + 1, gpus=i % 2, gpu_model="l4")
    ledger = Ledger(store)  # jobs ended before the hook existed
    assert ledger.snapshot(now=T0 + 100) == {}
    ledger.install()
    folded = ledger.snapshot(now=T0 + 100)
    ledger.rebuild()
    assert ledger.snapshot(now=T0 + 100) == folded
    assert folded["t0"].cpu_seconds == pytest.approx(1 * 10 + 3 * 30)
    assert folded["t1"].gpu_seconds == {"l4": pytest.approx(20 + 40)}
    with store.session() as s:
        assert s.query(UsageTotalRow).count() == 2  # one small row per tenant and GPU model


def test_ledger_survives_a_new_store_on_the_same_database(tmp_path) -> None:
    """A control-plane restart: totals live in the database, not in the process."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = Store(url)
    Ledger(first).install()
    job = add_job(first, "a", "RUNNING", started=T0, last_seen=T0 + 5, cpus=2)
    first.close()
    second = Store(url)
    ledger = Ledger(second)
    ledger.install()
    second.update_job(job, status="SUCCEEDED", ended_at=T0 + 60)
    assert ledger.snapshot(now=T0 + 100)["a"].cpu_seconds == pytest.approx(120)
    second.close()


def test_gpu_burn_series_is_cumulative(store: Store, ledger: Ledger) -> None:
    add_job(store, "a", "SUCCEEDED", started=T0, ended=T0 + 100, gpus=2, gpu_model="l4")
    add_job(store, "a", "RUNNING", started=T0 + 50, last_seen=T0 + 150, gpus=1, gpu_model="l4")
    add_job(store, "a", "SUCCEEDED", started=T0, ended=T0 + 100, cpus=8)  # CPU only: not in the GPU burn
    series = ledger.gpu_burn(now=T0 + 200)["a"]
    assert series == [(T0, 0.0), (T0 + 50, 100.0), (T0 + 100, 250.0), (T0 + 150, 300.0)]
    assert series[-1][1] == pytest.approx(ledger.snapshot(now=T0 + 200)["a"].gpu_seconds_total)


def test_snapshot_counts_every_job_of_every_tenant(store: Store, ledger: Ledger) -> None:
    """Its time per scrape is a benchmark figure (bench_exposition.py), not asserted here."""
    for i in range(200):
        add_job(store, f"t{i % 20}", "SUCCEEDED", started=T0, ended=T0 + 1, cpus=1)
    meters = ledger.snapshot()
    assert len(meters) == 20
    assert sum(m.jobs["SUCCEEDED"] for m in meters.values()) == 200


def test_jobs_ending_in_one_sync_round_are_all_folded(store: Store, ledger: Ledger) -> None:
    """The control plane's batched sync ends many jobs in one transaction (same tenant and model)."""
    jobs = [
        add_job(store, "a", "RUNNING", started=T0, last_seen=T0 + 5, cpus=1, gpus=1, gpu_model="l4") for _ in range(3)
    ]
    store.update_jobs({job: {"status": "SUCCEEDED", "ended_at": T0 + 10 * (i + 1)} for i, job in enumerate(jobs)})
    meter = ledger.snapshot(now=T0 + 100)["a"]
    assert meter.gpu_seconds == {"l4": pytest.approx(10 + 20 + 30)}
    assert meter.jobs["SUCCEEDED"] == 3 and meter.jobs["RUNNING"] == 0


def test_jobs_ending_in_one_sync_batch_are_each_folded_once(store: Store, ledger: Ledger) -> None:
    jobs = [
        add_job(store, "a", "RUNNING", started=T0, cpus=2, gpus=1, gpu_model="l4"),
        add_job(store, "a", "RUNNING", started=T0, cpus=1),
        add_job(store, "b", "RUNNING", started=T0, cpus=4, gpus=2, gpu_model="l4"),
        add_job(store, "b", "PENDING", started=None, cpus=1),
    ]
    with store.write_session() as s:  # one folded already (another replica got there first): not counted again
        done = JobRow(id=jobs[1], tenant="a", status="SUCCEEDED", cpus=1, gpus=0, memory_bytes=0, started_at=T0)
        done.ended_at = T0 + 5
        fold_jobs(s, [done])
    store.update_jobs(
        {
            jobs[0]: {"status": "SUCCEEDED", "ended_at": T0 + 100},
            jobs[1]: {"status": "SUCCEEDED", "ended_at": T0 + 50},  # folded before: its first fold stands
            jobs[2]: {"status": "FAILED", "ended_at": T0 + 10},
            jobs[3]: {"status": "STOPPED", "ended_at": T0 + 10},
        }
    )
    meters = ledger.snapshot(now=T0 + 1000)
    assert meters["a"].jobs["SUCCEEDED"] == 2 and meters["a"].cpu_seconds == pytest.approx(2 * 100 + 1 * 5)
    assert meters["a"].gpu_seconds == {"l4": pytest.approx(100)}
    assert meters["b"].jobs["FAILED"] == 1 and meters["b"].jobs["STOPPED"] == 1
    assert meters["b"].cpu_seconds == pytest.approx(40) and meters["b"].gpu_seconds == {"l4": pytest.approx(20)}
