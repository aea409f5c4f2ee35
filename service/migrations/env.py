"""Alembic environment of the registry: runs on the connection the registry passes in (its open,
locked transaction), or on ``sqlalchemy.url`` when an operator runs the ``alembic`` command."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.db_models import make_engine, metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()
