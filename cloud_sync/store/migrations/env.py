"""Alembic's environment: runs on the connection ``cloud_sync.store.migrate`` hands over."""

from alembic import context

from cloud_sync.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through cloud_sync.store.migrate.upgrade(engine)")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
