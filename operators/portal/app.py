"""The portal: server-rendered pages under ``/portal``, served by the control plane's own app.

``install(app)`` mounts the router and the vendored static files. Every page reads and writes
through the control plane's REST API in process with the session's token (:mod:`.client`), so a
page shows exactly what the API would show that token: another company's job is a 404 here too.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from operators.portal import i18n
from operators.portal.charts import BurnDown, burn_down_svg
from operators.portal.client import Api, ApiError, internal_client
from operators.portal.forms import NOTE_ENV, FormError, spec_from_form, template_fields
from operators.portal.sessions import COOKIE, Session, SessionStore

PREFIX = "/portal"
HERE = Path(__file__).parent
LANG_COOKIE = "tb_lang"
LOGIN_CSRF_COOKIE = "tb_login_csrf"
PROMETHEUS_ENV = "TESTBED_PROMETHEUS_URL"  # the region's Prometheus, for the operator's alerts page
PAGE_SIZE = 50
LOG_TAIL_CHARS = 20_000
WRITE_ROLES = ("tenant", "operator")


def N_(msgid: str) -> str:
    """Marks a msgid for the catalogue check; translated where it is shown."""
    return msgid


STATUS_LABELS = {
    "PENDING": N_("Pending"),
    "RUNNING": N_("Running"),
    "SUCCEEDED": N_("Succeeded"),
    "FAILED": N_("Failed"),
    "STOPPED": N_("Stopped"),
}
ERROR_TITLES = {404: N_("Not found"), 403: N_("Not allowed"), 422: N_("Check the form"), 503: N_("Unavailable")}


class PortalRedirect(Exception):
    """Send the browser elsewhere (the login page)."""

    def __init__(self, url: str):
        self.url = url


class Portal:
    """The portal's state: sessions, catalogues, templates and the in-process API client."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.sessions = SessionStore()
        self.catalogues = i18n.Catalogues()
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._http: httpx.AsyncClient | None = None
        self.prometheus_url = os.environ.get(PROMETHEUS_ENV) or None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = internal_client(self.app)
        return self._http

    def api(self, session: Session) -> Api:
        return Api(self.http, session.token)

    # -- sessions ---------------------------------------------------------------------------
    def session(self, request: Request) -> Session:
        """The request's session, or a redirect to the login page (keeping where the user was going)."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise PortalRedirect(f"{PREFIX}/login?{urlencode({'next': target})}")
        wanted = request.query_params.get("lang")
        if wanted in i18n.LANGUAGES:
            session.lang = wanted
        return session

    async def checked_form(self, request: Request, session: Session) -> dict[str, Any]:
        """The POSTed form, after its CSRF token (field ``csrf`` or header ``X-CSRF-Token``) matched the session's."""
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or form.get("csrf")
        if not session.csrf_ok(sent if isinstance(sent, str) else None):
            raise ApiError(403, "csrf", "csrf")
        return dict(form)

    async def write_form(self, request: Request, session: Session) -> dict[str, Any]:
        """:meth:`checked_form` for a page that changes something: a read-only session (the program office) is
        refused here with 403, before the API is asked."""
        form = await self.checked_form(request, session)
        if session.role not in WRITE_ROLES:
            raise ApiError(403, "forbidden", f"the {session.role} login is read-only")
        return form

    # -- rendering --------------------------------------------------------------------------
    def render(
        self,
        request: Request,
        name: str,
        lang: str,
        session: Session | None = None,
        http_status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        gettext = lambda msgid: self.catalogues.gettext(lang, msgid)  # noqa: E731
        here = request.url.path
        params = {k: v for k, v in request.query_params.items() if k != "lang"}
        switch = {other: f"{here}?{urlencode({**params, 'lang': other})}" for other in i18n.LANGUAGES}
        html = self.env.get_template(name).render(
            _=gettext,
            lang=lang,
            session=session,
            csrf=session.csrf if session else "",
            prefix=PREFIX,
            switch=switch,
            here=here,
            won=lambda v: i18n.won(v, lang),
            num=i18n.number,
            long_date=lambda v: i18n.long_date(v, lang),
            when=lambda v: i18n.short_datetime(v, lang),
            short_date=i18n.short_date,
            status_label=lambda s: gettext(STATUS_LABELS.get(s, s)),
            can_write=bool(session and session.role in WRITE_ROLES),
            **context,
        )
        response = HTMLResponse(html, status_code=http_status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
        )
        if request.query_params.get("lang") in i18n.LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="strict", path=PREFIX)
        return response

    def error_page(self, request: Request, error: ApiError) -> HTMLResponse:
        session = self.sessions.get(request.cookies.get(COOKIE))
        lang = i18n.pick_language(
            request.query_params.get("lang"), session.lang if session else request.cookies.get(LANG_COOKIE)
        )
        status = error.status if error.status in ERROR_TITLES else 503
        return self.render(
            request,
            "error.html",
            lang,
            session,
            http_status=status,
            title=ERROR_TITLES[status],
            detail=error.detail if status in (422, 503) and error.code != "csrf" else "",
        )


def portal_of(request: Request) -> Portal:
    """The app's portal (made by :func:`install`)."""
    return request.app.state.portal


PortalDep = Annotated[Portal, Depends(portal_of)]
router = APIRouter(prefix=PREFIX, include_in_schema=False)


def set_session_cookie(request: Request, response: Response, sid: str) -> None:
    response.set_cookie(
        COOKIE, sid, httponly=True, samesite="strict", path=PREFIX, secure=request.url.scheme == "https"
    )


def months_back(today: dt.date, count: int) -> list[str]:
    """``YYYY-MM`` of this month and the ``count - 1`` before it, newest first."""
    year, month, out = today.year, today.month, []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out


def kst_today() -> dt.date:
    return dt.datetime.now(i18n.KST).date()


def safe_next(target: str | None, default: str) -> str:
    """Only a portal path (never another site) after login."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def lang_of(request: Request, session: Session | None = None) -> str:
    return i18n.pick_language(
        request.query_params.get("lang"), session.lang if session else request.cookies.get(LANG_COOKIE)
    )


# -- login / logout ---------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, portal: PortalDep) -> Response:
    import secrets

    lang = lang_of(request)
    csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = portal.render(
        request, "login.html", lang, None, login_csrf=csrf, next=request.query_params.get("next", ""), failed=False
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=PREFIX)
    return response


@router.post("/login")
async def login(request: Request, portal: PortalDep) -> Response:
    from operators.control_plane.auth import hash_token

    form = await request.form()
    lang = i18n.pick_language(str(form.get("lang", "")), request.cookies.get(LANG_COOKIE))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    token = str(form.get("token", "")).strip()
    principal = None
    if expected and form.get("csrf") == expected and 0 < len(token) <= 200:
        tokens = request.app.state.plane.tokens
        principal = await run_in_threadpool(tokens.resolve, hash_token(token))
    if principal is None or principal.role == "monitoring":
        response = portal.render(
            request,
            "login.html",
            lang,
            None,
            http_status=401,
            login_csrf=expected or "",
            next=str(form.get("next", "")),
            failed=True,
        )
        return response
    session = Session(token=token, subject=principal.subject, role=principal.role, lang=lang)
    sid = portal.sessions.create(session)
    home = f"{PREFIX}/operator" if principal.role != "tenant" else f"{PREFIX}/jobs"
    response = RedirectResponse(safe_next(str(form.get("next", "")), home), status_code=303)
    set_session_cookie(request, response, sid)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    await portal.checked_form(request, session)
    portal.sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/")
@router.get("")
def home(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    return RedirectResponse(f"{PREFIX}/operator" if session.role != "tenant" else f"{PREFIX}/jobs", status_code=303)


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
        result = await portal.api(session).post("/v1/jobs/quote", spec_from_form(template, _text(form)))
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
    values = _text(form)
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


# -- statements -------------------------------------------------------------------------
@router.get("/statements")
async def statements(request: Request, portal: PortalDep, month: str | None = None) -> Response:
    session = portal.session(request)
    months = months_back(kst_today(), 12)
    month = month if month in months else months[0]
    statement, problem = None, ""
    try:
        statement = await portal.api(session).get(f"/v1/statements/{month}")
    except ApiError as exc:
        if exc.status not in (404, 503):
            raise
        problem = exc.detail
    return portal.render(
        request,
        "statements.html",
        session.lang,
        session,
        months=months,
        month=month,
        statement=statement,
        problem=problem,
        is_operator=session.is_operator,
    )


@router.get("/statements/{month}/download")
async def download(
    request: Request, portal: PortalDep, month: str, format: str = "csv", tenant: str | None = None
) -> Response:
    session = portal.session(request)
    if format not in ("csv", "xlsx", "pdf"):
        raise ApiError(404, "not_found", format)
    answer = await portal.api(session).request(
        "GET",
        f"/v1/statements/{quote_path(month)}/download",
        params={"format": format, **({"tenant": tenant} if tenant else {})},
    )
    headers = {k: v for k, v in answer.headers.items() if k.lower() in ("content-disposition",)}
    return Response(answer.content, media_type=answer.headers.get("content-type"), headers=headers)


@router.post("/statements/{month}/close")
async def close_month(request: Request, portal: PortalDep, month: str) -> Response:
    session = portal.session(request)
    await portal.write_form(request, session)
    await portal.api(session).post(f"/v1/statements/{quote_path(month)}/close")
    return RedirectResponse(f"{PREFIX}/statements?month={url_quote(month)}", status_code=303)


# -- operator ---------------------------------------------------------------------------
@router.get("/operator")
async def operator(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    if session.role == "tenant":
        raise ApiError(404, "not_found", "operator")
    api = portal.api(session)
    report = await api.get("/v1/usage")
    stopped = (await api.get("/v1/jobs", status="STOPPED", limit=PAGE_SIZE))["jobs"]
    enforced = [j for j in stopped if "enforcement" in (j.get("message") or "")]
    alerts, alerts_problem = await _alerts(portal)
    return portal.render(
        request,
        "operator.html",
        session.lang,
        session,
        tenants=report["tenants"],
        enforced=enforced,
        alerts=alerts,
        alerts_problem=alerts_problem,
        prometheus=portal.prometheus_url,
    )


async def _alerts(portal: Portal) -> tuple[list[dict[str, Any]], str]:
    if not portal.prometheus_url:
        return [], "unconfigured"
    try:
        async with httpx.AsyncClient(timeout=3.0) as http:
            response = await http.get(portal.prometheus_url.rstrip("/") + "/api/v1/alerts")
            response.raise_for_status()
        alerts = response.json()["data"]["alerts"]
    except (httpx.HTTPError, ValueError, KeyError):
        return [], "unreachable"
    return [a for a in alerts if a.get("state") == "firing"], ""


@router.get("/operator/tokens")
async def tokens(request: Request, portal: PortalDep) -> Response:
    session = portal.session(request)
    if not session.is_operator:
        raise ApiError(404, "not_found", "tokens")
    tenants = (await portal.api(session).get("/v1/tenants"))["tenants"]
    return portal.render(request, "tokens.html", session.lang, session, tenants=tenants, issued=None)


@router.post("/operator/tokens/{subject}")
async def rotate(request: Request, portal: PortalDep, subject: str) -> Response:
    session = portal.session(request)
    await portal.write_form(request, session)
    issued = await portal.api(session).post(f"/v1/tenants/{quote_path(subject)}/token")
    tenants = (await portal.api(session).get("/v1/tenants"))["tenants"]
    return portal.render(request, "tokens.html", session.lang, session, tenants=tenants, issued=issued)


@router.get("/operator/audit")
async def audit(request: Request, portal: PortalDep, cursor: str | None = None, tenant: str | None = None) -> Response:
    session = portal.session(request)
    if session.role == "tenant":
        raise ApiError(404, "not_found", "audit")
    page, problem = {"entries": [], "next_cursor": None}, ""
    try:
        page = await portal.api(session).get("/v1/audit", cursor=cursor or None, tenant=tenant or None, limit=PAGE_SIZE)
    except ApiError as exc:
        if exc.status != 404:
            raise
        problem = exc.detail
    return portal.render(
        request,
        "audit.html",
        session.lang,
        session,
        entries=page["entries"],
        next_cursor=page.get("next_cursor"),
        problem=problem,
    )


def _text(form: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def quote_path(value: str) -> str:
    return url_quote(value, safe="")


def install(app: FastAPI) -> Portal:
    """The portal's state, error handlers and static files (/portal/static) on ``app`` (the control plane);
    the app includes :data:`router` (the pages under /portal) beside its API routers."""
    portal = Portal(app)
    app.state.portal = portal

    @app.exception_handler(PortalRedirect)
    async def _redirect(_request: Request, exc: PortalRedirect) -> Response:
        return RedirectResponse(exc.url, status_code=303)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        if exc.status == 401:  # the token was rotated or revoked: the session ends
            portal.sessions.drop(request.cookies.get(COOKIE))
            response = RedirectResponse(f"{PREFIX}/login", status_code=303)
            response.delete_cookie(COOKIE, path=PREFIX)
            return response
        return portal.error_page(request, exc)

    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="portal-static")
    return portal
