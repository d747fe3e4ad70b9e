"""``testbed tenants export ID --out DIR`` and ``testbed tenants purge ID`` (operator)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.cli.common import CliError, add_command, connect, emit


def cmd_export(args: argparse.Namespace) -> int:
    from testbed.tenant_exit import export_tenant

    with connect(args, operator=True) as client:
        manifest = export_tenant(client, args.tenant, args.out)
    return emit(
        args,
        manifest,
        lambda m: (
            f"exported {m.tenant} to {args.out / m.tenant}: {m.files} files (archive {m.archive_bytes:,} bytes, sha256 "
            f"{m.archive_sha256}); MLflow: {m.mlflow_experiments} experiments, {m.mlflow_runs} runs, "
            f"{m.mlflow_artifacts} artifacts, {m.mlflow_models} registered models"
            + (f" ({m.mlflow_note})" if m.mlflow_note else "")
        ),
    )


def cmd_purge(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"purging {args.tenant} removes its storage, MLflow data, job logs and tokens for good: "
                "confirm with --yes"
            )
        answer = input(
            f"Purge tenant {args.tenant}? Its storage, MLflow data, job logs and tokens are removed "
            f"for good (the ledger stays). Type the tenant id to confirm: "
        )
        if answer.strip() != args.tenant:
            raise CliError("not confirmed: nothing was purged")
    with connect(args, operator=True) as client:
        result = client.purge_tenant(args.tenant)
    return emit(
        args,
        result,
        lambda r: (
            f"purged {r.tenant}: {r.deleted_files} files ({r.deleted_bytes:,} bytes), logs of {r.jobs_scrubbed} jobs, "
            f"{r.tokens_revoked} token(s)"
            + (
                f", MLflow workspace: {r.mlflow.experiments} experiments, {r.mlflow.runs} "
                f"runs, {r.mlflow.models} registered models"
                if r.mlflow
                else ""
            )
            + f"; kept: {', '.join(r.kept)}; export sha256 {r.export_sha256}"
        ),
    )


def register(tenants: argparse._SubParsersAction) -> None:
    p = add_command(
        tenants,
        "export",
        cmd_export,
        "hand a company everything it owns: storage, job outputs and logs, "
        "usage, ledger, MLflow runs and models (operator)",
    )
    p.add_argument("tenant")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write <tenant>/ and <tenant>.zip")
    p = add_command(
        tenants,
        "purge",
        cmd_purge,
        "after an export: remove a company's storage, MLflow data, job logs "
        "and tokens; its ledger rows stay (operator)",
    )
    p.add_argument("tenant")
    p.add_argument("--yes", action="store_true", help="do not ask")
