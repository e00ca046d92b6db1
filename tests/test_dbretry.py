"""Database work through lost connections and locks, on the real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from digest.delivery.models import DeliveryStatus
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.settings import load_settings
from digest.store.retry import DatabaseUnavailable, retrying
from tests.sending import started_send

postgres_only = pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
NO_SLEEP = {"sleep": lambda _seconds: None}


@postgres_only
def test_a_connection_killed_by_the_server_is_retried(engine) -> None:
    attempts = []

    def work(session):
        attempts.append(1)
        if len(attempts) == 1:  # the server drops us mid-transaction (as on a restart)
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return session.scalar(text("SELECT 42"))

    assert retrying(engine, work, **NO_SLEEP) == 42
    assert len(attempts) == 2


@postgres_only
def test_giving_up_is_one_line_naming_the_database(engine) -> None:
    def work(session):
        session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    with pytest.raises(DatabaseUnavailable) as info:
        retrying(engine, work, give_up_after=0.0, **NO_SLEEP)
    message = str(info.value)
    assert "database stayed unavailable" in message and "\n" not in message


def test_errors_that_are_not_about_the_connection_are_raised_at_once(engine) -> None:
    attempts = []

    def work(session):
        attempts.append(1)
        session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(DBAPIError):
        retrying(engine, work, **NO_SLEEP)
    assert len(attempts) == 1


@sqlite_only
def test_sqlite_database_is_locked_is_waited_out(engine, workdir) -> None:
    holder = sqlite3.connect(workdir / "digest.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    attempts = []

    def work(session):
        attempts.append(1)
        session.execute(text(f"PRAGMA busy_timeout={0 if len(attempts) == 1 else 30000}"))
        session.execute(text("UPDATE editions SET status = status"))
        return "written"

    def sleep(_seconds: float) -> None:
        holder.execute("COMMIT")  # ... and finishes while we back off

    assert retrying(engine, work, sleep=sleep) == "written"
    assert len(attempts) == 2
    holder.close()


@postgres_only
def test_a_send_survives_its_connections_being_killed(engine, smtp_server) -> None:
    settings = load_settings()
    issue, emails = started_send(engine, settings, 300)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    done = threading.Event()
    kills = Counter()

    def killer() -> None:  # ten times, 0.1 s apart: an unreliable network, not an outage
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(10):
                if done.wait(0.1):
                    return
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
                kills["connections"] += len(rows)

    thread = threading.Thread(target=killer)
    thread.start()

    async def go():
        async with make_transport(settings) as transport:
            return await Sender(engine, settings, issue, transport, batch_size=20).run()

    try:
        report = asyncio.run(go())
    finally:
        done.set()
        thread.join(timeout=30)
    assert kills["connections"] > 0
    got = Counter(smtp_server.handler.recipients())
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    assert report.finished and report.run[DeliveryStatus.SENT] == 300
