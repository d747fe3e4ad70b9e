"""In a cluster a job is priced by all its pods as Kueue counts them (head, workers, submitter), not its spec.

The KubeRay backend is built against fake Kubernetes APIs (no API server); its ``pod_requests`` give the total.
The quote's hold and the job's charges are checked against that total x the pool's price x the time, by hand.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import yaml

from infra.addons.control_plane import render_placement
from operators.control_plane.admission import Admission
from operators.control_plane.auth import Principal
from operators.control_plane.backends.base import Resources
from operators.control_plane.backends.kuberay import RayJobOptions, resolve_targets
from operators.control_plane.backends.kuberay_backend import KubeRayBackend
from operators.control_plane.backends.noop import NoopBackend
from operators.control_plane.db.ledger import Ledger
from operators.control_plane.db.models import JobRow
from operators.control_plane.db.money import MoneyLedger
from operators.control_plane.db.pricing import JobShape
from operators.control_plane.db.store import Store
from tests.control_plane.kube_fakes import FakeCore, FakeCustomObjects
from tests.stack_files import REAL_STACK_DIR
from testbed.config import load_region, pricing_pool
from testbed.jobs import JobSpec
from testbed.money import KST, LedgerKind, round_half_up
from testbed.placement import Placement
from testbed.settings import ControlPlaneSettings

GIB = 2**30
STACK = load_region("gyeongnam", REAL_STACK_DIR)  # the real region: its sample prices and grants
TENANT = "changwon-precision"
T0 = dt.datetime(2026, 10, 5, 10, 0, tzinfo=KST).timestamp()  # inside the grant; the 2026-03-01 prices in force
SETTINGS = ControlPlaneSettings(
    stack_file=REAL_STACK_DIR / "Pulumi.gyeongnam.yaml",
    database_url="sqlite://",
    mlflow_tracking_uri="http://127.0.0.1:1",
    storage_path="/nonexistent",
)
SPEC = JobSpec(entrypoint="python train.py", cpus=4, gpus=1, memory="16Gi", max_runtime_seconds=7200)


def admission_on(backend, store: Store, backend_name: str) -> tuple[Admission, MoneyLedger]:
    money = MoneyLedger(store, STACK, lambda tenant: pricing_pool(STACK, tenant, backend_name))
    money.install()
    return Admission(STACK, store, backend, Ledger(store), SETTINGS, None, money), money  # type: ignore[arg-type]


def exact_hold(total: Resources, rates, seconds: int) -> int:
    """total x price x seconds, by hand: per hour GPU + CPU + GiB rates."""
    per_hour = (
        Fraction(total.gpus * rates.gpu_hour_krw)
        + Fraction(total.cpus) * rates.cpu_hour_krw
        + Fraction(total.memory, GIB) * rates.gib_hour_krw
    )
    return round_half_up(per_hour * seconds / 3600)


def test_a_cluster_quote_holds_the_pod_total_and_charges_price_it(store):
    targets = resolve_targets(Placement.model_validate(yaml.safe_load(render_placement(STACK))), STACK)
    backend = KubeRayBackend(targets, RayJobOptions(), custom_api=FakeCustomObjects(), core_api=FakeCore())
    admission, money = admission_on(backend, store, "kuberay")
    tenant = STACK.tenant(TENANT)
    need = backend.pod_requests(Resources(cpus=SPEC.cpus, gpus=SPEC.gpus, memory=SPEC.memory))
    assert need.overhead and need.total.cpus > SPEC.cpus and need.total.memory > SPEC.memory  # head + submitter
    price = STACK.price_for(pricing_pool(STACK, tenant, "kuberay"), T0)
    quote = admission.quote(Principal(subject=TENANT, role="tenant"), SPEC, now=T0)
    assert quote.pool == price.pool and quote.max_runtime_seconds == 7200
    assert quote.hold_krw == exact_hold(need.total, price, 7200)
    assert quote.hold_krw > exact_hold(Resources(cpus=4, gpus=1, memory=16 * GIB), price, 7200)  # more than the spec

    row, hold_krw, balance = admission.admit(Principal(subject=TENANT, role="tenant"), SPEC, now=T0)
    [hold] = money.entries(job_id=row.id, kinds=[LedgerKind.HOLD])
    assert hold.amount_krw == quote.hold_krw == hold_krw
    assert balance == money.balance(TENANT) and balance.held_krw == hold_krw  # as the ledger has it after the write
    assert JobShape.of(store.get_job(row.id)) == JobShape(need.total.cpus, need.total.gpus, need.total.memory, 7200)
    store.update_job(row.id, status="RUNNING", started_at=T0, dispatched=True)
    with store.write_session() as s:  # one hour of running: the pods' total x the price, to the won
        money.accrue(s, s.get(JobRow, row.id), T0 + 3600, T0 + 3600)
    assert sum(e.amount_krw for e in money.entries(job_id=row.id, kinds=[LedgerKind.CHARGE])) == exact_hold(
        need.total, price, 3600
    )


def test_locally_the_spec_is_what_is_priced(store):
    admission, _ = admission_on(NoopBackend(), store, "noop")
    price = STACK.price_for("local", T0)
    quote = admission.quote(Principal(subject=TENANT, role="tenant"), SPEC, now=T0)
    assert quote.hold_krw == exact_hold(Resources(cpus=4, gpus=1, memory=16 * GIB), price, 7200) == 6152
