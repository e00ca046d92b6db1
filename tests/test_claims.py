"""Claims and leases on the real store (SQLite and PostgreSQL): who sends which rows."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from digest.clock import utcnow
from digest.delivery import claims, ledger
from digest.delivery.models import OWED, Delivery, DeliveryStatus
from digest.delivery.transports.base import Outcome, Result
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.sending import started_send

RECORD = {"max_attempts": 3, "backoff_base": 60.0, "backoff_cap": 60.0, "bounce_threshold": 1}


def claim(engine, issue, token, limit=100, lease=60.0):
    with session_scope(engine) as s:
        return claims.claim(s, issue.id, token, limit, lease)


def record(engine, results, **kw):
    with session_scope(engine) as s:
        return ledger.record(s, results, ledger.RetryPolicy(**RECORD), **kw)


def holders(engine, issue) -> Counter:
    with session_scope(engine) as s:
        return Counter(
            s.scalars(select(Delivery.claimed_by).where(Delivery.edition_id == issue.id)).all()
        )


def test_claims_are_disjoint_and_cover_every_owed_row(engine) -> None:
    issue, emails = started_send(engine, load_settings(), 50)
    a, b, c = (claim(engine, issue, t, 20) for t in ("w1/1", "w2/1", "w3/1"))
    assert [len(a), len(b), len(c)] == [20, 20, 10]
    ids = [r.id for r in a + b + c]
    assert len(set(ids)) == 50
    assert sorted(r.email for r in a + b + c) == sorted(emails)
    assert {r.token for r in b} == {"w2/1"}
    assert claim(engine, issue, "w4/1") == []
    assert holders(engine, issue) == {"w1/1": 20, "w2/1": 20, "w3/1": 10}


def test_concurrent_claimers_never_share_a_row(engine) -> None:
    issue, emails = started_send(engine, load_settings(), 400)
    got: list[list[int]] = [[] for _ in range(6)]
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            batch = 1
            while rows := claim(engine, issue, f"t{n}/{batch}", 7):
                got[n].extend(r.id for r in rows)
                batch += 1
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    every = [i for ids in got for i in ids]
    assert len(every) == len(set(every)) == 400


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_record(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 5)
    old = claim(engine, issue, "dead/1", lease=-1)  # its sender stopped renewing it
    assert len(old) == 5
    new = claim(engine, issue, "alive/1")
    assert [r.id for r in new] == [r.id for r in old]
    late = record(engine, [(r, Result.sent()) for r in old])
    assert late[DeliveryStatus.SENT] == 0  # not written: the rows belong to "alive/1" now
    assert holders(engine, issue) == {"alive/1": 5}
    counts = record(engine, [(r, Result.sent()) for r in new])
    assert counts[DeliveryStatus.SENT] == 5
    assert holders(engine, issue) == {None: 5}


def test_heartbeat_keeps_and_release_gives_back(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 6)
    mine = claim(engine, issue, "me/1", lease=-1)
    with session_scope(engine) as s:
        assert claims.extend(s, ["me/1"], 60) == 6
    assert claim(engine, issue, "other/1") == []
    with session_scope(engine) as s:
        assert claims.release(s, ["me/1"]) == 6
    assert len(claim(engine, issue, "other/2")) == len(mine)


def test_a_retried_claim_gives_back_what_its_lost_first_attempt_took(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 30)
    claim(engine, issue, "w/1", 10)  # committed, but say the answer never arrived
    again = claim(engine, issue, "w/1", 10)
    assert len(again) == 10
    assert holders(engine, issue) == {"w/1": 10, None: 20}


def test_deferred_rows_wait_for_their_time_and_outlook_says_when(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 3)
    rows = claim(engine, issue, "w/1")
    slow = Result(Outcome.DEFERRED, 451, "4.7.1 slow down")
    counts = record(engine, [(rows[0], slow), (rows[1], Result.sent())])
    assert counts[DeliveryStatus.DEFERRED] == 1 and counts[DeliveryStatus.SENT] == 1
    with session_scope(engine) as s:
        look = claims.outlook(s, issue.id)
    assert (look.owed, look.held, look.claimable) == (2, 1, 0)  # rows[2] is still w/1's
    with session_scope(engine) as s:
        claims.release(s, ["w/1"])
        look = claims.outlook(s, issue.id)
    assert (look.owed, look.held, look.claimable) == (2, 0, 1)
    assert [r.id for r in claim(engine, issue, "w/2")] == [rows[2].id]
    with session_scope(engine) as s:
        look = claims.outlook(s, issue.id)
        due = s.get(Delivery, rows[0].id).next_attempt_at
    assert look.claimable == 0 and look.next_at is not None
    assert abs((look.next_at - utcnow()).total_seconds() - 60) < 30
    assert 0 < look.wait(poll=5.0) <= 5.0
    assert due is not None
    with session_scope(engine) as s:  # its time has come
        s.execute(
            update(Delivery)
            .where(Delivery.id == rows[0].id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    retry = claim(engine, issue, "w/3")
    assert [(r.id, r.attempts) for r in retry] == [(rows[0].id, 1)]


def test_release_holder_frees_only_that_workers_tokens(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 9)
    claim(engine, issue, "host:1:ab/1", 3)
    claim(engine, issue, "host:1:ab/2", 3)
    claim(engine, issue, "host:1:abc/1", 3)  # a different worker sharing a prefix
    with session_scope(engine) as s:
        assert claims.release_holder(s, "host:1:ab") == 6
        owed = s.scalar(
            select(Delivery.claimed_by).where(
                Delivery.edition_id == issue.id,
                Delivery.status.in_(OWED),
                Delivery.claimed_by.is_not(None),
            )
        )
    assert owed == "host:1:abc/1"
