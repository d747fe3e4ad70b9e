"""The job form: a template's typed parameters as form fields, and a submitted form as a JobSpec body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOTE_ENV = "JOB_NOTE"  # the form's free-text note reaches the job as this environment variable
MAX_NOTE_CHARS = 500


def N_(msgid: str) -> str:
    """Marks a msgid for the catalogue check (translated where the error is shown)."""
    return msgid


class FormError(ValueError):
    """A form field is wrong: ``field`` names it; the message is already translated by the caller."""

    def __init__(self, field: str, msgid: str, value: str = ""):
        super().__init__(msgid)
        self.field = field
        self.msgid = msgid
        self.value = value


@dataclass
class Field:
    """One input of the form, as the template renders it."""

    name: str
    kind: str  # number | text | select | checkbox
    label: str
    help: str
    value: Any
    required: bool
    step: str = "any"
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = None


def template_fields(template: dict[str, Any], values: dict[str, str] | None = None) -> list[Field]:
    """Form fields for a template of ``GET /v1/templates`` (``values``: what the user typed last time)."""
    values = values or {}
    fields = []
    for param in template.get("params", []):
        name, kind = param["name"], param["type"]
        shown = values.get(f"param.{name}", param.get("default"))
        if param.get("choices"):
            widget = "select"
        elif kind == "bool":
            widget = "checkbox"
            shown = values.get(f"param.{name}") == "on" if values else bool(param.get("default"))
        elif kind in ("int", "float"):
            widget = "number"
        else:
            widget = "text"
        fields.append(
            Field(
                name=name,
                kind=widget,
                label=name,
                help=param.get("help", ""),
                value="" if shown is None else shown,
                required=param.get("default") is None,
                step="1" if kind == "int" else "any",
                minimum=param.get("minimum"),
                maximum=param.get("maximum"),
                choices=param.get("choices"),
            )
        )
    return fields


def _number(raw: str, kind: str, field: str) -> int | float:
    try:
        value = float(raw)
    except ValueError:
        raise FormError(field, N_("Enter a number."), raw) from None
    if kind == "int":
        if not value.is_integer():
            raise FormError(field, N_("Enter a whole number."), raw)
        return int(value)
    return value


def spec_from_form(template: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body for a filled-in form; the API checks ranges and names."""
    params: dict[str, Any] = {}
    for param in template.get("params", []):
        key, kind = f"param.{param['name']}", param["type"]
        raw = form.get(key, "")
        if kind == "bool":
            value = key in form and raw in ("on", "true", "1")
            if value != bool(param.get("default")):
                params[param["name"]] = value
            continue
        raw = raw.strip()
        if raw == "":
            if param.get("default") is None:
                raise FormError(key, N_("This field is required."))
            continue
        params[param["name"]] = _number(raw, kind, key) if kind in ("int", "float") else raw
    spec: dict[str, Any] = {"template": template["name"], "params": params}
    for name, kind in (("cpus", "float"), ("gpus", "int"), ("max_runtime_seconds", "int")):
        raw = form.get(name, "").strip()
        if raw:
            spec[name] = _number(raw, kind, name)
    memory = form.get("memory", "").strip()
    if memory:
        spec["memory"] = memory
    note = form.get("note", "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise FormError("note", N_("The note is too long."), note[:20])
    if note:
        spec["env"] = {NOTE_ENV: note}
    return spec
