"""Alembic's environment for the lab's database: always run through core.store.database.Database,
which hands over a connection already inside its (locked) transaction."""

from alembic import context

from core.store.database import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it, and Alembic's batch mode does that for us.
# version_table: Optuna's studies share the database and own `alembic_version` (core/store/database.py).
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
