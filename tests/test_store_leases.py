"""Leases, one scheme for every holder: the scheduler's leadership and senders' presence,
on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.scheduling.leadership import Leadership
from digest.store import leases
from digest.store.engine import session_scope
from digest.store.leases import Lease, machine_id


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
            update(Lease).values(machine="elsewhere", expires_at=utcnow() - timedelta(seconds=1))
        )
    assert b.acquire().acquired
    assert not a.renew()


def test_holder_on_another_machine_is_trusted_until_expiry(engine: Engine) -> None:
    a, b = Leadership(engine, 60), Leadership(engine, 60)
    assert a.acquire().acquired
    with session_scope(engine) as s:
        s.execute(update(Lease).values(machine="elsewhere", pid=1))
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
        s.execute(update(Lease).values(pid=int(dead.stdout), machine=machine_id()))
    assert b.acquire().acquired
    assert not a.renew()


def test_racing_schedulers_get_one_lease(engine: Engine) -> None:
    contenders = [Leadership(engine, 60) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        claims = list(pool.map(lambda lead: lead.acquire().acquired, contenders))
    assert claims.count(True) == 1


def test_a_lease_expires_by_the_database_clock(engine: Engine) -> None:
    a, b = leases.Holder.here(), leases.Holder.here()
    with session_scope(engine) as s:
        assert leases.acquire(s, "x", a, 0.05).acquired
        assert not leases.acquire(s, "x", b, 60).acquired
    import time

    time.sleep(0.3)
    with session_scope(engine) as s:
        assert leases.live(s, "x") == []
        claim = leases.acquire(s, "x", b, 60)
        assert claim.acquired and claim.holder == b.label
        assert not leases.renew(s, "x", a, 60)
        assert [row.holder for row in leases.live(s, "x")] == [b.id]


def test_dead_holders_here_are_reported_and_stale_ones_forgotten(engine: Engine) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = leases.Holder.here()
    died = leases.Holder("gone:1:aa", me.host, machine_id(), int(dead.stdout))
    remote = leases.Holder("remote:1:bb", "elsewhere", "elsewhere|boot|ns", int(dead.stdout))
    with session_scope(engine) as s:
        for h in (me, died, remote):
            assert leases.acquire(s, "p/" + h.id, h, 60).acquired
        leases.acquire(s, "p/old", leases.Holder("old:1:cc", "x", "x", 1), -7200)
    with session_scope(engine) as s:
        found, stale = leases.dead(s, "p/", 3600)
        assert [row.holder for row in found] == [died.id]  # the remote one: by its lease only
        assert stale == 1
