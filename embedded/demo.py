"""The main story on one machine: two companies of a region train and validate, tracked and metered.

``testbed demo`` (``make demo``): start the local testbed, submit each tenant's jobs with its own
token, wait with progress, print each job's result and MLflow run link, the champion model, the
metered use per tenant, and how to open the dashboards and stop.
"""

from __future__ import annotations

import datetime as dt
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from testbed.client import TestbedClient, TestbedError
from testbed.config import StackConfig, Tenant, load_region
from testbed.jobs import Job, JobStatus
from testbed.local_address import default_testbed_home
from embedded import LocalTestbed, TestbedStatus
from testbed.progress import JobProgress, say
from testbed.tables import render_table
from testbed.templates import list_templates
from testbed.usage import TenantUsage, grant_line


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


def pick_tenants(stack: StackConfig, count: int = 2) -> list[Tenant]:
    """The first tenants of distinct industries (so the story shows two kinds of work)."""
    chosen, industries = [], set()
    for tenant in stack.tenants:
        if tenant.industry not in industries:
            chosen.append(tenant)
            industries.add(tenant.industry)
        if len(chosen) == count:
            return chosen
    return (chosen + [t for t in stack.tenants if t not in chosen])[:count]


class DemoJob(BaseModel):
    """One job of the story, as the summary shows it."""

    tenant: str
    company: str
    template: str
    job_id: str
    status: JobStatus
    seconds: float | None = None
    verdict: str | None = None
    mlflow_run: str

    @property
    def ok(self) -> bool:
        """Training must succeed; a validation that refuses promotion (FAIL verdict) is an outcome."""
        if self.template == "validate":
            return (self.verdict or "").startswith(("PASS ", "FAIL "))
        return self.status is JobStatus.SUCCEEDED


class DemoReport(BaseModel):
    """What ``testbed demo --json`` prints."""

    region: str
    wall_seconds: float
    jobs: list[DemoJob]
    usage: list[TenantUsage]
    usage_error: str | None = None
    control_plane_url: str
    mlflow_url: str
    ray_dashboard_url: str


def _run_link(testbed: TestbedClient, job: Job) -> str:
    """The MLflow run tagged with this job id, as a browser link (or why there is none), read with the
    job's tenant's own MLflow login (``GET /v1/mlflow/credentials``)."""
    try:
        from mlflow.tracking import MlflowClient

        with testbed.mlflow_credentials().active() as login:
            client = MlflowClient(login.tracking_uri)
            experiment = client.get_experiment_by_name(job.experiment)
            if experiment is None:
                return "(no MLflow experiment)"
            runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`testbed.job_id` = '{job.id}'")
        if not runs:
            return "(no MLflow run)"
        return (
            f"{login.tracking_uri}/#/experiments/{experiment.experiment_id}/runs/{runs[0].info.run_id}"
            f" (workspace {login.workspace}; log in with `testbed mlflow login`)"
        )
    except Exception as exc:  # the link is a convenience; the job result stands without it
        return f"(MLflow not reachable: {exc})"


def _last_line(text: str, prefix: tuple[str, ...]) -> str | None:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return lines[-1] if lines else None


def _seconds(job: Job) -> float | None:
    if not job.started_at or not job.ended_at:
        return None
    return round(
        (dt.datetime.fromisoformat(job.ended_at) - dt.datetime.fromisoformat(job.started_at)).total_seconds(), 1
    )


def _run_batch(batch: list[tuple[Tenant, Step, TestbedClient]], timeout: float) -> list[Job]:
    """Submit one step of each tenant's story, then wait for all of them side by side, with progress."""
    jobs = []
    for tenant, step, client in batch:
        say(f"{tenant.name} [{tenant.industry}] submits {step.template} {step.params}")
        jobs.append(client.submit(template=step.template, params=step.params, cpus=step.cpus))

    def wait(item: tuple[tuple[Tenant, Step, TestbedClient], Job]) -> Job:
        (tenant, step, client), job = item
        reporter = JobProgress(f"{tenant.id} {step.template} {job.id}")
        try:
            return client.wait(job.id, timeout=timeout, poll=0.5, on_update=reporter.update)
        finally:
            reporter.done()

    with ThreadPoolExecutor(max_workers=len(batch)) as pool:
        return list(pool.map(wait, zip(batch, jobs)))


def _usage(url: str, operator_token: str, tenants: set[str]) -> tuple[list[TenantUsage], str | None]:
    """The demo tenants' metered use, or why it is not available."""
    try:
        with TestbedClient(url, operator_token) as operator:
            return [u for u in operator.usage().tenants if u.tenant in tenants], None
    except TestbedError as exc:
        return [], str(exc)


def run_demo(region: str = "gyeongnam", timeout: float = 900.0, json_output: bool = False) -> int:
    """Run the story; 0 when every training succeeded and every validation gave a verdict."""
    started = time.monotonic()
    stack = load_region(region)
    local = LocalTestbed(progress=say)
    say(f"starting the local testbed for region {region} in {local.home}")
    status = local.up(region=region)
    say(f"testbed healthy after {time.monotonic() - started:.1f}s")
    available = {t.name for t in list_templates()}
    tenants = pick_tenants(stack)
    stories = {t.id: _story_for(t.industry, available) for t in tenants}
    clients = {t.id: TestbedClient(status.control_plane_url, local.token(t.id)) for t in tenants}
    results = []
    # Step by step, the tenants' jobs run side by side (each on its own quota and token).
    for index in range(max(len(steps) for steps in stories.values())):
        batch = [(t, stories[t.id][index], clients[t.id]) for t in tenants if index < len(stories[t.id])]
        for (tenant, step, client), job in zip(batch, _run_batch(batch, timeout)):
            results.append(
                DemoJob(
                    tenant=tenant.id,
                    company=tenant.name,
                    template=step.template,
                    job_id=job.id,
                    status=job.status,
                    seconds=_seconds(job),
                    verdict=_last_line(client.logs(job.id).logs, ("PASS ", "FAIL ", "result:")),
                    mlflow_run=_run_link(client, job),
                )
            )
    usage, usage_error = _usage(status.control_plane_url, local.token("operator"), set(clients))
    report = DemoReport(
        region=region,
        wall_seconds=round(time.monotonic() - started, 1),
        jobs=results,
        usage=usage,
        usage_error=usage_error,
        control_plane_url=status.control_plane_url,
        mlflow_url=status.mlflow_url,
        ray_dashboard_url=status.ray_dashboard_url,
    )
    if json_output:
        print(report.model_dump_json(indent=2, exclude={"usage": {"__all__": {"burn"}}}))
    else:
        _print_summary(report, status, local)
    return 0 if all(job.ok for job in results) else 1


def _print_summary(report: DemoReport, status: TestbedStatus, local: LocalTestbed) -> None:
    print(f"\nRegional AI Testbed demo — region {report.region} (sample companies are fictional)\n")
    print(
        render_table(
            ["COMPANY", "TEMPLATE", "STATUS", "SECONDS", "JOB"],
            [[j.company, j.template, j.status, j.seconds, j.job_id] for j in report.jobs],
            right={3},
            indent="  ",
        )
    )
    for j in report.jobs:
        print(
            f"\n  {j.job_id}  {j.verdict or '(no verdict in the logs)'}\n  {'':{len(j.job_id)}}  MLflow run: {j.mlflow_run}"
        )
    print("\n  Metered use (allocated, per tenant):")
    if report.usage_error:
        print(f"    usage not available: {report.usage_error}")
    else:
        print(
            render_table(
                ["TENANT", "CPU-HOURS", "GPU-HOURS", "JOBS"],
                [
                    [
                        u.tenant,
                        f"{u.cpu_hours:.4f}",
                        f"{u.gpu_hours:.4f}",
                        ", ".join(f"{k}={v}" for k, v in sorted(u.jobs.items())),
                    ]
                    for u in report.usage
                ],
                right={1, 2},
                indent="    ",
            )
        )
        print("\n  Grants in won (excluding VAT; sample prices of the local testbed, see docs/money.md):")
        for u in report.usage:
            print(f"    {grant_line(u)}")
    print(f"\n  Demo wall time: {report.wall_seconds:.1f}s")
    print("\n  Open:")
    print(f"    MLflow          {status.mlflow_url}")
    print(f"    Ray dashboard   {status.ray_dashboard_url}  (it asks for the Ray token in {local.ray_token_file})")
    print(f"    Control plane   {status.control_plane_url}/docs")
    print(f"    Portal          {status.control_plane_url}/portal/  (log in with a tenant or the operator token)")
    print("  Try it as a tenant (in a new shell too):")
    if local.home.resolve() != default_testbed_home().resolve():  # not the default: a new shell must be told
        print(f"    export TESTBED_HOME={shlex.quote(str(local.home))}")
    print(
        f"    export TESTBED_TOKEN=$(.venv/bin/testbed tenants token {report.jobs[0].tenant if report.jobs else '<tenant>'})"
    )
    print("    .venv/bin/testbed templates list && .venv/bin/testbed jobs list && .venv/bin/testbed usage")
    print(
        '    eval "$(.venv/bin/testbed mlflow login)"   # your MLflow login (UI: log in with the printed user/password)'
    )
    print("  Stop everything:  .venv/bin/testbed down   (or: make down)")
