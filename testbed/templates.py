"""The catalogue of job templates: names, kinds and typed parameters.

The catalogue is declarative (no torch import) so the control plane and the CLI can list and
validate templates cheaply; the code that runs lives in ``workloads/`` and is started with
``python -m <module> --template <name> --<param>=<value> ...``.
"""

from __future__ import annotations

import shlex
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from testbed.errors import dotted, format_validation_errors

ParamValue = str | int | float | bool


class TemplateError(ValueError):
    """A template name or parameter is wrong; the message says which and why."""


def _not_bool(value: Any) -> Any:
    """Pydantic's lax mode reads ``true`` as the number 1; a template number refuses it."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def whole_number(value: Any) -> Any:
    """JSON Schema's integer: 16.0 is 16 (strict validation would refuse it); a boolean is no number."""
    value = _not_bool(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


_TYPES: dict[str, Any] = {
    "int": Annotated[int, BeforeValidator(whole_number)],
    "float": Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)],
    "str": Annotated[str, Field(max_length=1024)],
    "bool": bool,
    # names the tenant's data: testbed-data://NAME or an object-store URI inside the tenant's own prefix, checked
    # and resolved at admission (operators/control_plane/data_params.py); "" where the default is synthetic data
    "data": Annotated[str, Field(max_length=1024)],
}


class TemplateParam(BaseModel):
    """One declared parameter: what GET /v1/templates shows and what the params model checks."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: Literal["int", "float", "str", "bool", "data"]
    default: ParamValue | None = None
    help: str = ""
    choices: list[str] | None = Field(default=None, description="allowed values (str params)")
    minimum: float | None = None
    maximum: float | None = None

    def field(self) -> tuple[Any, Any]:
        """This parameter as a pydantic field: (annotation, FieldInfo); no default means required."""
        annotation = Literal[tuple(self.choices)] if self.choices else _TYPES[self.type]
        default = ... if self.default is None else self.default
        return annotation, Field(default, ge=self.minimum, le=self.maximum, description=self.help or None)


class Template(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["train", "validation", "smoke"]
    industry: str
    description: str
    module: str = Field(description="python module run with `python -m`")
    params: list[TemplateParam] = Field(default_factory=list)
    max_runtime_seconds: int = Field(default=1800, description="a job's default max run time")

    @cached_property
    def params_model(self) -> type[BaseModel]:
        """The template's parameters as a pydantic model: typed (CLI strings are parsed), bounded,
        unknown names refused."""
        config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
        return create_model(f"{self.name}-params", __config__=config, **{p.name: p.field() for p in self.params})  # type: ignore[call-overload]

    def resolve(self, raw: dict[str, ParamValue], strict: bool = False) -> dict[str, ParamValue]:
        """Defaults overlaid with typed, checked values; TemplateError naming param, value and reason.

        ``strict`` (the API): each value has its param's JSON type; else text is parsed (``--epochs=5``).
        """
        try:
            return self.params_model.model_validate(raw, strict=strict).model_dump()
        except ValidationError as exc:
            errors = exc.errors()
            message = format_validation_errors(errors, path=lambda loc: f"param {dotted(loc)!r}")
            if any(e["type"] == "extra_forbidden" for e in errors):
                message += f" (its params: {', '.join(p.name for p in self.params) or 'none'})"
            raise TemplateError(f"template {self.name!r}: {message}") from None

    def command(self, params: dict[str, ParamValue]) -> str:
        """The driver command for resolved params."""
        args = [f"--{name}={value}" for name, value in sorted(params.items())]
        return shlex.join(["python", "-m", self.module, "--template", self.name, *args])


_SMOKE = Template(
    name="smoke",
    kind="smoke",
    max_runtime_seconds=600,
    industry="any",
    description="A tiny regression fit that logs a few metrics to MLflow: checks the tenant's wiring.",
    module="workloads.smoke",
    params=[
        TemplateParam(name="epochs", type="int", default=5, minimum=1, maximum=1000, help="passes over the data"),
        TemplateParam(name="lr", type="float", default=0.1, minimum=0.0, help="learning rate"),
        TemplateParam(name="seed", type="int", default=0, help="random seed"),
    ],
)


def _training_params(epochs: int, batch_size: int, lr: float, width: int) -> list[TemplateParam]:
    """Params every training template has."""
    return [
        TemplateParam(name="epochs", type="int", default=epochs, minimum=1, maximum=10000, help="passes over the data"),
        TemplateParam(
            name="batch_size",
            type="int",
            default=batch_size,
            minimum=1,
            maximum=65536,
            help="samples per batch per worker",
        ),
        TemplateParam(name="lr", type="float", default=lr, minimum=0.0, maximum=10.0, help="Adam learning rate"),
        TemplateParam(
            name="width",
            type="int",
            default=width,
            minimum=1,
            maximum=4096,
            help="model width (channels or hidden units)",
        ),
        TemplateParam(name="seed", type="int", default=0, help="random seed (data generation, split, initialisation)"),
        TemplateParam(
            name="val_fraction",
            type="float",
            default=0.2,
            minimum=0.01,
            maximum=0.9,
            help="share held out for validation",
        ),
        TemplateParam(
            name="data_path",
            type="data",
            default="",
            help="your data: testbed-data://NAME (uploaded with `testbed data upload`), or an s3:// URI; "
            "empty: seeded synthetic data",
        ),
        TemplateParam(
            name="workers",
            type="int",
            default=0,
            minimum=0,
            maximum=256,
            help="Ray Train workers; 0: one per GPU, else 1",
        ),
        TemplateParam(
            name="max_failures",
            type="int",
            default=2,
            minimum=0,
            maximum=100,
            help="worker failures to recover from (from the last checkpoint)",
        ),
        TemplateParam(
            name="fail_at_epoch",
            type="int",
            default=0,
            minimum=0,
            help="fault drill: rank 0 fails once at this epoch; 0: off",
        ),
        TemplateParam(
            name="engine",
            type="str",
            default="auto",
            choices=["auto", "ray-train", "direct"],
            help="auto: a one-worker job without GPUs runs its loop in the job's process (same checkpoints, "
            "retries and metrics, no worker-group start-up), others on Ray Train",
        ),
        TemplateParam(
            name="patience",
            type="int",
            default=5,
            minimum=0,
            maximum=10000,
            help="early stopping: stop after this many epochs without a better validation metric "
            "(the best epoch's weights are kept either way); 0: never stop early",
        ),
        TemplateParam(
            name="baselines",
            type="bool",
            default=True,
            help="also fit classical baselines (scikit-learn linear model and gradient boosting) on the same split",
        ),
        TemplateParam(
            name="match_margin",
            type="float",
            default=0.02,
            minimum=0.0,
            maximum=1.0,
            help="the neural model is registered if within this share of the best classical model's metric "
            "(0.02: at most 2 percent worse); otherwise the classical model is registered",
        ),
        TemplateParam(
            name="trials",
            type="int",
            default=1,
            minimum=1,
            maximum=256,
            help="hyperparameter search: N>1 runs N Ray Tune trials over lr, width and batch_size (the first "
            "with the values given, the rest drawn around them: lr within 10x, sizes half/same/double), "
            "at most one per job CPU at once, each a nested MLflow run; the best trial's model is "
            "registered; 1: no search",
        ),
    ]


_DEFECT = Template(
    name="defect-inspection",
    kind="train",
    max_runtime_seconds=7200,
    industry="manufacturing (Ulsan, Gyeongnam): visual defect inspection",
    description="A small CNN classifies surface images as ok / scratch / dent. "
    "Own data: a folder of class sub-folders of images.",
    module="workloads.train",
    params=[
        *_training_params(epochs=6, batch_size=32, lr=0.003, width=16),
        TemplateParam(
            name="image_size",
            type="int",
            default=32,
            minimum=8,
            maximum=512,
            help="images are resized to this square size",
        ),
        TemplateParam(name="samples", type="int", default=1200, minimum=20, help="synthetic images"),
        TemplateParam(
            name="defect_rate",
            type="float",
            default=0.4,
            minimum=0.0,
            maximum=1.0,
            help="synthetic share of defective parts",
        ),
    ],
)

_MAINTENANCE = Template(
    name="predictive-maintenance",
    kind="train",
    max_runtime_seconds=7200,
    industry="machinery (Gyeongnam, Changwon cluster): predictive maintenance",
    description="A temporal CNN predicts failure within the horizon from machine sensor windows. "
    "Own data: CSV/Parquet with machine_id, the feature columns and the label column, in time order.",
    module="workloads.train",
    params=[
        *_training_params(epochs=6, batch_size=128, lr=0.003, width=16),
        TemplateParam(
            name="features", type="str", default="vibration,temperature,current", help="comma-separated sensor columns"
        ),
        TemplateParam(name="label", type="str", default="failure_soon", help="0/1 column: failure within the horizon"),
        TemplateParam(name="window", type="int", default=24, minimum=2, maximum=10000, help="steps per input window"),
        TemplateParam(name="stride", type="int", default=2, minimum=1, help="steps between window ends"),
        TemplateParam(name="machines", type="int", default=30, minimum=2, help="synthetic machines"),
        TemplateParam(name="steps", type="int", default=600, minimum=50, help="synthetic steps per machine"),
        TemplateParam(
            name="horizon", type="int", default=48, minimum=1, help="synthetic label: failure within this many steps"
        ),
    ],
)

_POWER = Template(
    name="power-forecast",
    kind="train",
    max_runtime_seconds=7200,
    industry="renewable energy (Jeonnam): solar and wind power forecasting",
    description="An MLP forecasts plant output `horizon` hours ahead from recent output and the weather forecast; "
    "compared with persistence. Own data: CSV/Parquet with timestamp, power (0-1) and the feature columns.",
    module="workloads.train",
    params=[
        *_training_params(epochs=8, batch_size=64, lr=0.003, width=64),
        TemplateParam(
            name="source", type="str", default="solar", choices=["solar", "wind"], help="synthetic plant type"
        ),
        TemplateParam(name="days", type="int", default=120, minimum=3, help="synthetic days of hourly data"),
        TemplateParam(name="window", type="int", default=24, minimum=1, maximum=1000, help="past hours of output used"),
        TemplateParam(name="horizon", type="int", default=3, minimum=1, maximum=168, help="hours ahead to forecast"),
        TemplateParam(
            name="features",
            type="str",
            default="irradiance_forecast,cloud_cover_forecast,wind_speed_forecast,temperature_forecast",
            help="comma-separated weather forecast columns",
        ),
    ],
)

_TABULAR = Template(
    name="tabular-quality",
    kind="train",
    max_runtime_seconds=7200,
    industry="food and beauty (Jeju): batch quality prediction",
    description="An MLP predicts a production batch's quality score from its process record; compared with the mean. "
    "Own data: CSV/Parquet, text columns are one-hot encoded.",
    module="workloads.train",
    params=[
        *_training_params(epochs=8, batch_size=64, lr=0.003, width=64),
        TemplateParam(name="target", type="str", default="quality", help="numeric column to predict"),
        TemplateParam(name="samples", type="int", default=3000, minimum=20, help="synthetic batches"),
    ],
)

_VALIDATE = Template(
    name="validate",
    kind="validation",
    max_runtime_seconds=1800,
    industry="any",
    description="Evaluates a registered model version on held-out data, compares it with the 'champion' alias "
    "and moves the alias only when the new version is better by the margin; fails otherwise.",
    module="workloads.validate",
    params=[
        TemplateParam(name="model", type="str", help="registered model, '<template>' or '<tenant>.<template>'"),
        TemplateParam(name="version", type="str", default="latest", help="model version number or 'latest'"),
        TemplateParam(
            name="margin",
            type="float",
            default=0.0,
            minimum=0.0,
            help="how much better than the champion (metric units)",
        ),
        TemplateParam(
            name="holdout_seed", type="int", default=1000, help="seed of the regenerated held-out synthetic data"
        ),
        TemplateParam(
            name="data_path",
            type="data",
            default="",
            help="held-out data: testbed-data://NAME or an s3:// URI; empty: synthetic",
        ),
        TemplateParam(name="alias", type="str", default="champion", help="alias the gate moves"),
        TemplateParam(
            name="require_beat_baseline",
            type="bool",
            default=False,
            help="also require beating the training run's best classical baseline on the held-out data",
        ),
    ],
)

CATALOG: tuple[Template, ...] = (_SMOKE, _DEFECT, _MAINTENANCE, _POWER, _TABULAR, _VALIDATE)


def list_templates() -> list[Template]:
    return list(CATALOG)


def get_template(name: str) -> Template:
    for template in CATALOG:
        if template.name == name:
            return template
    raise TemplateError(f"unknown template {name!r}; known: {', '.join(t.name for t in CATALOG)}")
