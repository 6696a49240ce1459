"""Alembic environment: the engine comes from newsroom.database, never from an ini file."""

from alembic import context

from newsroom.models import Base


def run(connection):  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    )
    context.run_migrations()


# `db copy` gives a connection in its own transaction, to commit the schema with the rows or
# neither (issue #17, item 5); every other caller gives the engine.
shared = context.config.attributes.get("connection")
if shared is not None:
    run(shared)
else:
    with context.config.attributes["engine"].begin() as connection:
        run(connection)
