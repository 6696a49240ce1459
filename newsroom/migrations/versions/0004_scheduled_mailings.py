"""scheduled mailings: a mailing may wait for its time before its audience is frozen

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:00:00.000000

Issue #16, item 1 (`newsroom send ISSUE --at TIME`). Four columns on `mailings`, added in place
(ALTER TABLE ADD COLUMN) as 0002's and 0003's are, never by batch mode's copy of the table: on SQLite with
foreign keys on, dropping the old `mailings` would delete every delivery with it (ON DELETE
CASCADE). Every mailing made before was frozen when it was made: `frozen_at` is its
`created_at`.
"""

import sqlalchemy as sa
from alembic import op

import newsroom.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "mailings", sa.Column("scheduled_at", newsroom.models.UTCDateTime(), nullable=True)
    )
    op.add_column("mailings", sa.Column("frozen_at", newsroom.models.UTCDateTime(), nullable=True))
    op.add_column(
        "mailings", sa.Column("again", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "mailings", sa.Column("early", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    mailings = sa.table(
        "mailings",
        sa.column("created_at", newsroom.models.UTCDateTime()),
        sa.column("frozen_at", newsroom.models.UTCDateTime()),
    )
    op.get_bind().execute(sa.update(mailings).values(frozen_at=mailings.c.created_at))


def downgrade() -> None:
    # Scheduled mailings were never frozen: without these columns they would look like
    # mailings under way with nobody in them. They go first.
    op.execute("DELETE FROM mailings WHERE frozen_at IS NULL")
    for column in ("early", "again", "frozen_at", "scheduled_at"):
        op.drop_column("mailings", column)
