"""The company's pages: its jobs (list, form with a quote, a job's live log, stop), its data, its grant (burn-down)
and its registered models."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from operators.portal import i18n
from operators.portal.charts import BurnDown, burn_down_svg
from operators.portal.client import ApiError
from operators.portal.forms import NOTE_ENV, FormError, spec_from_form, template_fields
from operators.portal.sessions import Session
from operators.portal.web import (
    PREFIX,
    PAGE_SIZE,
    LOG_TAIL_CHARS,
    WRITE_ROLES,
    N_,
    STATUS_LABELS,
    PortalRedirect,
    Portal,
    PortalDep,
    kst_today,
    form_text,
    quote_path,
)

router = APIRouter()


# -- jobs -------------------------------------------------------------------------------
@router.get("/jobs")
async def jobs(request: Request, portal: PortalDep, status: str | None = None, cursor: str | None = None) -> Response:
    session = portal.session(request)
    page = await portal.api(session).get("/v1/jobs", status=status or None, cursor=cursor or None, limit=PAGE_SIZE)
    return portal.render(
        request,
        "jobs.html",
        session.lang,
        session,
        jobs=page["jobs"],
        next_cursor=page.get("next_cursor"),
        status=status or "",
        statuses=list(STATUS_LABELS),
    )


@router.get("/jobs/new")
async def new_job(request: Request, portal: PortalDep, template: str | None = None) -> Response:
    session = portal.session(request)
    if session.role not in WRITE_ROLES:
        raise ApiError(403, "forbidden", f"the {session.role} login is read-only")
    return await _job_form(portal, request, session, template, {}, None)


async def _job_form(
    portal: Portal,
    request: Request,
    session: Session,
    name: str | None,
    values: dict[str, Any],
    error: FormError | ApiError | None,
    status: int = 200,
) -> Response:
    catalogue = (await portal.api(session).get("/v1/templates"))["templates"]
    chosen = next((t for t in catalogue if t["name"] == name), None)
    if name and chosen is None:
        raise ApiError(404, "not_found", name)
    fields = template_fields(chosen, values) if chosen else []
    return portal.render(
        request,
        "job_new.html",
        session.lang,
        session,
        http_status=status,
        templates=catalogue,
        template=chosen,
        fields=fields,
        values=values,
        error=error,
        note_env=NOTE_ENV,
    )


@router.post("/jobs/quote")
async def quote_job(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    form = await portal.write_form(request, session)
    result: dict[str, Any] | None = None
    problem = ""
    try:
        template = await _template(portal, session, str(form.get("template", "")))
        result = await portal.api(session).post("/v1/jobs/quote", spec_from_form(template, form_text(form)))
    except FormError as exc:
        problem = portal.catalogues.gettext(session.lang, exc.msgid) + f" ({exc.field})"
    except ApiError as exc:
        if exc.status in (404, 405):  # a control plane without grants in won
            problem = portal.catalogues.gettext(session.lang, N_("Quotes are not available on this control plane."))
        else:
            problem = exc.detail
    return portal.render(request, "_quote.html", session.lang, session, quote=result, problem=problem)


@router.post("/jobs/new")
async def submit_job(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    form = await portal.write_form(request, session)
    values = form_text(form)
    name = values.get("template", "")
    try:
        template = await _template(portal, session, name)
        job = await portal.api(session).post("/v1/jobs", spec_from_form(template, values))
    except (FormError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status not in (403, 409, 413, 422):
            raise
        return await _job_form(portal, request, session, name, values, exc, status=422)
    return RedirectResponse(f"{PREFIX}/jobs/{quote_path(job['id'])}", status_code=303)


async def _template(portal: Portal, session: Session, name: str) -> dict[str, Any]:
    catalogue = (await portal.api(session).get("/v1/templates"))["templates"]
    for template in catalogue:
        if template["name"] == name:
            return template
    raise FormError("template", N_("Choose a template."), name)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, portal: PortalDep, job_id: str) -> Response:
    session = portal.session(request)
    job = await portal.api(session).get(f"/v1/jobs/{quote_path(job_id)}")
    logs = await _logs(portal, session, job_id)
    return portal.render(
        request,
        "job.html",
        session.lang,
        session,
        job=job,
        logs=logs,
        terminal=job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"),
    )


async def _logs(portal: Portal, session: Session, job_id: str) -> dict[str, Any]:
    logs = await portal.api(session).get(f"/v1/jobs/{quote_path(job_id)}/logs")
    text = logs.get("logs") or ""
    logs["tail"] = text[-LOG_TAIL_CHARS:]
    logs["cut"] = len(text) > LOG_TAIL_CHARS
    return logs


@router.get("/jobs/{job_id}/log")
async def job_log(request: Request, portal: PortalDep, job_id: str) -> Response:
    """The log panel alone (htmx polls it every 2 s until the job's logs are final)."""
    session = portal.session(request)
    job = await portal.api(session).get(f"/v1/jobs/{quote_path(job_id)}")
    return portal.render(
        request,
        "_log.html",
        session.lang,
        session,
        job=job,
        logs=await _logs(portal, session, job_id),
        terminal=job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"),
    )


@router.post("/jobs/{job_id}/stop")
async def stop(request: Request, portal: PortalDep, job_id: str) -> Response:
    session = portal.session(request)
    await portal.write_form(request, session)
    await portal.api(session).post(f"/v1/jobs/{quote_path(job_id)}/stop")
    return RedirectResponse(f"{PREFIX}/jobs/{quote_path(job_id)}", status_code=303)


# -- data -------------------------------------------------------------------------------
@router.get("/data")
async def data(request: Request, portal: PortalDep, cursor: str | None = None) -> Response:
    session = portal.session(request)
    return await _data_page(portal, request, session, cursor, None, None)


async def _data_page(
    portal: Portal,
    request: Request,
    session: Session,
    cursor: str | None,
    uploaded: dict | None,
    error: str | None,
    status: int = 200,
) -> Response:
    page: dict[str, Any] = {"objects": [], "next_cursor": None}
    if session.role == "tenant":
        page = await portal.api(session).get("/v1/data", cursor=cursor, limit=PAGE_SIZE)
    return portal.render(
        request,
        "data.html",
        session.lang,
        session,
        http_status=status,
        objects=page["objects"],
        next_cursor=page.get("next_cursor"),
        uploaded=uploaded,
        error=error,
    )


@router.post("/data")
async def upload(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    form = await portal.write_form(request, session)
    upload = form.get("file")
    name = str(form.get("name", "")).strip() or getattr(upload, "filename", "") or ""
    if upload is None or not hasattr(upload, "read") or not name:
        return await _data_page(
            portal,
            request,
            session,
            None,
            None,
            portal.catalogues.gettext(session.lang, N_("Choose a file to upload.")),
            422,
        )

    async def chunks():
        while chunk := await upload.read(1 << 20):
            yield chunk

    try:
        stored = await portal.api(session).put_stream(f"/v1/data/{quote_path(name)}", chunks())
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return await _data_page(portal, request, session, None, None, exc.detail, exc.status)
    return await _data_page(portal, request, session, None, stored, None)


# -- grant ------------------------------------------------------------------------------
@router.get("/grant")
async def grant(request: Request, portal: PortalDep, tenant: str | None = None) -> Response:
    session = portal.session(request)
    wanted = tenant or (session.subject if session.role == "tenant" else None)  # another's: the API's 404
    if wanted is None:
        raise PortalRedirect(f"{PREFIX}/operator")
    report = await portal.api(session).get("/v1/usage", tenant=wanted)
    usage = report["tenants"][0]
    return portal.render(
        request,
        "grant.html",
        session.lang,
        session,
        usage=usage,
        chart=_chart(portal, usage, session.lang),
        hours=_hours(usage),
    )


def _hours(usage: dict[str, Any]) -> dict[str, float | None]:
    used = usage.get("charged_gpu_hours")
    if used is None:
        used = sum((usage.get("gpu_seconds_by_model") or {}).values()) / 3600
    grant_seconds = usage.get("grant_gpu_seconds")
    granted = usage.get("grant_gpu_hours") or (grant_seconds / 3600 if grant_seconds else None)
    return {"used": used, "grant": granted, "remaining": None if granted is None else max(granted - used, 0.0)}


def _chart(portal: Portal, usage: dict[str, Any], lang: str) -> Markup | None:
    if not usage.get("grant_krw") or not usage.get("grant_start") or not usage.get("grant_end"):
        return None
    forecast = usage.get("forecast_exhaustion_date")
    data = BurnDown(
        start=dt.date.fromisoformat(usage["grant_start"]),
        end=dt.date.fromisoformat(usage["grant_end"]),
        grant_krw=int(usage["grant_krw"]),
        remaining_krw=int(usage.get("remaining_krw") or 0),
        today=kst_today(),
        forecast=dt.date.fromisoformat(forecast) if forecast else None,
    )
    t = lambda msgid: portal.catalogues.gettext(lang, msgid)  # noqa: E731
    labels = {
        "plan": t(N_("even use")),
        "actual": t(N_("remaining")),
        "forecast": t(N_("forecast")),
        "description": t(
            N_(
                "Remaining grant in won from the grant's start to its end: even use, "
                "remaining today and the forecast at the current burn rate."
            )
        ),
    }
    return Markup(burn_down_svg(data, t(N_("Grant burn-down")), labels, lambda v: i18n.won(v, lang), i18n.short_date))


# -- models -----------------------------------------------------------------------------
@router.get("/models")
async def models(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    rows, mlflow_url, problem = [], None, ""
    if session.role == "tenant":
        try:
            login = await portal.api(session).get("/v1/mlflow/credentials")
            mlflow_url = login["tracking_uri"].rstrip("/")
            rows = await _registered_models(request, login)
        except ApiError as exc:
            if exc.status not in (404, 503):
                raise
            problem = exc.code
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            problem = type(exc).__name__
    return portal.render(
        request,
        "models.html",
        session.lang,
        session,
        models=rows,
        mlflow_url=mlflow_url,
        problem=problem,
        quote_path=quote_path,
    )


async def _registered_models(request: Request, login: dict[str, Any]) -> list[dict[str, Any]]:
    """The tenant's registered models with their champion, read from MLflow with the tenant's own login."""
    settings = request.app.state.plane.settings
    base = (getattr(settings, "mlflow_tracking_uri", None) or login["tracking_uri"]).rstrip("/")
    headers = {"X-MLFLOW-WORKSPACE": login["workspace"]} if login.get("workspace") else {}
    async with httpx.AsyncClient(timeout=5.0, auth=(login["username"], login["password"])) as http:
        response = await http.get(
            f"{base}/api/2.0/mlflow/registered-models/search", params={"max_results": 100}, headers=headers
        )
        response.raise_for_status()
    rows = []
    for model in response.json().get("registered_models", []):
        aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
        latest = max((int(v["version"]) for v in model.get("latest_versions", [])), default=None)
        rows.append(
            {
                "name": model["name"],
                "champion": aliases.get("champion"),
                "latest": latest,
                "updated": (model.get("last_updated_timestamp") or 0) / 1000 or None,
            }
        )
    return sorted(rows, key=lambda r: r["name"])
