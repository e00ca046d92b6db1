"""The real PostgreSQL of this machine, for the PostgreSQL pass of the suite.

One database per test session, created here and dropped at the end (its name
carries the pid, so parallel sessions never meet); between tests every table is
emptied with one TRUNCATE, which is much faster than a new database. Locally an
unreachable server skips the PostgreSQL tests; with CI set it fails them, so CI
cannot pass without really running them.
"""

from __future__ import annotations

import os
import re
import secrets

import psycopg
import pytest
from psycopg import sql

#: The maintenance database of the server under test (trust auth on loopback).
SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_NAME = re.compile(r"^digest_test_(\d+)_[0-9a-f]+$")


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI."""
    message = f"PostgreSQL not reachable at {SERVER_URL}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the PostgreSQL tests)", pytrace=False)
    pytest.skip(message)


def url_for(database: str) -> str:
    return SERVER_URL.rsplit("/", 1)[0] + "/" + database


def admin() -> psycopg.Connection:
    return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5)


def create_database(prefix: str = "digest_test") -> str:
    """A new empty database; returns its name. Drops leftovers of dead sessions first."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with admin() as conn:
        _drop_orphans(conn)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _drop_orphans(conn: psycopg.Connection) -> None:
    """Databases left by test sessions that were killed before they could clean up."""
    for (name,) in conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'digest_test_%'"
    ):
        m = _NAME.match(name)
        if m and not _alive(int(m.group(1))):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def empty_tables(url: str) -> None:
    """TRUNCATE every table but Alembic's, so the schema stays migrated."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '20s'")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))
