"""The ``testbed`` command line's core: ``main`` parses; the subcommands live in ``config`` (stack files),
``region`` (tenants, templates, usage), ``jobs`` (submit, jobs) and ``data``, all through the SDK. The
embedded mode (``embedded.cli``) adds the lifecycle commands (up, down, status, demo, db)."""

from testbed.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
