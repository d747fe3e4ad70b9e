"""Statements (a company's own; the operator's and program office's for every company, month close) and the
operator's pages: every tenant's grant and use, enforcement stops, alerts, tokens and the audit trail."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote as url_quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from operators.portal.client import ApiError
from operators.portal.web import (
    PREFIX,
    PAGE_SIZE,
    Portal,
    PortalDep,
    months_back,
    kst_today,
    quote_path,
)

router = APIRouter()


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
