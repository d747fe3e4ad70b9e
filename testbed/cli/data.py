"""``testbed data upload|ls|get|rm``: your data, and with ``--job ID`` a job's outputs (checkpoints), through the SDK."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from testbed.cli.common import CliError, add_command, connect, emit
from testbed.client import TestbedClient
from testbed.storage import DATA_SCHEME, DeletedObjects, ObjectList, StoredObject
from testbed.tables import model_table

FILE_COLUMNS = ["name", "size", "modified_at"]


def _listing(client: TestbedClient, args: argparse.Namespace) -> ObjectList:
    """One page with --limit, else every file (one list, no cursor)."""
    if args.job:
        if args.limit:
            return client.list_outputs(args.job, args.prefix, limit=args.limit)
        return ObjectList(objects=list(client.iter_outputs(args.job, args.prefix)))
    if args.limit:
        return client.list_data(args.prefix, limit=args.limit)
    return ObjectList(objects=list(client.iter_data(args.prefix)))


def cmd_data_upload(args: argparse.Namespace) -> int:
    with connect(args) as client:
        stored = client.upload_data(args.local, args.name)
    return emit(args, stored, lambda s: f"{s.name} ({s.size} bytes): use it as {DATA_SCHEME}{s.name}")


def cmd_data_ls(args: argparse.Namespace) -> int:
    with connect(args) as client:
        listing = _listing(client, args)
    return emit(args, listing, lambda body: model_table(body.objects, FILE_COLUMNS, right={1}))


def cmd_data_get(args: argparse.Namespace) -> int:
    dest = Path(args.dest or Path(args.name).name)
    if dest.is_dir():
        dest = dest / Path(args.name).name
    with connect(args) as client:
        if args.job:
            path = client.download_output(args.job, args.name, dest)
        else:
            path = client.download_data(args.name, dest)
    stored = StoredObject(name=args.name, size=path.stat().st_size)
    return emit(args, stored, lambda s: f"{s.name} -> {path} ({s.size} bytes)")


def cmd_data_rm(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.job):
        raise CliError("give a data NAME to remove, or --job ID to remove that job's outputs (not both)")
    with connect(args) as client:
        removed = client.delete_outputs(args.job) if args.job else client.delete_data(args.name)
    return emit(args, removed, _removed_line)


def _removed_line(removed: DeletedObjects) -> str:
    return f"removed {len(removed.deleted)} files ({removed.bytes} bytes)"


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="your data in the testbed's storage, and jobs' outputs").add_subparsers(
        dest="data_command", required=True)
    p = add_command(data, "upload", cmd_data_upload, "upload a file to your data (jobs name it testbed-data://NAME)")
    p.add_argument("local", metavar="LOCAL")
    p.add_argument("name", metavar="NAME", nargs="?", help="its name in your data (default: the file's name)")
    p = add_command(data, "ls", cmd_data_ls, "list your data (or, with --job, a job's outputs)")
    p.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    p.add_argument("--limit", type=int, help="one page of this many (default: everything)")
    p = add_command(data, "get", cmd_data_get, "download a data file (or, with --job, one of a job's outputs)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("dest", metavar="DEST", nargs="?", help="file or folder (default: the name's last part, here)")
    p = add_command(data, "rm", cmd_data_rm, "remove a data file, or with --job ID everything that job wrote")
    p.add_argument("name", metavar="NAME", nargs="?")
    for parser in (data.choices["ls"], data.choices["get"], data.choices["rm"]):
        parser.add_argument("--job", metavar="ID", help="a job's outputs (checkpoints) instead of your data")
