"""lean deliveries: one index by address, references kept by the code

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:30:00.000000

Issue #17, item 4: freezing a mailing of 1,000,000 deliveries took 20 s on PostgreSQL, half of
it keeping up what `deliveries` carried beside its rows (bench/RESULTS.md): an index by address
next to the unique (mailing, address) one, and two foreign keys, each checked by a trigger per
row. Now one unique index (email, mailing_id) serves both "one delivery per address per
mailing" and "has this address had this issue?", and the two references (mailings.id,
subscribers.id) are kept by the code (models.Delivery says how).

SQLite changes a table's constraints only by copying it, and dropping the old copy deletes its
rows first, which sets every welcome's and bounce event's `delivery_id` to NULL (their foreign
keys say ON DELETE SET NULL; foreign keys cannot be turned off inside the migration's
transaction). Those references are noted before the copy and put back after it; the copy keeps
every delivery's id.
"""

from collections.abc import Callable

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REFERRING = ("welcomes", "bounce_events")  # tables whose delivery_id refers to deliveries.id
SEARCH = "ix_0009_bounce_events_delivery_id"  # for the copy only (see _keeping_references)


def upgrade() -> None:
    def lean() -> None:
        with op.batch_alter_table("deliveries", recreate="auto") as batch:
            batch.drop_constraint("fk_deliveries_mailing_id_mailings", type_="foreignkey")
            batch.drop_constraint("fk_deliveries_subscriber_id_subscribers", type_="foreignkey")
            batch.drop_constraint("uq_deliveries_mailing_id", type_="unique")
            batch.drop_index("ix_deliveries_email")
            batch.create_unique_constraint("uq_deliveries_email", ["email", "mailing_id"])

    _keeping_references(lean)


def downgrade() -> None:
    def full() -> None:
        with op.batch_alter_table("deliveries", recreate="auto") as batch:
            batch.drop_constraint("uq_deliveries_email", type_="unique")
            batch.create_unique_constraint("uq_deliveries_mailing_id", ["mailing_id", "email"])
            batch.create_index("ix_deliveries_email", ["email"], unique=False)
            batch.create_foreign_key(
                "fk_deliveries_mailing_id_mailings",
                "mailings",
                ["mailing_id"],
                ["id"],
                ondelete="CASCADE",
            )
            batch.create_foreign_key(
                "fk_deliveries_subscriber_id_subscribers",
                "subscribers",
                ["subscriber_id"],
                ["id"],
                ondelete="SET NULL",
            )

    _keeping_references(full)


def _keeping_references(change: Callable[[], None]) -> None:
    """CHANGE the deliveries table; on SQLite, keep what refers to its rows (see above)."""
    if op.get_bind().dialect.name != "sqlite":
        change()
        return
    for table in REFERRING:
        op.execute(f"DROP TABLE IF EXISTS temp.kept_{table}")
        # Keyed by id: putting them back looks each one up (without the key, SQLite scanned
        # the whole table per row: 24 s for 40,000 welcomes, hours for a large site's bounces).
        op.execute(f"CREATE TEMP TABLE kept_{table} (id INTEGER PRIMARY KEY, delivery_id INTEGER)")
        op.execute(
            f"INSERT INTO temp.kept_{table} (id, delivery_id) "
            f"SELECT id, delivery_id FROM {table} WHERE delivery_id IS NOT NULL"
        )
    # Dropping the old copy sets the references to NULL row by row, each a search of
    # bounce_events by delivery_id: without an index for it (kept off the table otherwise,
    # reputation._bounces), every delivery dropped scanned every bounce event.
    op.execute(f"CREATE INDEX {SEARCH} ON bounce_events (delivery_id)")
    change()
    op.execute(f"DROP INDEX {SEARCH}")
    for table in REFERRING:
        op.execute(
            f"UPDATE {table} SET delivery_id = "
            f"(SELECT kept.delivery_id FROM temp.kept_{table} AS kept WHERE kept.id = {table}.id) "
            f"WHERE id IN (SELECT id FROM temp.kept_{table})"
        )
        op.execute(f"DROP TABLE temp.kept_{table}")
