"""consent events keep an import's original evidence of consent

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09 10:00:00.000000

Issue #15: an export from Mailchimp and the like says when and from which IP address each
person opted in and confirmed. The `imported` event keeps that, as JSON, in a column of its
own rather than in `detail`, because it holds IP addresses: erasure clears it with the event's
`ip` and `user_agent` (consent.forget). Nullable, added in place (no copy of the table); the
events already there had no such evidence.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("consent_events", sa.Column("evidence", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("consent_events", "evidence")  # in place too (SQLite 3.35+)
