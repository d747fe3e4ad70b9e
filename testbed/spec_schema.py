"""The job spec's JSON schema says every rule its validators enforce, so the OpenAPI document is the
contract: a spec the schema accepts is admitted or refused only for quota, capacity, grant, or a code
package or data name not in the tenant's storage (403/404), never as malformed (422); a spec it rejects is a 422.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BeforeValidator, WithJsonSchema
from typing_extensions import Annotated

from testbed import limits as L
from testbed.quantities import parse_memory
from testbed.templates import Template, list_templates

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# '4Gi', '512Mi', '1.5G': at most 1 PiB, at least one byte
API_MEMORY = re.compile(r"^([1-9][0-9]{0,5}(\.[0-9]{1,3})?(k|M|G|Ki|Mi|Gi)?|[1-9][0-9]{0,2}(\.[0-9]{1,3})?(T|Ti))$")


def _api_memory(value: Any) -> int:
    """Bytes of an API memory field: an integer in range, or a quantity matching ``API_MEMORY``."""
    if isinstance(value, str) and not API_MEMORY.match(value):
        raise ValueError(
            f"memory must be a quantity such as '16Gi' or '512Mi' (at most {L.MAX_MEMORY_BYTES // 2**40}Ti), "
            f"not {value[:40]!r}"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, str)) or isinstance(value, bool):
        raise ValueError(f"memory must be a whole number of bytes or a quantity such as '16Gi', not {value!r}")
    num_bytes = parse_memory(value)
    if not 1 <= num_bytes <= L.MAX_MEMORY_BYTES:
        raise ValueError(f"memory must be between 1 byte and {L.MAX_MEMORY_BYTES // 2**40}Ti")
    return num_bytes


ApiMemory = Annotated[
    int,
    BeforeValidator(_api_memory),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": L.MAX_MEMORY_BYTES},
                {"type": "string", "pattern": API_MEMORY.pattern},
            ],
            "description": "bytes, or a quantity such as '4Gi'",
        }
    ),
]


def params_schema(template: Template) -> dict[str, Any]:
    """A template's params as JSON schema (what ``Template.resolve(strict=True)`` takes)."""
    schema = template.params_model.model_json_schema()
    schema.pop("title", None)
    return schema


def job_spec_schema(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of ``JobSpec``: exactly one of a command and a known template (with its
    params), and the name, command and env rules its validators check."""
    props = schema["properties"]
    props["name"]["pattern"] = JOB_NAME.pattern
    props["entrypoint"].update(minLength=1, pattern=r"\S")
    props["env"]["propertyNames"] = {
        "minLength": 1,
        "maxLength": L.MAX_ENV_NAME_CHARS,
        "pattern": ENV_NAME.pattern,
        "not": {"pattern": "^(TESTBED_|MLFLOW_|RAY_)"},
    }
    schema["oneOf"] = [
        {
            "title": "command",
            "required": ["entrypoint"],
            "properties": {
                "entrypoint": {"type": "string"},
                "template": {"type": "null"},
                "params": {"maxProperties": 0},
            },
        },
        *(_template_shape(t) for t in list_templates()),
    ]


def _template_shape(template: Template) -> dict[str, Any]:
    """A spec that runs ``template``: its params, which must be given when some has no default."""
    params = params_schema(template)
    return {
        "title": f"template {template.name}",
        "required": ["template", "params"] if params.get("required") else ["template"],
        "properties": {"template": {"const": template.name}, "entrypoint": {"type": "null"}, "params": params},
    }
