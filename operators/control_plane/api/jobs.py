"""``/v1/jobs``: submit, list, get, logs and stop a job."""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Annotated, Any, Iterator

from fastapi import APIRouter, Query, Request

from operators.control_plane.admission import Admitted
from operators.control_plane.api.deps import Caller, PathId, Plane
from operators.control_plane.db.store import JobRow
from operators.control_plane.errors import error_responses
from operators.control_plane.guards import CURSOR_PATTERN, decode_cursor, encode_cursor
from operators.control_plane.room import waits_for_room
from operators.metering.burn import grant_notice
from testbed.jobs import Job, JobList, JobLogs, JobSpec, JobStatus
from testbed.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from testbed.money import Quote
from testbed.quantities import format_memory

router = APIRouter()


def iso(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds (``2025-03-01T09:00:00.000Z``)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(row: JobRow, money: tuple[int, int] | None = None) -> Job:
    """A job record as the API answers it; ``money``: its (hold, charged) in won."""
    hold, charged = money or (0, 0)
    return Job(
        id=row.id,
        tenant=row.tenant,
        region=row.region,
        name=row.name,
        status=JobStatus(row.status),
        entrypoint=row.entrypoint,
        template=row.template,
        params=row.spec.get("params", {}),
        cpus=row.cpus,
        gpus=row.gpus,
        gpu_model=row.gpu_model,
        memory=format_memory(row.memory_bytes),
        experiment=row.experiment,
        message=row.message or "",
        submitted_at=iso(row.submitted_at) or "",
        started_at=iso(row.started_at),
        ended_at=iso(row.ended_at),
        backend_ref=row.backend_ref,
        idle_since=iso(row.idle_since),
        idle_gpu_hours=(row.idle_gpu_seconds or 0.0) / 3600.0,
        max_runtime_seconds=row.spec.get("max_runtime_seconds"),
        hold_krw=hold,
        charged_krw=charged,
    )


def view(plane: Any, row: JobRow) -> Job:
    """A job with its hold and charges from the money ledger (and its company's grant notice)."""
    return with_notices(plane, [job_view(row, plane.money.job_money([row.id]).get(row.id))])[0]


def admitted_view(plane: Any, admitted: Admitted, row: JobRow) -> Job:
    """A job just admitted (``row``: as its dispatch left it), with the hold and balance its admission read and wrote:
    no read of its own. Nothing is charged before the sync sees it run. Unpriced, it is :func:`view`."""
    if admitted.balance is None:
        return view(plane, row)
    return noted(job_view(row, (admitted.hold_krw, 0)), grant_notice(admitted.balance))


def with_notices(plane: Any, jobs: list[Job]) -> list[Job]:
    """Jobs whose company has been charged 80% or 100% of its grant say so in their message."""
    notices = plane.grant_notices({job.tenant for job in jobs})
    return [noted(job, notices.get(job.tenant)) for job in jobs]


def noted(job: Job, notice: str | None) -> Job:
    """The job with its company's grant notice (if any) after its message."""
    if not notice:
        return job
    return job.model_copy(update={"message": f"{job.message}; {notice}" if job.message else notice})


@router.post("/v1/jobs", response_model=Job, status_code=201, responses=error_responses(401, 403, 404, 413, 422, 503))
async def submit_job(spec: JobSpec, caller: Caller, plane: Plane, request: Request) -> Job:
    # Admission (checks and one insert) runs on a few threads of its own, never the event loop (a locked
    # database holds up this request, 503 after DB_TIMEOUT_SECONDS, not every other one), and not on dozens of
    # request threads contending for the GIL mid-admission; one caller's admissions take turns with the others'
    # (``TurnsByKey``: a company's sweep holds one of them at most). The backend call runs on the dispatch threads; a job
    # that waits for room in its tenant's quota (admission saw none) has no backend call to make. The admitting
    # thread hands the job to a dispatch thread itself: the event loop wakes once, for the answer.
    answer: Future[Job] = Future()
    dispatchers = request.app.state.dispatchers

    def dispatch(admitted: Admitted) -> None:
        with answering(answer):
            answer.set_result(admitted_view(plane, admitted, plane.dispatch(admitted.row)))

    def admit() -> None:
        if not answer.set_running_or_notify_cancel():
            return  # the request was cancelled before its admission began: nothing done
        with answering(answer):
            admitted = plane.admit_with_balance(caller, spec)
            if waits_for_room(admitted.row.message):
                answer.set_result(admitted_view(plane, admitted, admitted.row))
            else:
                dispatchers.submit(dispatch, admitted)

    request.app.state.admitters.submit(caller.subject, admit)
    return await asyncio.wrap_future(answer)


@contextmanager
def answering(answer: Future[Job]) -> Iterator[None]:
    """An error in the block is the answer's."""
    try:
        yield
    except BaseException as exc:
        answer.set_exception(exc)


@router.post("/v1/jobs/quote", response_model=Quote, responses=error_responses(401, 403, 404, 413, 422, 503))
def quote_job(spec: JobSpec, caller: Caller, plane: Plane) -> Quote:
    """The hold (maximum cost, in won) the same spec would take if submitted now, and whether it fits the grant's
    balance; nothing is submitted or recorded."""
    return plane.quote(caller, spec)


@router.get("/v1/jobs", response_model=JobList, responses=error_responses(401, 422, 503))
def list_jobs(
    caller: Caller,
    plane: Plane,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page")] = None,
) -> JobList:
    after = decode_cursor(cursor) if cursor is not None else None
    rows = plane.list_jobs(caller, status=status, limit=limit + 1, after=after)
    page = rows[:limit]
    money = plane.money.job_money([r.id for r in page])
    return JobList(
        jobs=with_notices(plane, [job_view(r, money.get(r.id)) for r in page]),
        next_cursor=encode_cursor(page[-1]) if len(rows) > limit else None,
    )


@router.get("/v1/jobs/{job_id}", response_model=Job, responses=error_responses(401, 404, 422, 503))
def get_job(job_id: PathId, caller: Caller, plane: Plane) -> Job:
    return view(plane, plane.visible_job(caller, job_id))


@router.get("/v1/jobs/{job_id}/logs", response_model=JobLogs, responses=error_responses(401, 404, 422, 503))
def job_logs(job_id: PathId, caller: Caller, plane: Plane) -> JobLogs:
    row, text, final = plane.logs(caller, job_id)
    return JobLogs(id=row.id, status=JobStatus(row.status), logs=text, final=final)


@router.post("/v1/jobs/{job_id}/stop", response_model=Job, responses=error_responses(401, 404, 422, 503))
def stop_job(job_id: PathId, caller: Caller, plane: Plane) -> Job:
    """Stop a job in any state (queued, starting, running); its ``message`` says what was done."""
    return view(plane, plane.stop(caller, job_id))
