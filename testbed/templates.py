"""The catalogue of job templates: names, kinds and typed parameters.

The catalogue is declarative (no torch import) so the control plane and the CLI can list and
validate templates cheaply; the code that runs lives in ``workloads/`` and is started with
``python -m <module> --template <name> --<param>=<value> ...``.
"""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ParamValue = str | int | float | bool


class TemplateError(ValueError):
    """A template name or parameter is wrong; the message says which and why."""


class TemplateParam(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: Literal["int", "float", "str", "bool"]
    default: ParamValue | None = None
    help: str = ""
    choices: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, raw: ParamValue) -> ParamValue:
        """Turn a raw value (often a CLI string) into this parameter's type, or explain why not."""
        try:
            if self.type == "bool":
                value: ParamValue = _parse_bool(raw)
            elif self.type == "int":
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = int(raw)
            elif self.type == "float":
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
            else:
                value = str(raw)
        except (TypeError, ValueError):
            raise TemplateError(f"param {self.name!r}: {raw!r} is not a valid {self.type}") from None
        if self.choices is not None and str(value) not in self.choices:
            raise TemplateError(f"param {self.name!r}: {value!r} is not one of {self.choices}")
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            raise TemplateError(f"param {self.name!r}: {value!r} is below the minimum {self.minimum}")
        if self.maximum is not None and isinstance(value, (int, float)) and value > self.maximum:
            raise TemplateError(f"param {self.name!r}: {value!r} is above the maximum {self.maximum}")
        return value


def _parse_bool(raw: ParamValue) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


class Template(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["train", "validation", "smoke"]
    industry: str
    description: str
    module: str = Field(description="python module run with `python -m`")
    params: list[TemplateParam] = Field(default_factory=list)

    def resolve(self, raw: dict[str, ParamValue]) -> dict[str, ParamValue]:
        """Defaults overlaid with typed, checked values; unknown names are refused."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise TemplateError(
                f"template {self.name!r} has no param {', '.join(map(repr, unknown))}; "
                f"its params are {sorted(known) or 'none'}"
            )
        resolved = {p.name: p.default for p in self.params if p.default is not None}
        resolved.update({name: known[name].parse(value) for name, value in raw.items()})
        missing = [p.name for p in self.params if p.name not in resolved]
        if missing:
            raise TemplateError(f"template {self.name!r} needs param {', '.join(map(repr, missing))}")
        return resolved

    def command(self, params: dict[str, ParamValue]) -> str:
        """The driver command for resolved params."""
        args = [f"--{name}={value}" for name, value in sorted(params.items())]
        return shlex.join(["python", "-m", self.module, "--template", self.name, *args])


_SMOKE = Template(
    name="smoke",
    kind="smoke",
    industry="any",
    description="A tiny regression fit that logs a few metrics to MLflow: checks the tenant's wiring.",
    module="workloads.smoke",
    params=[
        TemplateParam(name="epochs", type="int", default=5, minimum=1, maximum=1000, help="passes over the data"),
        TemplateParam(name="lr", type="float", default=0.1, minimum=0.0, help="learning rate"),
        TemplateParam(name="seed", type="int", default=0, help="random seed"),
    ],
)

CATALOG: tuple[Template, ...] = (_SMOKE,)


def list_templates() -> list[Template]:
    return list(CATALOG)


def get_template(name: str) -> Template:
    for template in CATALOG:
        if template.name == name:
            return template
    raise TemplateError(f"unknown template {name!r}; known: {', '.join(t.name for t in CATALOG)}")
