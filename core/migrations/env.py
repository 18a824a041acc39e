"""Alembic's environment for the lab's database: always run through core.database.Database,
which hands over a connection already inside its (locked) transaction."""

from alembic import context

from core.database import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it, and Alembic's batch mode does that for us.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
