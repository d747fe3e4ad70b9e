"""What every portal page shares: the portal's state (sessions, catalogues, templates, the in-process API
client), rendering, the session and CSRF checks, and small helpers (languages, months, safe redirects)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from operators.portal import i18n
from operators.portal.client import Api, ApiError, internal_client
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


async def portal_of(request: Request) -> Portal:
    """The app's portal (made by :func:`install`; ``async``: no worker-thread hop to read it)."""
    return request.app.state.portal


PortalDep = Annotated[Portal, Depends(portal_of)]


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


def form_text(form: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def quote_path(value: str) -> str:
    return url_quote(value, safe="")
