"""Per-tenant metering: Prometheus exposition, rules, dashboard, usage reports.

It reads the control plane's ledger (``operators.control_plane.db.ledger``) and imports nothing above
the database: the control plane's API serves ``/metrics`` and ``/v1/usage`` from it.
"""

from __future__ import annotations

from operators.metering.exporter import make_registry
from operators.metering.report import build_report

__all__ = ["build_report", "make_registry"]
