"""Provenance of ``schema_d058584.*.sql``: builds a database with the schema and data of commit d058584.

Run with that commit's code first on PYTHONPATH: ``python make_snapshot_d058584.py sqlite:///old.sqlite``
(for PostgreSQL, a postgresql:// URL, then ``pg_dump --no-owner --no-privileges --inserts``). Not a test.
"""

import sys
from operators.control_plane.db.store import JobRow, Store
from operators.control_plane.tokens import issue_token
from operators.control_plane.db.ledger import Ledger

url = sys.argv[1]
store = Store(url)
Ledger(store).install()
for subject in ("changwon-precision", "gimhae-robotics", "operator"):
    issue_token(store, subject)
T0 = 1_780_000_000.0


def job(i, tenant, status, started, ended, cpus, gpus, model, logs=None, message=""):
    store.add_job(
        JobRow(
            id=f"job-snapshot{i:06d}",
            tenant=tenant,
            region="gyeongnam",
            name=f"run{i}",
            experiment=f"{tenant}/run{i}",
            status="RUNNING" if started else "PENDING",
            entrypoint="python train.py --lr 0.01",
            template=None if i % 2 else "predictive-maintenance",
            spec={"cpus": cpus, "gpus": gpus, "params": {"epochs": i}, "kind": "train"},
            cpus=cpus,
            gpus=gpus,
            gpu_model=model,
            memory_bytes=(i + 1) * 2**30,
            submitted_at=T0 + i,
            started_at=started,
            last_seen_at=started,
            dispatched=started is not None,
            backend_ref=f"job-snapshot{i:06d}" if started else None,
            message="queued" if not started else "",
        )
    )
    if status not in ("RUNNING", "PENDING"):
        store.update_job(f"job-snapshot{i:06d}", status=status, ended_at=ended, logs=logs, message=message)


job(
    1,
    "changwon-precision",
    "SUCCEEDED",
    T0 + 10,
    T0 + 110,
    2.0,
    1,
    "l4",
    logs="epoch 1 loss 0.5\nepoch 2 loss 0.3\n한글 로그\n",
)
job(2, "changwon-precision", "FAILED", T0 + 20, T0 + 50, 1.5, 0, None, logs="Traceback: boom\n", message="exit code 1")
job(3, "gimhae-robotics", "STOPPED", T0 + 30, T0 + 90, 4.0, 2, "a100", logs="partial\n", message="stopped")
job(4, "gimhae-robotics", "STOPPED", None, T0 + 40, 1.0, 0, None, logs="", message="stopped before it started")
job(5, "gimhae-robotics", "SUCCEEDED", T0 + 60, T0 + 360, 8.0, 0, None, logs="done\n")
job(6, "changwon-precision", "RUNNING", T0 + 70, None, 2.0, 1, "l4")
job(7, "gimhae-robotics", "PENDING", None, None, 1.0, 0, None)
store.close()
