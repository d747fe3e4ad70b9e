"""Kubernetes-style quantities of memory ('64Gi', '512M', bytes): parsing, rendering, a pydantic type."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(k|M|G|T|Ki|Mi|Gi|Ti|)\s*$")  # exactly the units above


def parse_memory(value: Any) -> int:
    """Parse a Kubernetes-style quantity ('64Gi', '512M', 1073741824) into bytes."""
    if isinstance(value, bool):
        raise ValueError(f"memory must be a quantity such as '16Gi', not {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"memory must be a finite quantity, not {value!r}")
        if value < 0:
            raise ValueError(f"memory must not be negative, got {value!r}")
        return int(value)
    if isinstance(value, str):
        match = _MEMORY_RE.match(value)
        if match:
            return parse_memory(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])
    raise ValueError(f"memory must be a quantity such as '16Gi' or '512Mi', not {value!r}")


def format_memory(num_bytes: int) -> str:
    """Render bytes as the largest exact binary Kubernetes quantity ('64Gi')."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        size = _MEMORY_UNITS[unit]
        if num_bytes and num_bytes % size == 0:
            return f"{num_bytes // size}{unit}"
    return str(num_bytes)


MemoryBytes = Annotated[int, BeforeValidator(parse_memory)]
