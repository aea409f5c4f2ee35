"""Alembic migrations of the registry schema, run by :class:`~service.registry.Registry` when it opens.

Revisions live in ``versions/`` (``0001`` = schema 1, the original tables; ``0002`` = schema 2). A
database written before migrations existed carries a one-row ``schema_version`` table instead of
``alembic_version``: it is stamped with the matching revision, that table is dropped, and the upgrade
continues from there, rows untouched. Opening a :class:`~service.registry.Registry` (the server, the
CLI) is all it takes to migrate; ``env.py`` also accepts ``sqlalchemy.url`` for the ``alembic`` command.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from sqlalchemy import Connection, inspect, text

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
#: ``schema_version.version`` of a database created before migrations -> its revision.
LEGACY_REVISIONS = {1: "0001", 2: "0002"}


class NewerSchemaError(Exception):
    """The database was migrated by a newer guardit: this code does not know its revision."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "expected at least one revision under service/migrations/versions"
    return revision


def current(connection: Connection) -> str | None:
    """The revision ``connection``'s database is at (None: no ``alembic_version`` yet)."""
    return MigrationContext.configure(connection).get_current_revision()


def _adopt_legacy(connection: Connection) -> None:
    """Stamp a database from before migrations with the revision of its ``schema_version`` row."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or "schema_version" not in tables:
        return
    found = connection.execute(text("SELECT version FROM schema_version")).scalar_one_or_none()
    version = 1 if found is None else int(found)
    if version not in LEGACY_REVISIONS:
        raise NewerSchemaError(
            f"expected registry schema version <= {max(LEGACY_REVISIONS)}, found {version}: upgrade guardit")
    MigrationContext.configure(connection).stamp(_scripts(), LEGACY_REVISIONS[version])
    connection.execute(text("DROP TABLE schema_version"))
    logger.info("registry schema version %d adopted as revision %s", version, LEGACY_REVISIONS[version])


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except AlembicError:
        return False


def upgrade(connection: Connection) -> None:
    """Bring the database behind ``connection`` to :func:`head`, inside the caller's transaction.

    The caller serialises concurrent openers (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory
    lock), so exactly one of several starting replicas migrates and the others find it done.

    Raises:
        NewerSchemaError: the database is at a revision (or legacy version) newer than this code.
    """
    _adopt_legacy(connection)
    found = current(connection)
    if found == head():
        return
    if found is not None and not _known(found):
        raise NewerSchemaError(f"expected registry schema revision {head()} or older, found {found}: "
                               "upgrade guardit")
    logger.info("migrating the registry schema from %s to %s", found or "empty", head())
    command.upgrade(_config(connection), "head")
