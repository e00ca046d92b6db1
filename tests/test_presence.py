"""Who is sending: the workers table, on the real SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess

from sqlalchemy import func, select, update

from digest.clock import utcnow
from digest.delivery import claims
from digest.delivery.models import Delivery, Worker
from digest.delivery.presence import Presence, active, describe, pid_alive, reap
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.sending import started_send


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_join_beat_describe_leave(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 3)
    me = Presence.here("worker")
    assert me.token(7) == f"{me.id}/7" and len(me.token(10**6)) <= 120
    with session_scope(engine) as s:
        me.join(s)
        assert describe(s, 60).startswith("workers: 1 active: ")
        assert "(worker, idle, 0 sent" in describe(s, 60)
        me.beat(s, issue.id, 12)
        line = describe(s, 60)
    assert f"{me.host}:{me.pid} (worker, {issue.key}, 12 sent, seen 0s ago)" in line
    with session_scope(engine) as s:
        me.leave(s)
        assert describe(s, 60) == "workers: none active"
        me.beat(s, None, 0)  # a peer pruned us while we were asleep: we come back
        assert [w.id for w in active(s, 60)] == [me.id]


def test_a_silent_sender_is_not_active(engine) -> None:
    me = Presence.here("send")
    with session_scope(engine) as s:
        me.join(s)
        s.execute(update(Worker).values(heartbeat_at=utcnow().replace(year=2020)))
        assert active(s, 60) == []


def test_reap_frees_a_dead_local_senders_rows_but_not_a_remote_ones(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 6)
    me = Presence.here("send")
    gone = Presence("local:1:aa", "send", me.host, me.node, dead_pid())
    remote = Presence("remote:1:bb", "worker", "elsewhere", "elsewhere#1", gone.pid)
    assert not pid_alive(gone.pid)
    with session_scope(engine) as s:
        for p in (me, gone, remote):
            p.join(s)
        claims.claim(s, issue.id, gone.token(1), 3, 60)
        claims.claim(s, issue.id, remote.token(1), 3, 60)
    with session_scope(engine) as s:
        assert reap(s, me, 60) == 3
        ids = set(s.scalars(select(Worker.id)))
        held = dict(
            s.execute(
                select(Delivery.claimed_by, func.count())
                .where(Delivery.issue_id == issue.id)
                .group_by(Delivery.claimed_by)
            ).all()
        )
    assert ids == {me.id, remote.id}  # the remote one is judged by its lease only
    assert held == {None: 3, remote.token(1): 3}
