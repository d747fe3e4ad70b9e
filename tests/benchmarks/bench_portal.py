"""Portal benchmark (issue: web portal): a company with 1,000 jobs opens its jobs page.

A control plane with the no-op backend over real HTTP on 127.0.0.1; one tenant's 1,000 jobs are
admitted and dispatched in process (each ends at once). Then, alternating, the portal's jobs page (``GET /portal/jobs``
with a session cookie: the newest 50 jobs rendered as HTML, read through the API in process) and the
same data from ``GET /v1/jobs?limit=50`` (JSON). Prints ``portal_jobs_page_p95_seconds`` (target
<= 0.2 on the shared 2-core machine) beside ``api_jobs_list_p95_seconds`` and the medians.

Run: ``.venv/bin/python tests/benchmarks/bench_portal.py [--jobs N] [--rounds N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from operators.control_plane.app import create_app  # noqa: E402
from operators.control_plane.auth import hash_token  # noqa: E402
from tests.serve import serve_in_thread  # noqa: E402
from tests.benchmarks.admission_load import percentile  # noqa: E402
from tests.portal.pages import login  # noqa: E402
from tests.replicas import issued_token, noop_settings, stack_with_tenants  # noqa: E402
from testbed.jobs import JobSpec  # noqa: E402
from tests.benchmarks.scratch import scratch_home  # noqa: E402

PAGE = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help=f"at least {PAGE}: a full page is timed")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    if args.jobs < PAGE:
        parser.error(f"--jobs {args.jobs}: at least {PAGE} (one full page of the portal's jobs) are needed")
    with scratch_home("tb-bench-portal") as home:
        stack, [tenant] = stack_with_tenants(home, 1, {"max_running_jobs": 10_000})
        url = f"sqlite:///{home / 'cp.db'}"
        app = create_app(noop_settings(home, stack, url, max_queued_jobs_per_tenant=args.jobs + 10))
        with serve_in_thread(app) as url:
            token = issued_token(home, tenant)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
                # the jobs are admitted in process (the API's own admission and dispatch, without 1,000 round trips)
                plane = app.state.plane
                caller = plane.tokens.resolve(hash_token(token))
                for i in range(args.jobs):
                    plane.dispatch(plane.admit(caller, JobSpec(entrypoint=f"python -c 'print({i})'")))
                total = 0
                cursor = None
                while True:  # every job is there
                    page = api.get("/v1/jobs", params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
                    total += len(page["jobs"])
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                assert total == args.jobs, total
                portal = login(url, token)
                portal_times, api_times = [], []
                for _ in range(5):  # warm up both paths
                    portal.get("/portal/jobs").raise_for_status()
                    api.get("/v1/jobs", params={"limit": PAGE}).raise_for_status()
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    answer = portal.get("/portal/jobs")
                    portal_times.append(time.perf_counter() - start)
                    assert answer.status_code == 200 and answer.text.count('href="/portal/jobs/job-') == PAGE
                    start = time.perf_counter()
                    api.get("/v1/jobs", params={"limit": PAGE}).raise_for_status()
                    api_times.append(time.perf_counter() - start)
        print(f"portal_jobs={args.jobs} rounds={args.rounds} page={PAGE} backend=noop store=sqlite")
        print(f"portal_jobs_page_p95_seconds={percentile(portal_times, 95):.4f}  # target <= 0.2")
        print(f"portal_jobs_page_p50_seconds={statistics.median(portal_times):.4f}")
        print(f"api_jobs_list_p95_seconds={percentile(api_times, 95):.4f}  # GET /v1/jobs?limit={PAGE}, same data")
        print(f"api_jobs_list_p50_seconds={statistics.median(api_times):.4f}")


if __name__ == "__main__":
    main()
