"""The control plane's database: every table (models), the store, the lease, the ledger, migrations."""
