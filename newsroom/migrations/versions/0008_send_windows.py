"""send windows: the sending rates kept by all the senders of a site together

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:10:00.000000

Issue #17, item 1: `sending.rate` and `sending.domain_rates` hold for the site, whatever the
number of workers and machines. One row per rate ('' for the overall rate, a domain for each
domain's), holding the first instant not yet reserved, on the database's clock; each sender
reserves a few slots at a time (delivery/sitepace.py). Rows are made when first needed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_windows",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("free_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_send_windows")),
    )


def downgrade() -> None:
    op.drop_table("send_windows")
