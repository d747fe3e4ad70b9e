"""Alembic revisions of the control plane's schema (tokens, jobs, the ledger's tables, leases).

Applied by :func:`operators.control_plane.db.migrate.upgrade` (at start, and ``testbed db upgrade``).
A new revision: copy the newest file in ``versions/``, set ``revision``/``down_revision``, write
``upgrade()``. Upgrades only: there is no downgrade (restore the database's backup instead).
"""
