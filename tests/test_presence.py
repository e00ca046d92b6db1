"""Who is sending: senders' presence leases, on the real SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess

from sqlalchemy import func, select, update

from digest.clock import utcnow
from digest.delivery import claims
from digest.delivery.models import Delivery
from digest.delivery.presence import Presence, active, describe, reap
from digest.settings import load_settings
from digest.store import leases
from digest.store.engine import session_scope
from digest.store.leases import Lease, machine_id, pid_alive
from tests.sending import started_send


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_join_beat_describe_leave(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 3)
    me = Presence.here("worker", 60)
    assert me.token(7) == f"{me.id}/7" and len(me.token(10**6)) <= 120
    with session_scope(engine) as s:
        me.join(s)
        assert describe(s).startswith("workers: 1 active: ")
        assert "(worker, idle, 0 sent" in describe(s)
        me.beat(s, issue.id, 12)
        line = describe(s)
    assert f"{me.holder.host}:{me.holder.pid} (worker, {issue.key}, 12 sent, seen 0s ago)" in line
    with session_scope(engine) as s:
        me.leave(s)
        assert describe(s) == "workers: none active"
        me.beat(s, None, 0)  # a peer pruned us while we were asleep: we come back
        assert [w.id for w in active(s)] == [me.id]


def test_a_silent_sender_is_not_active(engine) -> None:
    me = Presence.here("send", 60)
    with session_scope(engine) as s:
        me.join(s)
        s.execute(update(Lease).values(expires_at=utcnow().replace(year=2020)))
        assert active(s) == []


def test_reap_frees_a_dead_local_senders_rows_but_not_a_remote_ones(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 6)
    me = Presence.here("send", 60)
    pid = dead_pid()
    gone = Presence(leases.Holder("local:1:aa", me.holder.host, machine_id(), pid), "send", 60)
    remote = Presence(leases.Holder("remote:1:bb", "elsewhere", "elsewhere|1", pid), "worker", 60)
    assert not pid_alive(pid)
    with session_scope(engine) as s:
        for p in (me, gone, remote):
            p.join(s)
        claims.claim(s, issue.id, gone.token(1), 3, 60)
        claims.claim(s, issue.id, remote.token(1), 3, 60)
    with session_scope(engine) as s:
        assert reap(s, me) == 3
        ids = set(s.scalars(select(Lease.holder)))
        held = dict(
            s.execute(
                select(Delivery.claimed_by, func.count())
                .where(Delivery.edition_id == issue.id)
                .group_by(Delivery.claimed_by)
            ).all()
        )
    assert ids == {me.id, remote.id}  # the remote one is judged by its lease only
    assert held == {None: 3, remote.token(1): 3}
