"""Alembic's environment for the leaderboard database. Run through `attnrepro leaderboard migrate --db URL`
(`leaderboards.admin.migrate`), which passes an open connection in `config.attributes["connection"]`."""

from alembic import context

from leaderboards.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `attnrepro leaderboard migrate --db URL`, not the alembic command")
# render_as_batch: SQLite alters a column by copying the table, which Alembic's batch mode does for us
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
