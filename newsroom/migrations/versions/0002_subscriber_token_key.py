"""subscribers get a token key, folded into every link token, so erasure kills old links

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000

Every existing row gets its own random key, and `old_links` so the links already sent in
emails (which carry a digest of the address alone) keep working for it until it is erased.

Both columns are added in place (ALTER TABLE ADD COLUMN), never by batch mode's copy of the
table: on SQLite, with foreign keys on, dropping the old `subscribers` table would delete every
subscription with it (ON DELETE CASCADE). A NOT NULL column added in place needs a default for
the rows already there; SQLite cannot drop it afterwards, so `token_key` keeps an empty default
there. newsroom never relies on it: every insert gives a fresh key (models.new_token_key).
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    op.add_column(
        "subscribers",
        sa.Column("token_key", sa.String(length=32), nullable=False, server_default=""),
    )
    op.add_column(
        "subscribers",
        sa.Column("old_links", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    connection = op.get_bind()
    subscribers = sa.table(
        "subscribers",
        sa.column("id", sa.Integer),
        sa.column("token_key", sa.String),
        sa.column("old_links", sa.Boolean),
    )
    ids = list(connection.scalars(sa.select(subscribers.c.id)))
    fill = (
        sa.update(subscribers)
        .where(subscribers.c.id == sa.bindparam("row"))
        .values(token_key=sa.bindparam("key"), old_links=True)
    )
    for start in range(0, len(ids), BATCH):
        rows = [{"row": i, "key": secrets.token_hex(16)} for i in ids[start : start + BATCH]]
        connection.execute(fill, rows)
    if connection.dialect.name != "sqlite":
        op.alter_column("subscribers", "token_key", server_default=None)


def downgrade() -> None:
    # In place too (SQLite 3.35+ drops a column without copying the table).
    op.drop_column("subscribers", "old_links")
    op.drop_column("subscribers", "token_key")
