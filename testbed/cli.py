"""The ``testbed`` command: local lifecycle, tenants, jobs, templates, config checks, the demo.

Every error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from testbed import progress, usage
from testbed.client import TestbedClient, TestbedError
from testbed.config import REGIONS, ConfigError, load_stack_file, parse_memory
from testbed.templates import TemplateError, list_templates

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line."""


def _print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    print(json.dumps(value, indent=2, default=str))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, "") if r.get(c) is not None else "-")) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    for row in rows:
        lines.append("  ".join(str(row.get(c) if row.get(c) is not None else "-").ljust(widths[c]) for c in columns))
    return "\n".join(lines)


JOB_COLUMNS = ["id", "tenant", "name", "status", "cpus", "gpus", "submitted_at", "started_at", "ended_at"]


# -- config ---------------------------------------------------------------------------------
def cmd_config_validate(args: argparse.Namespace) -> int:
    results = []
    for file in args.files:
        try:
            stack = load_stack_file(file)
            over = stack.overcommitment()
            results.append({"file": file, "valid": True, "region": stack.region.id, "tenants": len(stack.tenants),
                            "node_pools": len(stack.node_pools), "overcommitment": over, "errors": []})
        except ConfigError as exc:
            results.append({"file": file, "valid": False, "errors": [{"path": p, "reason": r} for p, r in exc.problems]})
    if args.json:
        _print_json({"files": results})
    else:
        for result in results:
            if result["valid"]:
                print(f"{result['file']}: ok (region {result['region']}, {result['tenants']} tenants, "
                      f"{result['node_pools']} node pools, GPU quota over-commitment {result['overcommitment']['gpus']:.2f}x)")
            else:
                for error in result["errors"]:
                    print(f"{result['file']}: {error['path']}: {error['reason']}", file=sys.stderr)
    return 0 if all(r["valid"] for r in results) else EXIT_ERROR


# -- local lifecycle ------------------------------------------------------------------------
def _local(args: argparse.Namespace):
    from testbed.local import LocalTestbed

    return LocalTestbed(progress=None if getattr(args, "json", False) else progress.say)


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    status = _local(args).up(region=args.region, num_cpus=args.num_cpus, timeout=args.timeout)
    if args.json:
        _print_json(status)
    else:
        print(f"testbed up in {time.monotonic() - started:.1f}s (region {status.region}, state in {status.home})")
        _print_urls(status)
    return 0


def _print_urls(status: Any) -> None:
    print(f"  control plane  {status.control_plane_url}   (API docs: {status.control_plane_url}/docs)")
    print(f"  MLflow         {status.mlflow_url}")
    print(f"  Ray dashboard  {status.ray_dashboard_url}")


def cmd_down(args: argparse.Namespace) -> int:
    stopped = _local(args).down()
    if args.json:
        _print_json({"stopped": stopped})
    else:
        print("testbed stopped" if stopped else "testbed was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = _local(args).status()
    if args.json:
        _print_json(status)
    else:
        if status.region is None:
            print(f"no testbed in {status.home}; start one with `testbed up`")
            return EXIT_ERROR
        print(f"region {status.region}, state in {status.home}: {'healthy' if status.healthy else 'NOT healthy'}")
        for c in status.components:
            state = "healthy" if c.healthy else ("running, not healthy" if c.running else "stopped")
            print(f"  {c.name:<14} {state:<22} {c.url or '-'}  pid {c.pid or '-'}")
    return 0 if status.healthy else EXIT_ERROR


# -- tenants --------------------------------------------------------------------------------
def _region_of_local() -> str:
    from testbed.local import LocalTestbed

    state = LocalTestbed().load_state()
    if state is None:
        raise CliError("no local testbed state; run `testbed up` first")
    return state.region


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from testbed.config import load_region
    from testbed.local import LocalTestbed

    region = args.region or _region_of_local()
    stack = load_region(region)
    creds = LocalTestbed().credentials_dir()
    rows = [{
        "id": t.id, "name": t.name, "industry": t.industry, "sample": t.sample,
        "grant_gpu_hours": t.grant.gpu_hours, "grant_start": t.grant.start.isoformat(), "grant_end": t.grant.end.isoformat(),
        "quota_cpus": t.quota.cpus, "quota_gpus": t.quota.gpus, "has_token": (creds / f"{t.id}.token").exists(),
    } for t in stack.tenants]
    if args.json:
        _print_json({"region": region, "tenants": rows})
    else:
        print(_table(rows, ["id", "name", "industry", "grant_gpu_hours", "quota_cpus", "quota_gpus", "has_token"]))
    return 0


def cmd_tenants_token(args: argparse.Namespace) -> int:
    from testbed.local import LocalTestbed

    local = LocalTestbed()
    if args.rotate:
        client = TestbedClient.from_env(args.url, args.token or local.token("operator"))
        with client:
            token = client.request_json("POST", f"/v1/tenants/{args.tenant}/token")["token"]
    else:
        token = local.token(args.tenant)
    print(token)
    return 0


# -- jobs -----------------------------------------------------------------------------------
def _parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {pair!r} must look like KEY=VALUE")
        out[key] = value
    return out


def _build_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if args.command_argv and args.template:
        raise CliError("give either --template NAME or a command after `--`, not both")
    if args.command_argv:
        spec["entrypoint"] = shlex.join(args.command_argv)
    elif args.template:
        spec["template"] = args.template
        spec["params"] = _parse_pairs(args.param, "--param")
    else:
        raise CliError("nothing to run: give --template NAME or a command after `--` (e.g. testbed submit -- python train.py)")
    if args.param and not args.template:
        raise CliError("--param only applies with --template")
    if args.working_dir:
        path = Path(args.working_dir)
        if not path.is_dir():
            raise CliError(f"--working-dir {args.working_dir!r} is not a folder")
        spec["working_dir"] = str(path.absolute())
    for field in ("name", "cpus", "gpus"):
        if getattr(args, field) is not None:
            spec[field] = getattr(args, field)
    if args.memory is not None:
        try:
            spec["memory"] = parse_memory(args.memory)
        except ValueError as exc:
            raise CliError(f"--memory: {exc}") from None
    if args.env:
        spec["env"] = _parse_pairs(args.env, "--env")
    return spec


def _wait(client: TestbedClient, job_id: str, timeout: float, quiet: bool) -> dict[str, Any]:
    reporter = progress.JobProgress(job_id, enabled=not quiet)
    try:
        return client.wait(job_id, timeout=timeout, on_update=reporter.update, poll=0.25)
    finally:
        reporter.done()


def _finish(job: dict[str, Any]) -> int:
    return 0 if job["status"] == "SUCCEEDED" else EXIT_ERROR


def cmd_submit(args: argparse.Namespace) -> int:
    spec = _build_spec(args)
    with TestbedClient.from_args(args) as client:
        job = client.submit(spec)
        if args.wait:
            if not args.json:
                print(job["id"])
            job = _wait(client, job["id"], args.timeout, quiet=args.json)
    if args.json:
        _print_json(job)
    elif args.wait:
        _print_job_result(job)
    else:
        print(job["id"])
    return _finish(job) if args.wait else 0


def _print_job_result(job: dict[str, Any]) -> None:
    line = f"{job['id']} {job['status']}"
    if job.get("message"):
        line += f": {job['message']}"
    print(line)


def _emit(args: argparse.Namespace, value: Any, render: Callable[[Any], None]) -> int:
    """Print ``value`` as JSON with ``--json``, else as ``render`` writes it."""
    if args.json:
        _print_json(value)
    else:
        render(value)
    return 0


def _show_job(job: dict[str, Any]) -> None:
    for key, value in job.items():
        print(f"{key:<13} {value if value not in (None, '') else '-'}")


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with TestbedClient.from_args(args) as client:
        jobs = client.list_jobs(status=args.status, limit=args.limit)
    return _emit(args, {"jobs": jobs}, lambda body: print(_table(body["jobs"], JOB_COLUMNS)))


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with TestbedClient.from_args(args) as client:
        return _emit(args, client.get_job(args.job_id), _show_job)


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    with TestbedClient.from_args(args) as client:
        body = client.request_json("GET", f"/v1/jobs/{args.job_id}/logs")
    return _emit(args, body, lambda b: sys.stdout.write(b["logs"]))


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    with TestbedClient.from_args(args) as client:
        return _emit(args, client.stop(args.job_id), lambda job: print(f"{job['id']} {job['status']}"))


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    with TestbedClient.from_args(args) as client:
        job = _wait(client, args.job_id, args.timeout, quiet=args.json)
    if args.json:
        _print_json(job)
    else:
        _print_job_result(job)
    return _finish(job)


# -- templates ------------------------------------------------------------------------------
def cmd_templates_list(args: argparse.Namespace) -> int:
    templates = [t.model_dump(mode="json") for t in list_templates()]
    if args.json:
        _print_json({"templates": templates})
    else:
        for t in templates:
            params = ", ".join(f"{p['name']}={p['default']}" for p in t["params"])
            print(f"{t['name']:<24} {t['kind']:<11} {t['industry']:<22} {params}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from testbed.demo import run_demo

    return run_demo(region=args.region, timeout=args.timeout, json_output=args.json)


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testbed", description="Regional AI Testbed: local testbed, jobs, tenants, usage.")
    parser.add_argument("--url", help="control plane URL (default: $TESTBED_URL or the local testbed)")
    parser.add_argument("--token", help="tenant or operator token (default: $TESTBED_TOKEN)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(parent: Any, name: str, handler: Callable[[argparse.Namespace], int], help: str, json_flag: bool = True):
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    config = sub.add_parser("config", help="check stack files").add_subparsers(dest="config_command", required=True)
    p = add(config, "validate", cmd_config_validate, "validate Pulumi.<region>.yaml files")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = add(sub, "up", cmd_up, "start the local testbed (Ray, MLflow, control plane) on 127.0.0.1")
    p.add_argument("--region", default="gyeongnam", choices=REGIONS)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray offers (default: all)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    add(sub, "down", cmd_down, "stop the local testbed and all its helper processes")
    add(sub, "status", cmd_status, "show the local testbed's components and URLs")

    tenants = sub.add_parser("tenants", help="tenants of the local region").add_subparsers(dest="tenants_command", required=True)
    p = add(tenants, "list", cmd_tenants_list, "list the region's tenants")
    p.add_argument("--region", choices=REGIONS, help="default: the running local testbed's region")
    p = add(tenants, "token", cmd_tenants_token, "print a tenant's token (local operator)", json_flag=False)
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--rotate", action="store_true", help="issue a new token; the old one stops working")

    p = add(sub, "submit", cmd_submit, "submit a job: --template NAME [--param k=v ...] or -- CMD ARGS...")
    p.add_argument("--template")
    p.add_argument("--param", action="append", default=[], metavar="K=V")
    p.add_argument("--name", help="experiment name (MLflow experiment <tenant>/<name>)")
    p.add_argument("--working-dir")
    p.add_argument("--cpus", type=float)
    p.add_argument("--gpus", type=int)
    p.add_argument("--memory", help="e.g. 4Gi")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--wait", action="store_true", help="wait for the job to end; exit non-zero unless it succeeded")
    p.add_argument("--timeout", type=float, default=3600.0)

    jobs = sub.add_parser("jobs", help="your jobs").add_subparsers(dest="jobs_command", required=True)
    p = add(jobs, "list", cmd_jobs_list, "list jobs")
    p.add_argument("--status", choices=["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"])
    p.add_argument("--limit", type=int)
    for name, handler, help in (("show", cmd_jobs_show, "show one job"), ("logs", cmd_jobs_logs, "print a job's logs"),
                                ("stop", cmd_jobs_stop, "stop a job"), ("wait", cmd_jobs_wait, "wait for a job to end")):
        p = add(jobs, name, handler, help)
        p.add_argument("job_id", metavar="ID")
        if name == "wait":
            p.add_argument("--timeout", type=float, default=3600.0)

    templates = sub.add_parser("templates", help="job templates").add_subparsers(dest="templates_command", required=True)
    add(templates, "list", cmd_templates_list, "list templates with their kind and parameters")

    p = add(sub, "demo", cmd_demo, "start the local testbed and run the main story")
    p.add_argument("--region", default="gyeongnam", choices=REGIONS)
    p.add_argument("--timeout", type=float, default=900.0)

    usage.register_cli(sub)  # `testbed usage`
    return parser


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, command_argv = _split_command(argv)
    parser = build_parser()
    args = parser.parse_args(own)
    args.command_argv = command_argv
    if command_argv and args.command != "submit":
        parser.error("a command after `--` only applies to `testbed submit`")
    try:
        return args.handler(args)
    except (CliError, TestbedError, ConfigError, TemplateError) as exc:
        for line in str(exc).splitlines() or ["failed"]:
            print(f"testbed: error: {line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a local step failing (LocalTestbedError, OSError, ...): one line, no traceback
        if os.environ.get("TESTBED_DEBUG"):
            raise
        print(f"testbed: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
