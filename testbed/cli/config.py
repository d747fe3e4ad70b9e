"""``testbed config validate``: check stack files (``Pulumi.<region>.yaml``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import BaseModel, Field

from testbed.cli.common import EXIT_ERROR, add_command, emit
from testbed.config import ConfigError, load_stack_file


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


def check_file(file: str) -> FileCheck:
    try:
        stack = load_stack_file(file)
    except ConfigError as exc:
        return FileCheck(file=file, valid=False, errors=[Problem(path=p, reason=r) for p, r in exc.problems])
    return FileCheck(
        file=file,
        valid=True,
        region=stack.region.id,
        tenants=len(stack.tenants),
        node_pools=len(stack.node_pools),
        overcommitment=stack.overcommitment(),
    )


def _print_checks(report: ConfigReport) -> None:
    for check in report.files:
        if check.valid:
            print(
                f"{check.file}: ok (region {check.region}, {check.tenants} tenants, {check.node_pools} node pools, "
                f"GPU quota over-commitment {(check.overcommitment or {})['gpus']:.2f}x)"
            )
        for error in check.errors:
            print(f"{check.file}: {error.path}: {error.reason}", file=sys.stderr)


def cmd_config_validate(args: argparse.Namespace) -> int:
    report = ConfigReport(files=[check_file(file) for file in args.files])
    emit(args, report, _print_checks)
    return 0 if all(check.valid for check in report.files) else EXIT_ERROR


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="check stack files").add_subparsers(dest="config_command", required=True)
    p = add_command(config, "validate", cmd_config_validate, "validate Pulumi.<region>.yaml files")
    p.add_argument("files", nargs="+", metavar="FILE")
