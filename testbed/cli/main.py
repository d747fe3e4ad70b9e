"""The ``testbed`` command: the parser, and every error as one line on stderr with a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from testbed.cli import audit, config, data, jobs, program, region, statements
from testbed.cli.common import EXIT_ERROR


Register = Callable[[Any], None]


def build_parser(extra: Sequence[Register] = ()) -> argparse.ArgumentParser:
    """The core commands (stack files, tenants, jobs, data), then ``extra`` modules' ``register`` (the embedded
    mode adds its lifecycle commands this way: the core does not import it)."""
    parser = argparse.ArgumentParser(
        prog="testbed", description="Regional AI Testbed: local testbed, jobs, tenants, usage."
    )
    parser.add_argument("--url", help="control plane URL (default: $TESTBED_URL or the local testbed)")
    parser.add_argument("--token", help="tenant or operator token (default: $TESTBED_TOKEN)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in (
        config.register,
        region.register,
        jobs.register,
        data.register,
        audit.register,
        statements.register,
        program.register,
        *extra,
    ):
        register(sub)
    return parser


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """The CLI's own arguments, and the job command after ``--``."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def one_line(exc: BaseException) -> str:
    """An error's text on one line (a multi-line message's lines joined by '; ')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, command_argv = _split_command(argv)
    parser = parser or build_parser()
    args = parser.parse_args(own)
    args.command_argv = command_argv
    if command_argv and args.command != "submit":
        parser.error("a command after `--` only applies to `testbed submit`")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # CliError, TestbedError, ConfigError, a local step failing: one line, no traceback
        if os.environ.get("TESTBED_DEBUG"):
            raise
        print(f"testbed: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
