"""Alembic environment: run on the connection digest.store.engine hands over."""

from alembic import context

from digest.store.base import Base
from digest.store.tables import register_all

register_all()

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - CLI use of alembic itself
    from sqlalchemy import create_engine

    from digest.settings import load_settings
    from digest.store.engine import normalise_url

    connection = create_engine(normalise_url(load_settings().database_url)).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
