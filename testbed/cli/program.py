"""``testbed plan`` (a region's plan from its budget) and ``testbed program report`` (one table across regions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from testbed.cli.common import CliError, add_command, emit


def _target(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target-utilisation {value!r} is not a number") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"--target-utilisation {value} is not within (0, 1]")
    return number


def cmd_plan(args: argparse.Namespace) -> int:
    from testbed.config import load_region, load_stack_file
    from testbed.plan import make_plan, plannable, plot_plan, render_plan

    if bool(args.region) == bool(args.stack_file):
        raise CliError("name one region: --region NAME or --stack-file Pulumi.<region>.yaml")
    stack = load_region(args.region) if args.region else load_stack_file(args.stack_file)
    if not plannable(stack):
        raise CliError(
            f"region {stack.region.id}: the stack file needs testbed:budget and a testbed:prices row for "
            "every node pool on the fiscal period's first day"
        )
    plan = make_plan(stack, args.target_utilisation)
    if args.plot:
        plot_plan(plan, args.plot)
    return emit(args, plan, render_plan)


def cmd_program_report(args: argparse.Namespace) -> int:
    from testbed import program, program_files

    report = program.build_report(args.regions)
    for flag, write in (
        ("csv", program_files.write_csv),
        ("xlsx", program_files.write_xlsx),
        ("html", program_files.write_html),
        ("plot", program_files.plot_report),
    ):
        target = getattr(args, flag)
        if target:
            write(report, Path(target))
    return emit(args, report, program_files.render_report)


def register(sub: argparse._SubParsersAction) -> None:
    plan = add_command(
        sub,
        "plan",
        cmd_plan,
        "a region's plan from its budget: GPU-hours bought, node-pool sizes, grant shares, what is left",
    )
    plan.add_argument("--region", help="one of the stack files of this checkout (Pulumi.<region>.yaml)")
    plan.add_argument("--stack-file", type=Path, help="a stack file elsewhere")
    plan.add_argument(
        "--target-utilisation",
        type=_target,
        default=0.7,
        help="share of pool GPU time the grants may fill (default 0.7)",
    )
    plan.add_argument("--plot", type=Path, metavar="PNG", help="also draw the plan to this PNG")

    program = sub.add_parser("program", help="the program office: one report across regions")
    program_sub = program.add_subparsers(dest="program_command", metavar="COMMAND", required=True)
    report = add_command(
        program_sub,
        "report",
        cmd_program_report,
        "budget, execution (집행률), burn, forecast and idle GPU-hours of every region",
    )
    report.add_argument(
        "--regions",
        type=Path,
        required=True,
        metavar="FILE",
        help="YAML: regions: [{name, url, token_file}] (the program-office token of each region)",
    )
    report.add_argument("--csv", type=Path, metavar="FILE", help="also write a CSV (UTF-8 with BOM)")
    report.add_argument("--xlsx", type=Path, metavar="FILE", help="also write an XLSX workbook")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML page")
    report.add_argument("--plot", type=Path, metavar="PNG", help="also draw execution rates to this PNG")
