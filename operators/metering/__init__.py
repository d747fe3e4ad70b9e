"""Per-tenant metering: ledger, Prometheus exposition, rules, dashboard, usage reports.

``install(app, plane)`` is called by the control plane's ``create_app``; ``plane`` has ``.ledger``
(its :class:`Ledger`, hooked into the job store) and ``.stack`` (the region's StackConfig).
"""

from __future__ import annotations

from typing import Any

from operators.metering.api import build_report, make_router
from operators.metering.exporter import make_registry
from operators.metering.ledger import Ledger

__all__ = ["install", "build_report", "Ledger", "make_registry"]


def install(app: Any, plane: Any, observe_node: bool = True) -> Ledger:
    """Add ``/metrics`` and ``/v1/usage`` to ``app``, both reading the plane's ledger."""
    ledger: Ledger = plane.ledger
    registry = make_registry(ledger, plane.stack, observe_node=observe_node, money=getattr(plane, "money", None))
    app.include_router(make_router(ledger, plane.stack, registry, money=getattr(plane, "money", None)))
    app.state.metering_ledger = ledger
    app.state.metering_registry = registry
    return ledger
