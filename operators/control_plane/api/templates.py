"""``GET /v1/templates``: the job templates."""

from __future__ import annotations

from fastapi import APIRouter

from operators.control_plane.api.deps import Caller
from operators.control_plane.errors import error_responses
from testbed.api import TemplateList
from testbed.templates import list_templates

router = APIRouter()


@router.get("/v1/templates", response_model=TemplateList, responses=error_responses(401, 503))
def templates(_caller: Caller) -> TemplateList:
    return TemplateList(templates=list_templates())
