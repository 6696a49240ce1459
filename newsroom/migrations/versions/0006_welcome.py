"""welcome emails: the welcomes owed and given, mailings of a kind, deliveries added later

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 10:00:00.000000

Issue #16, item 3: a list may name a welcome issue, sent once to each person confirmed on it.
`welcomes` holds one row per list and person, unique, so nobody is welcomed twice; each points
at its delivery once queued. A welcome goes out as a delivery of its list's welcome mailing
(`mailings.kind = 'welcome'`), which takes deliveries as people confirm: `deliveries.added_at`
says when each joined, and its retries run out from then, not from when the mailing was made.

Columns are added in place (ALTER TABLE ADD COLUMN), never by batch mode's copy of a table
(see 0002: on SQLite a copy would cascade deletes). Mailings made before are issues.
"""

import sqlalchemy as sa
from alembic import op

import newsroom.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "mailings",
        sa.Column("kind", sa.String(length=20), nullable=False, server_default="issue"),
    )
    op.add_column("deliveries", sa.Column("added_at", newsroom.models.UTCDateTime(), nullable=True))
    op.create_table(
        "welcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("confirmed_at", newsroom.models.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_welcomes_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_welcomes_list_id_lists")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_welcomes_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_welcomes")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_welcomes_delivery_id")),
        sa.UniqueConstraint("list_id", "subscriber_id", name=op.f("uq_welcomes_list_id")),
    )
    op.create_index("ix_welcomes_status", "welcomes", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_welcomes_status", table_name="welcomes")
    op.drop_table("welcomes")
    op.drop_column("deliveries", "added_at")
    op.drop_column("mailings", "kind")
