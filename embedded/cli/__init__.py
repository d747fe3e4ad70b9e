"""The ``testbed`` console script: the core CLI's commands plus the embedded mode's lifecycle commands
(``up``, ``down``, ``status``, ``demo``) and ``db upgrade``."""

from __future__ import annotations

import argparse
from typing import Sequence

from embedded import LocalTestbed, LocalTestbedError
from embedded.cli import db, lifecycle
from testbed.cli.main import build_parser as core_parser
from testbed.cli.main import main as core_main


def local_token(subject: str, required: bool = True) -> str | None:
    """A tenant's (or the operator's) token of the testbed on this machine."""
    try:
        return LocalTestbed().token(subject)
    except LocalTestbedError:
        if required:
            raise
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = core_parser(extra=(lifecycle.register, db.register))
    parser.set_defaults(local_token=local_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return core_main(argv, parser=build_parser())


__all__ = ["build_parser", "main"]
