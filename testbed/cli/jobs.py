"""``testbed submit`` and ``testbed jobs list|show|logs|stop|wait``, through the SDK."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from pydantic import ValidationError

from testbed import progress
from testbed.cli.common import EXIT_ERROR, CliError, add_command, connect, emit
from testbed.client import TestbedClient, TestbedError
from testbed.quantities import parse_memory
from testbed.errors import format_validation_errors
from testbed.jobs import Job, JobLogs, JobSpec, JobStatus
from testbed.money import Quote, format_duration, parse_duration, won
from testbed.tables import model_table
from testbed.templates import TemplateError, get_template

JOB_COLUMNS = ["id", "tenant", "name", "status", "cpus", "gpus", "submitted_at", "started_at", "ended_at"]


def _parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {pair!r} must look like KEY=VALUE")
        out[key] = value
    return out


def _typed_params(template: str, raw: dict[str, str]) -> dict[str, Any]:
    """``--param`` text as each param's type (the API takes JSON numbers and booleans); text the
    template's own parser refuses is sent as it is, for the control plane to say why."""
    try:
        typed = get_template(template).params_model.model_validate(raw).model_dump()
    except (TemplateError, ValidationError):
        return dict(raw)
    return {name: typed[name] for name in raw}


def build_spec(args: argparse.Namespace) -> JobSpec:
    """The job spec the submit flags describe, checked here before anything is sent."""
    if args.command_argv and args.template:
        raise CliError("give either --template NAME or a command after `--`, not both")
    if not args.command_argv and not args.template:
        raise CliError(
            "nothing to run: give --template NAME or a command after `--` (e.g. testbed submit -- python train.py)"
        )
    if args.param and not args.template:
        raise CliError("--param only applies with --template")
    fields: dict[str, Any] = (
        {"entrypoint": shlex.join(args.command_argv)}
        if args.command_argv
        else {"template": args.template, "params": _typed_params(args.template, _parse_pairs(args.param, "--param"))}
    )
    if args.exclude and not args.working_dir:
        raise CliError("--exclude only applies with --working-dir")
    fields.update({name: getattr(args, name) for name in ("name", "cpus", "gpus") if getattr(args, name) is not None})
    if args.memory is not None:
        try:
            fields["memory"] = parse_memory(args.memory)
        except ValueError as exc:
            raise CliError(f"--memory: {exc}") from None
    if args.env:
        fields["env"] = _parse_pairs(args.env, "--env")
    if args.max_runtime is not None:
        try:
            fields["max_runtime_seconds"] = parse_duration(args.max_runtime)
        except ValueError as exc:
            raise CliError(f"--max-runtime: {exc}") from None
    try:
        return JobSpec(**fields)
    except ValidationError as exc:
        raise CliError(f"invalid job: {format_validation_errors(exc.errors())}") from None


def _wait(client: TestbedClient, job_id: str, timeout: float, quiet: bool) -> Job:
    reporter = progress.JobProgress(job_id, enabled=not quiet)
    try:
        return client.wait(job_id, timeout=timeout, on_update=reporter.update)
    finally:
        reporter.done()


def _result_line(job: Job) -> str:
    return f"{job.id} {job.status.value}" + (f": {job.message}" if job.message else "")


LOG_TAIL_LINES = 30


def _ended(args: argparse.Namespace, job: Job, client: TestbedClient | None = None) -> int:
    """Print the ended job, then its ``result:`` line (or, when it failed, the tail of its log); exit 0 only if it
    succeeded."""
    emit(args, job, _result_line)
    if client is not None and not args.json:
        try:
            lines = client.logs(job.id).logs.splitlines()
        except TestbedError:
            lines = []
        results = [line for line in lines if line.startswith(("result:", "PASS ", "FAIL ", "run_id="))]
        if job.status is JobStatus.SUCCEEDED and results:
            print(results[-1])
        elif job.status is not JobStatus.SUCCEEDED and lines:
            print(
                f"  .. the last {min(len(lines), LOG_TAIL_LINES)} lines of its log (testbed jobs logs {job.id}):",
                file=sys.stderr,
            )
            print("\n".join(lines[-LOG_TAIL_LINES:]), file=sys.stderr)
    return 0 if job.status is JobStatus.SUCCEEDED else EXIT_ERROR


def cmd_submit(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    with connect(args) as client:
        if args.working_dir:  # packed and uploaded here, as Ray's job client does with a working_dir
            stored = client.upload_package(args.working_dir, args.exclude)
            if not args.json:
                done = "uploaded" if stored.created else "already stored"
                print(f"code: {args.working_dir} -> {stored.ref} ({stored.size} bytes, {done})", file=sys.stderr)
            spec = spec.model_copy(update={"code_package": stored.ref})
        if args.quote:
            quote = client.quote(spec)
            emit(args, quote, _quote_text)
            return 0 if quote.fits else EXIT_ERROR
        job = client.submit(spec)
        if not args.wait:
            return emit(args, job, lambda j: j.id)
        if not args.json:
            print(job.id, flush=True)
        return _ended(args, _wait(client, job.id, args.timeout, quiet=args.json), client)


def _quote_text(quote: Quote) -> str:
    balance = "no grant in won" if quote.balance_krw is None else f"balance {won(quote.balance_krw)}"
    head = (
        f"hold {won(quote.hold_krw)} for at most {format_duration(quote.max_runtime_seconds)} at "
        f"{quote.price_id or 'no price'}; {balance}: "
    )
    return head + ("fits" if quote.fits else f"does NOT fit: {quote.reason}")


def _show(job: Job) -> None:
    for key, value in job.model_dump(mode="json").items():
        print(f"{key:<13} {value if value not in (None, '') else '-'}")


def _print_logs(logs: JobLogs) -> None:
    sys.stdout.write(logs.logs)
    if not logs.final:
        print(f"  .. {logs.id} is {logs.status.value}: logs so far", file=sys.stderr)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        jobs = client.list_jobs(status=args.status, limit=args.limit)
    return emit(args, jobs, lambda body: model_table(body.jobs, JOB_COLUMNS))


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return emit(args, client.get_job(args.job_id), _show)


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return emit(args, client.logs(args.job_id), _print_logs)


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return emit(args, client.stop(args.job_id), lambda job: f"{job.id} {job.status.value}")


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return _ended(args, _wait(client, args.job_id, args.timeout, quiet=args.json), client)


def register(sub: Any) -> None:
    p = add_command(sub, "submit", cmd_submit, "submit a job: --template NAME [--param k=v ...] or -- CMD ARGS...")
    p.description = (
        "Submit a job to the testbed as your company (token: $TESTBED_TOKEN or --token). Either a template "
        "(`testbed templates list`; `testbed templates show NAME` lists its params with types, defaults "
        "and ranges) or your own command after `--`, run in --working-dir. Admission checks your quota "
        "and grant; a refused job leaves nothing behind."
    )
    p.epilog = (
        "examples:\n  testbed submit --template tabular-quality --param data_path=testbed-data://plant.csv "
        "--param target=quality --wait\n  testbed submit --cpus 1 --memory 2Gi --working-dir ./mycode -- "
        "python train.py --lr 0.01"
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--template", metavar="NAME", help="a template from `testbed templates list`")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a template parameter (repeat it); `testbed templates show NAME` lists them. Your data: "
        "data_path=testbed-data://NAME (a file or folder from `testbed data upload`)",
    )
    p.add_argument("--name", help="experiment name (MLflow experiment <tenant>/<name>; default: the template's)")
    p.add_argument(
        "--working-dir",
        metavar="DIR",
        help="a folder here: packed, uploaded, the job's working directory (your own command only; at most 100 MiB)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out of the package (as .testbedignore; .git, __pycache__ are always left out)",
    )
    p.add_argument("--cpus", type=float, help="CPUs the job gets (default 1; at most your quota)")
    p.add_argument("--gpus", type=int, help="GPUs the job gets (default 0; charged to your grant)")
    p.add_argument("--memory", help="memory the job gets, bytes or a quantity such as 4Gi (default: the settings')")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable for the job (repeat it; at most 64)",
    )
    p.add_argument(
        "--max-runtime",
        metavar="DURATION",
        help="stop the job after it ran this long: 90s, 30m, 2h (default: the template's, or 1h)",
    )
    p.add_argument(
        "--quote",
        action="store_true",
        help="only print the hold (maximum cost in won) the job would take and whether it fits; submit nothing",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job to end, then print its result line (or the "
        "tail of its log when it failed); exit non-zero unless it succeeded",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")

    jobs = sub.add_parser("jobs", help="your jobs").add_subparsers(dest="jobs_command", required=True)
    p = add_command(jobs, "list", cmd_jobs_list, "list jobs")
    p.add_argument("--status", choices=[s.value for s in JobStatus])
    p.add_argument("--limit", type=int)
    for name, handler, help in (
        ("show", cmd_jobs_show, "show one job"),
        ("logs", cmd_jobs_logs, "print a job's logs"),
        ("stop", cmd_jobs_stop, "stop a job"),
        ("wait", cmd_jobs_wait, "wait for a job to end"),
    ):
        p = add_command(jobs, name, handler, help)
        p.add_argument("job_id", metavar="ID")
        if handler is cmd_jobs_wait:
            p.add_argument("--timeout", type=float, default=3600.0)
