"""The migrations build exactly the schema that models.py describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from newsroom.models import Base
from newsroom.site import Site


def test_migrated_database_matches_the_models(site: Site) -> None:
    with site.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
