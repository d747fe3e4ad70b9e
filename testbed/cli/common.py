"""What every ``testbed`` command shares: its error, the --json switch, the SDK client from --url/--token."""

from __future__ import annotations

import argparse
from typing import Any, Callable, TypeVar

from pydantic import BaseModel

from testbed.client import TestbedClient

EXIT_ERROR = 1
Handler = Callable[[argparse.Namespace], int]
Shown = TypeVar("Shown", bound=BaseModel)


class CliError(Exception):
    """A user-facing error: printed as one line."""


def add_command(parent: Any, name: str, handler: Handler, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
    """A subcommand running ``handler``, with ``--json`` unless told otherwise.

    ``--url`` and ``--token`` are accepted after the subcommand too (``testbed tenants token ID --rotate --url U
    --token T``); given there, they win over the ones before it.
    """
    parser = parent.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    parser.add_argument(
        "--url", default=argparse.SUPPRESS, help="control plane URL (default: $TESTBED_URL or the local testbed)"
    )
    parser.add_argument("--token", default=argparse.SUPPRESS, help="tenant or operator token (default: $TESTBED_TOKEN)")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def print_json(value: BaseModel, **dump: Any) -> None:
    print(value.model_dump_json(indent=2, **dump))


def emit(args: argparse.Namespace, value: Shown, render: Callable[[Shown], object]) -> int:
    """Print ``value`` as JSON with ``--json``, else as ``render`` writes it (a returned string is printed)."""
    if getattr(args, "json", False):
        print_json(value)
    else:
        text = render(value)
        if isinstance(text, str):
            print(text)
    return 0


def connect(args: argparse.Namespace, operator: bool = False) -> TestbedClient:
    """The SDK client of --url/--token (or the environment, or the local state).

    ``operator``: without --token, use the local operator's token when there is one, unless --url names
    another control plane (a cluster's operator token comes from its stack: ``pulumi stack output operator_token``).
    """
    token = args.token or (local_token(args, "operator", required=False) if operator and not args.url else None)
    return TestbedClient.from_env(args.url, token)


LocalTokens = Callable[..., "str | None"]  # (subject, required=True): a local testbed's token


def local_token(args: argparse.Namespace, subject: str, required: bool = True) -> str | None:
    """A token of the testbed running on this machine, through the ``local_token`` the embedded mode's
    parser sets (the core does not import the embedded mode); None when there is none and not ``required``."""
    lookup: LocalTokens | None = getattr(args, "local_token", None)
    if lookup is None:
        if required:
            raise CliError("no local testbed in this command: give --url and --token")
        return None
    return lookup(subject, required=required)
