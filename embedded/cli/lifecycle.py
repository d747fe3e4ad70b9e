"""``testbed up|down|status|demo``: the embedded testbed on this machine."""

from __future__ import annotations

import argparse
import time
from typing import Any

from pydantic import BaseModel

from embedded import LocalTestbed, TestbedStatus
from testbed import progress
from testbed.cli.common import EXIT_ERROR, add_command, emit
from testbed.config import REGIONS
from testbed.isolation import LOCAL_MODE_LINE
from testbed.tables import render_table


class Stopped(BaseModel):
    stopped: list[str]


def _local(args: argparse.Namespace) -> LocalTestbed:
    return LocalTestbed(progress=None if getattr(args, "json", False) else progress.say)


def _urls(status: TestbedStatus) -> str:
    return render_table(
        None,
        [
            ["control plane", f"{status.control_plane_url}   (API docs: {status.control_plane_url}/docs)"],
            ["MLflow", status.mlflow_url],
            ["Ray dashboard", status.ray_dashboard_url],
        ],
        indent="  ",
    )


def cmd_up(args: argparse.Namespace) -> int:
    if not getattr(args, "json", False):
        print(LOCAL_MODE_LINE, flush=True)  # the first line, before anything starts
    started = time.monotonic()
    status = _local(args).up(region=args.region, num_cpus=args.num_cpus, timeout=args.timeout, num_gpus=args.gpus)
    return emit(
        args,
        status,
        lambda s: f"testbed up in {time.monotonic() - started:.1f}s (region {s.region}, state in {s.home})\n{_urls(s)}",
    )


def cmd_down(args: argparse.Namespace) -> int:
    stopped = Stopped(stopped=_local(args).down())
    return emit(args, stopped, lambda s: "testbed stopped" if s.stopped else "testbed was not running")


def _status_text(status: TestbedStatus) -> str:
    if status.region is None:
        return f"no testbed in {status.home}; start one with `testbed up`"
    rows = [
        [c.name, "healthy" if c.healthy else ("running, not healthy" if c.running else "stopped"), c.url, c.pid]
        for c in status.components
    ]
    return (
        f"region {status.region}, state in {status.home}: {'healthy' if status.healthy else 'NOT healthy'}\n"
        + render_table(["COMPONENT", "STATE", "URL", "PID"], rows, indent="  ")
        + f"\n{status.trust}"
    )


def cmd_status(args: argparse.Namespace) -> int:
    status = _local(args).status()
    emit(args, status, _status_text)
    return 0 if status.healthy else EXIT_ERROR


def cmd_demo(args: argparse.Namespace) -> int:
    from embedded.demo import run_demo

    return run_demo(region=args.region, timeout=args.timeout, json_output=args.json)


def register(sub: Any) -> None:
    p = add_command(sub, "up", cmd_up, "start the local testbed (Ray, MLflow, control plane) on 127.0.0.1")
    p.add_argument("--region", default="gyeongnam", choices=REGIONS)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray offers (default: all)")
    p.add_argument(
        "--gpus",
        type=int,
        default=None,
        metavar="N",
        help="logical GPUs the local Ray offers (default 0): GPU jobs, holds and charges run for real, "
        "templates train on the CPU (there is no CUDA behind them)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    add_command(sub, "down", cmd_down, "stop the local testbed and all its helper processes")
    add_command(sub, "status", cmd_status, "show the local testbed's components and URLs")

    p = add_command(sub, "demo", cmd_demo, "start the local testbed and run the main story")
    p.add_argument("--region", default="gyeongnam", choices=REGIONS)
    p.add_argument("--timeout", type=float, default=900.0)
