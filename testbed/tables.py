"""The one fixed-width text table that the CLI and the demo print."""

from __future__ import annotations

import enum
from typing import Any, Container, Iterable, Sequence


def cell(value: Any) -> str:
    """A value as table text: ``-`` for nothing, an enum as its value."""
    if value is None or value == "":
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def render_table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    right: Container[int] = (),
    indent: str = "",
    empty: str = "(none)",
) -> str:
    """A header line (unless ``headers`` is None) and one line per row, columns two spaces apart;
    columns in ``right`` align right."""
    body = [[cell(value) for value in row] for row in rows]
    if not body:
        return indent + empty
    lines = [list(headers)] + body if headers is not None else body
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = []
    for row in lines:
        cells = [
            text.rjust(width) if i in right else text.ljust(width) for i, (text, width) in enumerate(zip(row, widths))
        ]
        out.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(out)


def model_table(models: Iterable[Any], fields: Sequence[str], right: Container[int] = (), indent: str = "") -> str:
    """A table of model attributes, one column per field, headed by the field names in capitals."""
    rows = [[getattr(model, name) for name in fields] for model in models]
    return render_table([name.upper() for name in fields], rows, right=right, indent=indent)
