"""Alembic's environment: run the revisions on the connection that ``migrate.upgrade`` hands over.

That connection is already inside the transaction (and, on PostgreSQL, the advisory lock) of the
upgrade, so the revisions and the version stamp commit together or not at all.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
