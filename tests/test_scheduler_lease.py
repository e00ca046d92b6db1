"""One scheduler leads per database: the lease row, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.store.engine import session_scope
from digest.store.leases import Leadership, SchedulerLease, machine_id


def test_only_one_leads_until_it_lets_go(engine: Engine) -> None:
    a, b = Leadership(engine, 60), Leadership(engine, 60)
    assert a.acquire().acquired
    claim = b.acquire()
    assert not claim.acquired
    assert claim.holder == a.holder
    assert a.acquire().acquired  # re-acquiring our own lease renews it
    assert a.renew()
    assert not b.renew()
    a.release()
    assert b.acquire().acquired
    assert not a.renew()  # a's lease is gone: it must stop leading


def test_expired_lease_is_taken_over(engine: Engine) -> None:
    a, b = Leadership(engine, 60), Leadership(engine, 60)
    assert a.acquire().acquired
    with session_scope(engine) as s:
        s.execute(
            update(SchedulerLease).values(
                machine="elsewhere", expires_at=utcnow() - timedelta(seconds=1)
            )
        )
    assert b.acquire().acquired
    assert not a.renew()


def test_holder_on_another_machine_is_trusted_until_expiry(engine: Engine) -> None:
    a, b = Leadership(engine, 60), Leadership(engine, 60)
    assert a.acquire().acquired
    with session_scope(engine) as s:
        s.execute(update(SchedulerLease).values(machine="elsewhere", pid=1))
    assert not b.acquire().acquired


def test_dead_holder_on_this_machine_is_replaced_at_once(engine: Engine) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    a, b = Leadership(engine, 3600), Leadership(engine, 3600)
    assert a.acquire().acquired
    with session_scope(engine) as s:
        s.execute(update(SchedulerLease).values(pid=int(dead.stdout), machine=machine_id()))
    assert b.acquire().acquired
    assert not a.renew()


def test_racing_schedulers_get_one_lease(engine: Engine) -> None:
    contenders = [Leadership(engine, 60) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        claims = list(pool.map(lambda lead: lead.acquire().acquired, contenders))
    assert claims.count(True) == 1
