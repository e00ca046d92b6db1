"""Alembic environment: run on the connection digest.db hands over."""

from alembic import context

from digest import models  # noqa: F401 - registers every table
from digest.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - CLI use of alembic itself
    from sqlalchemy import create_engine

    from digest.db import normalise_url
    from digest.settings import load_settings

    connection = create_engine(normalise_url(load_settings().database_url)).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
