"""``testbed tenants list|token``, ``testbed templates list`` and ``testbed usage``, through the SDK."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from testbed import usage
from testbed.api import TemplateList
from testbed.cli import tenant_exit
from testbed.cli.common import CliError, add_command, connect, emit, local_token, print_json
from testbed.client import TestbedError
from testbed.tables import model_table, render_table
from testbed.templates import list_templates

TENANT_COLUMNS = ["id", "name", "industry", "grant_gpu_hours", "grant_start", "grant_end", "sample"]


def cmd_tenants_list(args: argparse.Namespace) -> int:
    with connect(args, operator=True) as client:
        return emit(args, client.tenants(), lambda body: model_table(body.tenants, TENANT_COLUMNS))


def cmd_tenants_token(args: argparse.Namespace) -> int:
    """With --rotate or --name, issue a token through the control plane (any: --url); --revoke NAME revokes one;
    else print the local testbed's default token."""
    if args.revoke:
        with connect(args, operator=True) as client:
            revoked = client.revoke_token(args.tenant, args.revoke)
        print(
            f"revoked token {args.revoke!r} of {args.tenant} ({', '.join(t.token_id for t in revoked.tokens)})",
            file=sys.stderr,
        )
        return 0
    if args.rotate or args.name:
        with connect(args, operator=True) as client:
            print(client.rotate_token(args.tenant, args.name).token)
        return 0
    if args.url:
        raise CliError(
            "a control plane keeps only tokens' hashes: issue a new token with "
            f"`testbed tenants token {args.tenant} --rotate --url {args.url} --token OPERATOR_TOKEN`"
        )
    print(local_token(args, args.tenant))
    return 0


TOKEN_COLUMNS = ["subject", "name", "token_id", "created_at", "revoked_at", "active"]


def cmd_tenants_tokens(args: argparse.Namespace) -> int:
    with connect(args, operator=True) as client:
        return emit(args, client.list_tokens(args.tenant), lambda body: model_table(body.tokens, TOKEN_COLUMNS))


def _mlflow_login_text(login: Any) -> str:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in login.env().items()]
    who = f"user {login.username}" + (
        f", workspace {login.workspace}" if login.workspace else " (read-only; pick a tenant's workspace)"
    )
    lines += [
        f"# MLflow UI: {login.tracking_uri}  ({who})",
        "# In a browser: open the UI, log in with the username and password above; choose the workspace "
        "at the top of the page.",
        '# In a shell: eval "$(testbed mlflow login)" then use mlflow / MlflowClient as usual.',
    ]
    return "\n".join(lines)


def cmd_mlflow_login(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return emit(args, client.mlflow_credentials(), _mlflow_login_text)


def _templates(args: argparse.Namespace) -> TemplateList:
    """The control plane's templates; without an address or token, the catalog this CLI ships with."""
    try:
        client = connect(args)
    except TestbedError:
        return TemplateList(templates=list_templates())
    with client:
        return client.templates()


def _templates_table(body: TemplateList) -> str:
    rows = [[t.name, t.kind, t.industry, ", ".join(f"{p.name}={p.default}" for p in t.params)] for t in body.templates]
    return render_table(["NAME", "KIND", "INDUSTRY", "PARAMS"], rows)


def cmd_templates_list(args: argparse.Namespace) -> int:
    return emit(args, _templates(args), _templates_table)


def _param_range(param: Any) -> str:
    if param.choices:
        return " | ".join(param.choices)
    if param.minimum is None and param.maximum is None:
        return "true | false" if param.type == "bool" else "any"
    low = "" if param.minimum is None else f"{param.minimum:g}"
    high = "" if param.maximum is None else f"{param.maximum:g}"
    return f"{low}..{high}"


def _template_text(template: Any) -> str:
    head = f"{template.name} ({template.kind}): {template.industry}\n{template.description}\n\n"
    rows = [
        [p.name, p.type, "(required)" if p.default is None else str(p.default), _param_range(p), p.help]
        for p in template.params
    ]
    usage_hint = (
        f"\n\nsubmit: testbed submit --template {template.name} --param NAME=VALUE ... --wait"
        "\nyour data: --param data_path=testbed-data://NAME (a file or a folder you uploaded)"
    )
    return head + render_table(["PARAM", "TYPE", "DEFAULT", "RANGE", "MEANING"], rows) + usage_hint


def cmd_templates_show(args: argparse.Namespace) -> int:
    found = next((t for t in _templates(args).templates if t.name == args.name), None)
    if found is None:
        raise CliError(f"no template {args.name!r}; known: {', '.join(t.name for t in list_templates())}")
    return emit(args, found, _template_text)


def cmd_usage(args: argparse.Namespace) -> int:
    """Print the usage table (or JSON) and write the settlement CSV and burn-down plot asked for."""
    with connect(args) as client:
        report = client.usage(tenant=args.tenant, series=bool(args.plot))
    try:
        if args.csv:
            usage.write_csv(report, args.csv)
        if args.plot:
            usage.plot_burndown(report, args.plot)
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename}: {exc.strerror}") from None
    if args.json:
        print_json(report, exclude={"tenants": {"__all__": {"burn"}}})
    else:
        print(usage.render_table(report))
    for label, target in (("settlement CSV", args.csv), ("burn-down plot", args.plot)):
        if target:
            print(f"wrote {label} to {target}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    tenants = sub.add_parser("tenants", help="the region's tenants and their tokens").add_subparsers(
        dest="tenants_command", required=True
    )
    add_command(tenants, "list", cmd_tenants_list, "list the region's tenants (the operator's view by default)")
    tenant_exit.register(tenants)  # export, purge
    p = add_command(
        tenants,
        "token",
        cmd_tenants_token,
        "print a tenant's token (local testbed); --rotate issues a new one (operator token)",
        json_flag=False,
    )
    p.add_argument("tenant", metavar="ID")
    p.add_argument("--rotate", action="store_true", help="issue a new token; the old one stops working")
    p.add_argument("--name", help="issue (or re-issue) the token of this person (operator); printed once")
    p.add_argument("--revoke", metavar="NAME", help="revoke the named token (operator); it stops working")
    p = add_command(tenants, "tokens", cmd_tenants_tokens, "list a tenant's (or `operator`'s) named tokens (operator)")
    p.add_argument("tenant", metavar="ID")

    mlflow = sub.add_parser("mlflow", help="your MLflow login").add_subparsers(dest="mlflow_command", required=True)
    add_command(
        mlflow,
        "login",
        cmd_mlflow_login,
        "print `export MLFLOW_*=...` lines of your token's MLflow login (eval them), and the UI address",
    )

    templates = sub.add_parser("templates", help="job templates").add_subparsers(
        dest="templates_command", required=True
    )
    add_command(templates, "list", cmd_templates_list, "list templates with their kind and parameters")
    p = add_command(
        templates, "show", cmd_templates_show, "one template's parameters: types, defaults, ranges, meaning"
    )
    p.add_argument("name", metavar="NAME")

    p = add_command(sub, "usage", cmd_usage, "allocated GPU/CPU hours per tenant against its grant")
    p.description = "Per-tenant metered use. A tenant token shows its own; the operator token shows every tenant."
    p.add_argument("--tenant", help="only this tenant (operator token)")
    p.add_argument("--csv", metavar="FILE", help="write a settlement CSV, one row per tenant")
    p.add_argument("--plot", metavar="FILE.png", help="draw each tenant's grant burn-down (PNG)")
