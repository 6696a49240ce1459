"""client windows: the subscribe form's rate limit shared by several web servers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:40:00.000000

Issue #17, item 2: with two `newsroom serve` processes on one PostgreSQL, a client's subscribe
requests are counted in the database rather than in each process's memory. One row per client
and slot (a sixtieth of the window of `web.subscribe_rate`), keyed by a keyed hash of both
(never the IP address); the web side deletes a row once it no longer counts
(web/clientwindows.py).
"""

import sqlalchemy as sa
from alembic import op

import newsroom.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_windows",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("ends_at", newsroom.models.UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_client_windows")),
    )
    op.create_index(op.f("ix_client_windows_ends_at"), "client_windows", ["ends_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_client_windows_ends_at"), table_name="client_windows")
    op.drop_table("client_windows")
