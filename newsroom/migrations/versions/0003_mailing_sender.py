"""mailings keep who they come from (From, Reply-To, List-Id) and the expression as given

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00.000000

Issue #16, items 2 and 4: a mailing to a list that sends as itself keeps that list's sender, so
a resumed mailing sends as it began; and a mailing to a saved segment keeps the expression as
the volunteer gave it beside the expanded one it is sent by. Mailings made before have empty
values and send as the site, as they did.

Columns are added in place (ALTER TABLE ADD COLUMN), never by batch mode's copy of the table
(see 0002: on SQLite a copy would cascade deletes). The empty server default stays on SQLite,
which cannot drop it; newsroom always writes the values itself.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("expression_given", "sender", "reply_to", "list_id")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("mailings", sa.Column(name, sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_column("mailings", name)
