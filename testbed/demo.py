"""The main story on one machine: two companies of a region train and validate, tracked and metered.

``testbed demo`` (``make demo``): start the local testbed, submit each tenant's jobs with its own
token, wait with progress, print each job's result and MLflow run link, the champion model, the
metered use per tenant, and how to open the dashboards and stop.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from testbed.client import TestbedClient, TestbedError
from testbed.config import StackConfig, load_region
from testbed.local import LocalTestbed, LocalTestbedError
from testbed.progress import JobProgress, say


@dataclass(frozen=True)
class Step:
    """One job of a tenant's story."""

    template: str
    params: dict[str, Any] = field(default_factory=dict)
    cpus: float = 1


# Which template each industry's company runs first; validation follows every training.
INDUSTRY_TEMPLATES = {
    "machinery": "predictive-maintenance",
    "aerospace": "defect-inspection",
    "defense": "defect-inspection",
    "manufacturing": "defect-inspection",
    "materials-parts-equipment": "defect-inspection",
    "renewable-energy": "power-forecast",
    "food": "tabular-quality",
    "beauty": "tabular-quality",
    "bio": "tabular-quality",
    "healthcare": "tabular-quality",
}
DEFAULT_TEMPLATE = "tabular-quality"
# Small enough that both companies' jobs finish in a minute or two on 2 CPUs.
DEMO_PARAMS = {
    "predictive-maintenance": {"epochs": 4},
    "defect-inspection": {"epochs": 4, "samples": 800},
    "power-forecast": {"epochs": 4},
    "tabular-quality": {"epochs": 4},
}


def _story_for(industry: str, available: set[str]) -> list[Step]:
    template = INDUSTRY_TEMPLATES.get(industry, DEFAULT_TEMPLATE)
    if template not in available:
        return [Step("smoke", {"epochs": 3})]
    steps = [Step(template, DEMO_PARAMS.get(template, {}))]
    if "validate" in available:
        steps.append(Step("validate", {"model": template}))
    return steps


def pick_tenants(stack: StackConfig, count: int = 2) -> list[Any]:
    """The first tenants of distinct industries (so the story shows two kinds of work)."""
    chosen, industries = [], set()
    for tenant in stack.tenants:
        if tenant.industry not in industries:
            chosen.append(tenant)
            industries.add(tenant.industry)
        if len(chosen) == count:
            return chosen
    return (chosen + [t for t in stack.tenants if t not in chosen])[:count]


def _run_link(mlflow_url: str, job: dict[str, Any]) -> str:
    """The MLflow run tagged with this job id, as a browser link (or why there is none)."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_url)
        experiment = client.get_experiment_by_name(job["experiment"])
        if experiment is None:
            return "(no MLflow experiment)"
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`testbed.job_id` = '{job['id']}'")
        if not runs:
            return "(no MLflow run)"
        return f"{mlflow_url}/#/experiments/{experiment.experiment_id}/runs/{runs[0].info.run_id}"
    except Exception as exc:  # the link is a convenience; the job result stands without it
        return f"(MLflow not reachable: {exc})"


def _last_line(text: str, prefix: str | tuple[str, ...]) -> str | None:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return lines[-1] if lines else None


def run_demo(region: str = "gyeongnam", timeout: float = 900.0, json_output: bool = False) -> int:
    started = time.monotonic()
    stack = load_region(region)
    local = LocalTestbed(progress=say)
    say(f"starting the local testbed for region {region} in {local.home}")
    try:
        status = local.up(region=region)
    except LocalTestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return 1
    say(f"testbed healthy after {time.monotonic() - started:.1f}s")
    from testbed.templates import list_templates

    available = {t.name for t in list_templates()}
    tenants = pick_tenants(stack)
    stories = {t.id: _story_for(t.industry, available) for t in tenants}
    clients = {t.id: TestbedClient(status.control_plane_url, local.token(t.id)) for t in tenants}
    results = []
    # Step by step, the tenants' jobs run side by side (each on its own quota and token).
    for index in range(max(len(steps) for steps in stories.values())):
        batch = []
        for tenant in tenants:
            if index >= len(stories[tenant.id]):
                continue
            step = stories[tenant.id][index]
            say(f"{tenant.name} [{tenant.industry}] submits {step.template} {step.params}")
            job = clients[tenant.id].submit(template=step.template, params=step.params, cpus=step.cpus)
            batch.append((tenant, step, job))
        try:
            finished = _wait_all(clients, batch, timeout)
        except TestbedError as exc:
            print(f"testbed: error: {exc}", file=sys.stderr)
            return 1
        for (tenant, step, _), job in zip(batch, finished):
            logs = clients[tenant.id].logs(job["id"])
            results.append({
                "tenant": tenant.id, "company": tenant.name, "template": step.template, "job_id": job["id"],
                "status": job["status"], "mlflow_run": _run_link(status.mlflow_url, job),
                "verdict": _last_line(logs, ("PASS ", "FAIL ", "result:")),
                "seconds": _seconds(job),
            })
    usage = _usage(status.control_plane_url, local.token("operator"), [t.id for t in tenants])
    wall = time.monotonic() - started
    if json_output:
        print(json.dumps({"region": region, "wall_seconds": round(wall, 1), "jobs": results, "usage": usage,
                          "control_plane_url": status.control_plane_url, "mlflow_url": status.mlflow_url,
                          "ray_dashboard_url": status.ray_dashboard_url}, indent=2))
    else:
        _print_summary(region, results, usage, status, wall, local)
    return 0 if all(_story_ok(r) for r in results) else 1


def _story_ok(result: dict[str, Any]) -> bool:
    """Training must succeed; a validation that refuses promotion (FAIL verdict) is an outcome."""
    if result["template"] == "validate":
        return bool(result["verdict"]) and result["verdict"].startswith(("PASS ", "FAIL "))
    return result["status"] == "SUCCEEDED"


def _wait_all(clients: dict[str, TestbedClient], batch: list, timeout: float) -> list[dict[str, Any]]:
    """Wait for every job of a batch, printing each one's progress; jobs in batch order."""
    deadline = time.monotonic() + timeout
    reporters = {job["id"]: JobProgress(f"{tenant.id} {step.template} {job['id']}") for tenant, step, job in batch}
    pending = {job["id"]: tenant.id for tenant, _, job in batch}
    done: dict[str, dict[str, Any]] = {}
    while pending:
        for job_id, tenant_id in list(pending.items()):
            job = clients[tenant_id].get_job(job_id)
            reporters[job_id].update(job)
            if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                done[job_id] = job
                del pending[job_id]
        if pending and time.monotonic() > deadline:
            raise TestbedError(f"jobs {', '.join(pending)} still running after {timeout:g}s")
        time.sleep(0.5)
    for reporter in reporters.values():
        reporter.done()
    return [done[job["id"]] for _, _, job in batch]


def _seconds(job: dict[str, Any]) -> float | None:
    from datetime import datetime

    if not job.get("started_at") or not job.get("ended_at"):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return round((parse(job["ended_at"]) - parse(job["started_at"])).total_seconds(), 1)


def _usage(url: str, operator_token: str, tenants: list[str]) -> list[dict[str, Any]]:
    try:
        with TestbedClient(url, operator_token) as client:
            report = client.get_json("/v1/usage")
    except TestbedError as exc:
        return [{"error": str(exc)}]
    rows = report.get("tenants", []) if isinstance(report, dict) else []
    return [
        {"tenant": r["tenant"], "cpu_hours": round(r.get("cpu_seconds", 0) / 3600, 4),
         "gpu_hours": round(r.get("gpu_hours", 0), 4), "jobs": r.get("jobs", {})}
        for r in rows if r.get("tenant") in tenants
    ]


def _print_summary(region: str, results: list[dict], usage: list[dict], status: Any, wall: float, local: LocalTestbed) -> None:
    print(f"\nRegional AI Testbed demo — region {region} (sample companies are fictional)\n")
    for r in results:
        print(f"  {r['company']:<34} {r['template']:<24} {r['status']:<10} {r['seconds'] or '-'}s  {r['job_id']}")
        if r["verdict"]:
            print(f"      {r['verdict']}")
        print(f"      MLflow run: {r['mlflow_run']}")
    print("\n  Metered use (allocated, per tenant):")
    for u in usage:
        if "error" in u:
            print(f"    usage not available: {u['error']}")
        else:
            print(f"    {u['tenant']:<24} CPU-hours {u['cpu_hours']:<8} GPU-hours {u['gpu_hours']:<8} jobs {u['jobs']}")
    print(f"\n  Demo wall time: {wall:.1f}s")
    print("\n  Open:")
    print(f"    MLflow          {status.mlflow_url}")
    print(f"    Ray dashboard   {status.ray_dashboard_url}  (it asks for the Ray token in {local.ray_token_file})")
    print(f"    Control plane   {status.control_plane_url}/docs")
    print("  Try it as a tenant:")
    print(f"    export TESTBED_TOKEN=$(.venv/bin/testbed tenants token {results[0]['tenant'] if results else '<tenant>'})")
    print("    .venv/bin/testbed templates list && .venv/bin/testbed jobs list && .venv/bin/testbed usage")
    print("  Stop everything:  .venv/bin/testbed down   (or: make down)")
