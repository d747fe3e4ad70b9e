"""What MLflow access control costs a training job.

The same training-like run -- 5 params, 300 steps x 3 metrics through the client, one small
artifact -- against two local servers started the same way
(SQLite, proxied artifacts, one worker): today's open server and the one with access control
(basic-auth + workspaces + guard, as ``testbed.mlflow_server`` renders it),
logging as a provisioned tenant. Rounds alternate which server goes first; medians of ``--rounds``
(>= 5) per server, in this one process.

``mlflow_auth_overhead_ratio`` (target <= 1.10): metrics logged synchronously, one ``log_metrics``
call (one HTTP request) per step and no compute between steps -- the worst case for a per-request
check. ``mlflow_auth_overhead_ratio_async``: the same with ``synchronous=False``, which is how
``workloads/worker.py`` logs per-epoch metrics (the run's time includes draining the queue at
``end_run``).

``mlflow_auth_overhead_ratio_mlflow_app``: the same access control served by MLflow's own ``basic-auth`` app
instead of the testbed's (``testbed.mlflow_app``: the permission middleware skipped for Flask-served requests, the
workspace middleware a plain ASGI layer), measured in the same rounds: what those two layers cost.

``mlflow_auth_overhead_ratio_without_lookup_caches``: the same access control with MLflow's own
credential cache but without the guard's memoized permission lookups (testbed.mlflow_guard:
the run's experiment, the user, the role grants), measured in the same rounds: what they save.

``--no-cache-too`` adds a server with the credential cache off (auth_cache_ttl_seconds=0),
to show why the rendered config turns it on.

Run: ``.venv/bin/python tests/benchmarks/bench_mlflow_auth.py [--rounds N] [--steps N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import mlflow  # noqa: E402
import psutil  # noqa: E402

from tests.mlflow.server import MlflowServer, provision, start_server  # noqa: E402
from tests.mlflow.tenants import identity  # noqa: E402

TENANT = "bench-tenant"


def training_like_run(url: str, experiment: str, steps: int, synchronous: bool = True) -> float:
    """Seconds for one run, from set_experiment to end_run (which waits for async logging)."""
    start = time.perf_counter()
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        mlflow.log_params({"lr": 0.01, "epochs": steps, "batch_size": 32, "width": 64, "template": "bench"})
        for step in range(steps):
            mlflow.log_metrics(
                {"train_loss": 1.0 / (step + 1), "val_loss": 1.1 / (step + 1), "lr": 0.01},
                step=step,
                synchronous=synchronous,
            )
        mlflow.log_text("model summary\n" * 20, "summary.txt")
    return time.perf_counter() - start


def server_cpu_seconds(server: MlflowServer) -> float:
    """CPU time used so far by the server's processes (uvicorn worker included): load-independent."""
    total = 0.0
    root = psutil.Process(server.process.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--no-cache-too", action="store_true")
    args = parser.parse_args()
    rounds = max(5, args.rounds)
    servers: dict[str, MlflowServer] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-auth-") as home:
        try:
            servers["open"] = start_server(Path(home) / "open", secured=False)
            servers["auth"] = start_server(Path(home) / "auth", secured=True)
            servers["auth_mlflow_app"] = start_server(Path(home) / "mlflow_app", secured=True, mlflow_app=True)
            servers["auth_nolookup"] = start_server(Path(home) / "nolookup", secured=True, lookup_caches=False)
            if args.no_cache_too:
                servers["auth_nocache"] = start_server(Path(home) / "nocache", secured=True, auth_cache_ttl_seconds=0)
            creds = {name: provision(s, [TENANT]).tenants[TENANT] if s.secured else None for name, s in servers.items()}
            experiment = f"{TENANT}/bench-{uuid.uuid4().hex[:6]}"
            times: dict[tuple[str, bool], list[float]] = {
                (name, sync): [] for name in servers for sync in (True, False)
            }
            cpu: dict[str, list[float]] = {name: [] for name in servers}
            order = list(servers)
            for round_ in range(rounds + 1):  # round 0 warms up (experiment creation, connections)
                for name in order if round_ % 2 == 0 else order[::-1]:
                    for sync in (True, False):
                        if name in ("auth_nocache", "auth_nolookup", "auth_mlflow_app") and not sync:
                            continue
                        cpu_before = server_cpu_seconds(servers[name])
                        with identity(creds[name]):
                            seconds = training_like_run(servers[name].url, experiment, args.steps, sync)
                        if round_:
                            times[name, sync].append(seconds)
                            if sync:
                                cpu[name].append(server_cpu_seconds(servers[name]) - cpu_before)
        finally:
            for server in servers.values():
                server.stop()
    medians = {key: statistics.median(values) for key, values in times.items() if values}
    requests = args.steps + 8  # synchronous: one per step, plus run/param/artifact/experiment calls
    print(f"mlflow_run_seconds_open={medians['open', True]:.3f}")
    print(f"mlflow_run_seconds_auth={medians['auth', True]:.3f}")
    print(
        f"mlflow_auth_overhead_ms_per_request={(medians['auth', True] - medians['open', True]) / requests * 1000:.2f}"
    )
    for name in servers:
        print(f"mlflow_server_cpu_ms_per_request_{name}={statistics.median(cpu[name]) / requests * 1000:.2f}")
    print(f"mlflow_run_seconds_open_async={medians['open', False]:.3f}")
    print(f"mlflow_run_seconds_auth_async={medians['auth', False]:.3f}")
    if ("auth_nocache", True) in medians:
        print(f"mlflow_run_seconds_auth_nocache={medians['auth_nocache', True]:.3f}")
        print(f"mlflow_auth_nocache_overhead_ratio={medians['auth_nocache', True] / medians['open', True]:.3f}")
    print(f"mlflow_run_seconds_auth_mlflow_app={medians['auth_mlflow_app', True]:.3f}")
    print(f"mlflow_auth_overhead_ratio_mlflow_app={medians['auth_mlflow_app', True] / medians['open', True]:.3f}")
    print(f"mlflow_run_seconds_auth_without_lookup_caches={medians['auth_nolookup', True]:.3f}")
    print(
        f"mlflow_auth_overhead_ratio_without_lookup_caches={medians['auth_nolookup', True] / medians['open', True]:.3f}"
    )
    # Pairs (auth, open) of the same round saw the same machine load: their ratio is less noisy.
    paired = statistics.median(x / y for x, y in zip(times["auth", True], times["open", True]))
    print(f"mlflow_auth_overhead_ratio_paired_median={paired:.3f}")
    print(f"mlflow_auth_overhead_ratio_async={medians['auth', False] / medians['open', False]:.3f}")
    print(f"mlflow_auth_overhead_ratio={medians['auth', True] / medians['open', True]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
