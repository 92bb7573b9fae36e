"""Idempotency-Keys per API key: bots.api_key_id, unique with idempotency_key

Revision ID: 0002
Revises: 0001

Bots of revision 0001 keep ``api_key_id`` NULL: they belong to no key, and a
partial unique index keeps their Idempotency-Keys unique among themselves.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# SQLite reflects 0001's unique constraint without a name; the batch copy of
# the table names it with this convention, so that it can be dropped.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_NO_KEY = sa.text("api_key_id IS NULL")


def _idempotency_unique_name() -> str:
    """0001's unique constraint on bots.idempotency_key, as this database names it."""
    for unique in sa.inspect(op.get_bind()).get_unique_constraints("bots"):
        if unique["column_names"] == ["idempotency_key"] and unique["name"]:
            return str(unique["name"])
    return "uq_bots_idempotency_key"


def upgrade() -> None:
    old_unique = _idempotency_unique_name()
    with op.batch_alter_table("bots", naming_convention=_NAMING) as batch_op:
        batch_op.add_column(
            sa.Column("api_key_id", sa.String(length=32), nullable=True)
        )
        batch_op.create_foreign_key(
            "fk_bots_api_key_id", "api_keys", ["api_key_id"], ["id"]
        )
        batch_op.drop_constraint(old_unique, type_="unique")
        batch_op.create_unique_constraint(
            "uq_bots_api_key_idempotency", ["api_key_id", "idempotency_key"]
        )
        batch_op.create_index(
            "uq_bots_keyless_idempotency",
            ["idempotency_key"],
            unique=True,
            sqlite_where=_NO_KEY,
            postgresql_where=_NO_KEY,
        )


def downgrade() -> None:
    # Fails while two API keys hold the same Idempotency-Key: 0001 allows one.
    with op.batch_alter_table("bots") as batch_op:
        batch_op.drop_index("uq_bots_keyless_idempotency")
        batch_op.drop_constraint("uq_bots_api_key_idempotency", type_="unique")
        batch_op.drop_constraint("fk_bots_api_key_id", type_="foreignkey")
        batch_op.drop_column("api_key_id")
        batch_op.create_unique_constraint(
            "bots_idempotency_key_key", ["idempotency_key"]
        )
