"""``testbed up|down|status|demo`` (the local testbed) and ``testbed config validate`` (stack files)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from testbed import progress
from testbed.cli.common import EXIT_ERROR, add_command, emit
from testbed.config import REGIONS, ConfigError, load_stack_file
from testbed.tables import render_table

if TYPE_CHECKING:
    from testbed.local import TestbedStatus


class Problem(BaseModel):
    path: str
    reason: str


class FileCheck(BaseModel):
    """One stack file: valid with its shape, or its problems."""

    file: str
    valid: bool
    region: str | None = None
    tenants: int | None = None
    node_pools: int | None = None
    overcommitment: dict[str, float] | None = None
    errors: list[Problem] = Field(default_factory=list)


class ConfigReport(BaseModel):
    files: list[FileCheck]


class Stopped(BaseModel):
    stopped: list[str]


def check_file(file: str) -> FileCheck:
    try:
        stack = load_stack_file(file)
    except ConfigError as exc:
        return FileCheck(file=file, valid=False, errors=[Problem(path=p, reason=r) for p, r in exc.problems])
    return FileCheck(file=file, valid=True, region=stack.region.id, tenants=len(stack.tenants),
                     node_pools=len(stack.node_pools), overcommitment=stack.overcommitment())


def _print_checks(report: ConfigReport) -> None:
    for check in report.files:
        if check.valid:
            print(f"{check.file}: ok (region {check.region}, {check.tenants} tenants, {check.node_pools} node pools, "
                  f"GPU quota over-commitment {(check.overcommitment or {})['gpus']:.2f}x)")
        for error in check.errors:
            print(f"{check.file}: {error.path}: {error.reason}", file=sys.stderr)


def cmd_config_validate(args: argparse.Namespace) -> int:
    report = ConfigReport(files=[check_file(file) for file in args.files])
    emit(args, report, _print_checks)
    return 0 if all(check.valid for check in report.files) else EXIT_ERROR


def _local(args: argparse.Namespace):
    from testbed.local import LocalTestbed

    return LocalTestbed(progress=None if getattr(args, "json", False) else progress.say)


def _urls(status: TestbedStatus) -> str:
    return render_table(None, [
        ["control plane", f"{status.control_plane_url}   (API docs: {status.control_plane_url}/docs)"],
        ["MLflow", status.mlflow_url],
        ["Ray dashboard", status.ray_dashboard_url],
    ], indent="  ")


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    status = _local(args).up(region=args.region, num_cpus=args.num_cpus, timeout=args.timeout, num_gpus=args.gpus)
    return emit(args, status, lambda s: f"testbed up in {time.monotonic() - started:.1f}s "
                                        f"(region {s.region}, state in {s.home})\n{_urls(s)}")


def cmd_down(args: argparse.Namespace) -> int:
    stopped = Stopped(stopped=_local(args).down())
    return emit(args, stopped, lambda s: "testbed stopped" if s.stopped else "testbed was not running")


def _status_text(status: TestbedStatus) -> str:
    if status.region is None:
        return f"no testbed in {status.home}; start one with `testbed up`"
    rows = [[c.name, "healthy" if c.healthy else ("running, not healthy" if c.running else "stopped"), c.url, c.pid]
            for c in status.components]
    return (f"region {status.region}, state in {status.home}: {'healthy' if status.healthy else 'NOT healthy'}\n"
            + render_table(["COMPONENT", "STATE", "URL", "PID"], rows, indent="  "))


def cmd_status(args: argparse.Namespace) -> int:
    status = _local(args).status()
    emit(args, status, _status_text)
    return 0 if status.healthy else EXIT_ERROR


def cmd_demo(args: argparse.Namespace) -> int:
    from testbed.local.demo import run_demo

    return run_demo(region=args.region, timeout=args.timeout, json_output=args.json)


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="check stack files").add_subparsers(dest="config_command", required=True)
    p = add_command(config, "validate", cmd_config_validate, "validate Pulumi.<region>.yaml files")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = add_command(sub, "up", cmd_up, "start the local testbed (Ray, MLflow, control plane) on 127.0.0.1")
    p.add_argument("--region", default="gyeongnam", choices=REGIONS)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray offers (default: all)")
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="logical GPUs the local Ray offers (default 0): GPU jobs, holds and charges run for real, "
                        "templates train on the CPU (there is no CUDA behind them)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    add_command(sub, "down", cmd_down, "stop the local testbed and all its helper processes")
    add_command(sub, "status", cmd_status, "show the local testbed's components and URLs")

    p = add_command(sub, "demo", cmd_demo, "start the local testbed and run the main story")
    p.add_argument("--region", default="gyeongnam", choices=REGIONS)
    p.add_argument("--timeout", type=float, default=900.0)

