"""Schema 2: build progress (phase name, fraction in [0, 1]), the names a set protects as given at
registration (JSON list) and the verification report stored when the set became active (JSON).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("build_phase", sa.String(32)),
    ("build_progress", sa.Float()),
    ("subjects", sa.Text()),
    ("report", sa.Text()),
)


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("forget_sets", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite rebuilds the table to drop columns; forget_documents' foreign key survives the rebuild.
    with op.batch_alter_table("forget_sets") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
