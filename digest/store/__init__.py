"""The store: one engine per database URL, migrations, retries, and leases.

SQLite by default, PostgreSQL by URL. Every stage owns its tables; this package holds
what they share: the declarative base and column types (`base`), the engine and
sessions (`engine`), retrying through lost connections (`retry`), who leads or holds
what (`leases`), and the Alembic migrations.
"""
