"""Alembic environment: takes the engine from the caller (see ``cartnudge.db.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from cartnudge.db.models import metadata

config = context.config
engine: Engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copy; batch mode does that portably
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
