"""The ``testbed`` command line: ``main`` parses; the subcommands live in ``lifecycle`` (local testbed, stack
files), ``region`` (tenants, templates, usage) and ``jobs`` (submit, jobs), all through the SDK."""

from testbed.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
