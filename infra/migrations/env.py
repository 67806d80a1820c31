"""Alembic environment: run by `nocontact migrate` (and test fixtures) through shared.db.

Run by the plain `alembic` command instead, it connects as the schema's owner
(NOCONTACT_MIGRATION_DATABASE_URL, else the app's URL), as `nocontact migrate` does.

Each service keeps its tables on its own branch (branch label = service name) that
depends on the shared event-store revision, so `upgrade heads` brings everything up and
services can add migrations without stepping on each other.
"""

from alembic import context
from sqlalchemy import create_engine

from shared.config import migration_database_url
from shared.db import normalise_url

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(normalise_url(config.get_main_option("sqlalchemy.url") or migration_database_url()))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
