"""``testbed data upload|ls|get|rm``: your data, and with ``--job ID`` a job's outputs (checkpoints), through the SDK."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from testbed.cli.common import CliError, add_command, connect, emit
from testbed.client import TestbedClient
from testbed.storage import DATA_SCHEME, DeletedObjects, FolderTransfer, ObjectList, StoredObject
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


class ProgressBar:
    """A one-line progress bar on stderr (redrawn on a terminal, every 10% otherwise); silent with --json."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled, self.tty = label, enabled, sys.stderr.isatty()
        self.started, self.shown = time.monotonic(), -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        share = done / total if total else 1.0
        tenth = int(share * 10)
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        bar = "#" * int(share * 30)
        rate = done / max(time.monotonic() - self.started, 1e-6) / 2**20
        line = f"  {self.label} [{bar:<30}] {share:4.0%} {done / 2**20:.1f}/{total / 2**20:.1f} MiB {rate:.1f} MiB/s"
        print(
            ("\r" if self.tty else "") + line,
            end="" if self.tty and done < total else "\n",
            file=sys.stderr,
            flush=True,
        )


def cmd_data_upload(args: argparse.Namespace) -> int:
    local = Path(args.local)
    with connect(args) as client:
        if local.is_dir():
            bar = ProgressBar(f"upload {local}", not args.json)
            folder = client.upload_folder(local, args.name, workers=args.parallel, progress=bar)
            return emit(args, folder, _folder_line)
        stored = client.upload_data(args.local, args.name)
    return emit(
        args, stored, lambda s: f"{s.name} ({s.size} bytes, sha256 {s.sha256}): use it as {DATA_SCHEME}{s.name}"
    )


def _folder_line(folder: FolderTransfer) -> str:
    skipped = f", {len(folder.skipped)} already there (same size and SHA-256)" if folder.skipped else ""
    return (
        f"{folder.folder}/: {len(folder.transferred)} files ({folder.bytes} bytes) sent{skipped}: "
        f"use it as {DATA_SCHEME}{folder.folder}"
    )


def cmd_data_ls(args: argparse.Namespace) -> int:
    with connect(args) as client:
        listing = _listing(client, args)
    return emit(args, listing, lambda body: model_table(body.objects, FILE_COLUMNS, right={1}))


def cmd_data_get(args: argparse.Namespace) -> int:
    if args.name.endswith("/") and not args.job:
        dest = Path(args.dest or Path(args.name.rstrip("/")).name)
        with connect(args) as client:
            folder = client.download_folder(
                args.name, dest, workers=args.parallel, progress=ProgressBar(f"get {args.name}", not args.json)
            )
        return emit(args, folder, lambda f: f"{f.folder}/ -> {dest} ({len(f.transferred)} files, {f.bytes} bytes)")
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
        if args.name and args.name.endswith("/"):
            from testbed.folders import folder_size

            name, files = folder_size(client, args.name)
            if not args.yes:
                if not sys.stdin.isatty():
                    raise CliError(
                        f"removing data folder {name}/ ({len(files)} files, {sum(f.size for f in files)} bytes) "
                        "needs --yes when not asked on a terminal"
                    )
                answer = input(
                    f"remove data folder {name}/: {len(files)} files, {sum(f.size for f in files)} bytes? [y/N] "
                )
                if answer.strip().lower() not in ("y", "yes"):
                    raise CliError(f"kept data folder {name}/")
            removed = client.delete_folder(name)
        else:
            removed = client.delete_outputs(args.job) if args.job else client.delete_data(args.name)
    return emit(args, removed, _removed_line)


def _removed_line(removed: DeletedObjects) -> str:
    return f"removed {len(removed.deleted)} files ({removed.bytes} bytes)"


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="your data in the testbed's storage, and jobs' outputs").add_subparsers(
        dest="data_command", required=True
    )
    p = add_command(
        data,
        "upload",
        cmd_data_upload,
        "upload a file or a folder to your data (jobs name it "
        "testbed-data://NAME); a folder goes recursively, in parallel, skipping files already stored with "
        "the same size and SHA-256 (run it again to resume)",
    )
    p.add_argument("local", metavar="LOCAL", help="a file, or a folder (e.g. images in class sub-folders)")
    p.add_argument(
        "name", metavar="NAME", nargs="?", help="its name in your data (default: the file's or folder's name)"
    )
    p = add_command(data, "ls", cmd_data_ls, "list your data (or, with --job, a job's outputs)")
    p.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    p.add_argument("--limit", type=int, help="one page of this many (default: everything)")
    p = add_command(data, "get", cmd_data_get, "download a data file (or, with --job, one of a job's outputs)")
    p.add_argument("name", metavar="NAME", help="a file, or a folder as NAME/")
    p.add_argument("dest", metavar="DEST", nargs="?", help="file or folder (default: the name's last part, here)")
    p = add_command(
        data,
        "rm",
        cmd_data_rm,
        "remove a data file, a folder (NAME/, after a confirmation with its file "
        "count), or with --job ID everything that job wrote",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="a file, or a folder as NAME/")
    p.add_argument("--yes", "-y", action="store_true", help="remove a folder without asking")
    for parser in (data.choices["upload"], data.choices["get"]):
        parser.add_argument(
            "--parallel", type=int, default=4, metavar="N", help="files at a time for a folder (default 4)"
        )
    for parser in (data.choices["ls"], data.choices["get"], data.choices["rm"]):
        parser.add_argument("--job", metavar="ID", help="a job's outputs (checkpoints) instead of your data")
