"""The portal: server-rendered pages under ``/portal``, served by the control plane's own app.

``install(app)`` sets up the portal's state, error pages and the vendored static files; the control plane includes
:data:`router` (login, and the pages of :mod:`.company_pages` and :mod:`.office_pages`). Every page reads and writes
through the control plane's REST API in process with the session's token (:mod:`.client`), so a page shows exactly
what the API would show that token: another company's job is a 404 here too.
"""

from __future__ import annotations


from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from operators.portal import i18n
from operators.portal.client import ApiError
from operators.portal.sessions import COOKIE, Session
from operators.portal import company_pages, office_pages
from operators.portal.web import (
    PREFIX,
    HERE,
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    PortalRedirect,
    Portal,
    PortalDep,
    set_session_cookie,
    safe_next,
    lang_of,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


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


router.include_router(company_pages.router)
router.include_router(office_pages.router)


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
