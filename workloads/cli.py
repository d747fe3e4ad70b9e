"""Parse ``--template NAME --<param>=<value> ...`` into a template and typed params."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from testbed.templates import ParamValue, Template, TemplateError, get_template


def parse_args(argv: Sequence[str] | None, kinds: Sequence[str]) -> tuple[Template, dict[str, ParamValue]]:
    """The template named by ``--template`` and its resolved params; TemplateError if wrong."""
    args = list(sys.argv[1:] if argv is None else argv)
    name: str | None = None
    raw: dict[str, ParamValue] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise TemplateError(f"unexpected argument {arg!r}; use --<param>=<value>")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise TemplateError(f"argument --{key} needs a value")
            value = args[i + 1]
            i += 1
        i += 1
        key = key.replace("-", "_")
        if key == "template":
            name = value
        else:
            raw[key] = value
    if name is None:
        raise TemplateError("give --template NAME")
    template = get_template(name)
    if template.kind not in kinds:
        raise TemplateError(f"template {name!r} is of kind {template.kind!r}; this entrypoint runs {', '.join(kinds)}")
    return template, template.resolve(raw)
