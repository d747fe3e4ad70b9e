"""Per-tenant metering: ledger, Prometheus exposition, rules, dashboard, usage reports."""
