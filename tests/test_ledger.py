"""The ledger on the real SQLite and PostgreSQL: filling, recording, finishing, starting."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, inspect, select, text

from digest.clock import utcnow
from digest.delivery import campaign, claims, ledger
from digest.delivery.transports.base import Outcome, Result
from digest.editorial.models import OPEN, Edition, EditionStatus
from digest.settings import load_settings
from digest.store.engine import MIGRATIONS_DIR, normalise_url, session_scope
from subscribers import store
from tests import pg
from tests.sending import add_picks, add_subscribers, started_send

RECORD = {"max_attempts": 3, "backoff_base": 60.0, "backoff_cap": 60.0, "bounce_threshold": 1}


def claim(engine, issue, token, limit=100):
    with session_scope(engine) as s:
        return claims.claim(s, issue.id, token, limit, 60.0)


def record(engine, results, **kw):
    with session_scope(engine) as s:
        return ledger.record(s, results, ledger.RetryPolicy(**RECORD), **kw)


# -- the decision alone (no database) ----------------------------------------------------

POLICY = ledger.RetryPolicy(**RECORD)
NOW = utcnow()


def row(i: int, token: str = "me/1", attempts: int = 0) -> ledger.Row:
    return ledger.Row(i, 100 + i, attempts, f"r{i}@example.com", "", "confirmed", token)


def test_decide_maps_each_outcome_to_a_status() -> None:
    sent = ledger.decide(row(1), Result.sent(), NOW, POLICY)
    assert (sent.status, sent.attempts, sent.due) == ("sent", 1, None)
    later = ledger.decide(row(2), Result(Outcome.DEFERRED, 451, "try later"), NOW, POLICY)
    assert later.status == "deferred" and (later.due - NOW).total_seconds() == 60.0
    last = ledger.decide(row(3, attempts=2), Result(Outcome.DEFERRED, 451, "busy"), NOW, POLICY)
    assert last.status == "failed" and last.reply.startswith("gave up after 3 attempts")
    hard = ledger.decide(row(4), Result(Outcome.FAILED, 550, "no such user"), NOW, POLICY)
    assert (hard.status, hard.code) == ("failed", 550)
    skipped = ledger.decide(row(5, attempts=1), "skipped: unsubscribed", NOW, POLICY)
    assert (skipped.status, skipped.attempts) == ("skipped", 1)


def test_plan_writes_only_rows_still_held_and_counts_a_retried_batch_once() -> None:
    rejected = Result(Outcome.FAILED, 550, "unknown user", recipient_rejected=True)
    results = [(row(1), Result.sent()), (row(2), rejected), (row(3), Result.sent())]
    holders = {1: ("me/1", None), 2: ("me/1", None), 3: ("other/9", None)}
    first = ledger.plan(results, holders, NOW, POLICY)
    assert [d.id for d in first.writes] == [1, 2] and first.lost == 1
    assert first.bounced == [102]
    assert (first.counts["sent"], first.counts["failed"]) == (1, 1)
    # The same batch again after its commit got lost: rows 1 and 2 were written at NOW.
    again = ledger.plan(
        results, {1: (None, NOW), 2: (None, NOW), 3: ("other/9", None)}, NOW, POLICY
    )
    assert again.writes == [] and again.bounced == [] and again.lost == 1
    assert (again.counts["sent"], again.counts["failed"]) == (1, 1)


def in_threads(n: int, fn) -> list:
    """Run fn(i) in n threads at once; return results, re-raising the first error."""
    out: list = [None] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            out[i] = fn(i)
        except BaseException as exc:  # re-raised below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return out


def test_a_record_retried_after_a_lost_commit_counts_once_and_bounces_once(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 2)
    rows = claim(engine, issue, "w/1")
    rejected = Result(Outcome.FAILED, 550, "5.1.1 no such user", recipient_rejected=True)
    results = [(rows[0], Result.sent()), (rows[1], rejected)]
    stamp = utcnow()
    first = record(engine, results, stamp=stamp)
    again = record(engine, results, stamp=stamp)  # the same call, retried
    assert first == again == {"sent": 1, "deferred": 0, "failed": 1, "skipped": 0}
    with session_scope(engine) as s:
        info = ledger.explain(s, issue, rows[1].email)
        assert info["status"] == "failed" and info["attempts"] == 1
        assert info["subscriber_status"] == "bounced"
        assert store.get_by_email(s, rows[1].email).bounce_count == 1


def test_an_unclaimed_row_is_never_written(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 1)
    (row,) = claim(engine, issue, "w/1")
    with session_scope(engine) as s:
        claims.release(s, ["w/1"])
    assert record(engine, [(row, Result.sent())])["sent"] == 0
    with session_scope(engine) as s:
        assert ledger.counts(s, issue.id)["pending"] == 1


def test_fill_twice_adds_nobody_twice(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 20)
    add_subscribers(engine, 5, start=100)  # confirmed after the send started
    with session_scope(engine) as s:
        assert ledger.fill(s, s.merge(issue)) == 5
        assert ledger.fill(s, s.merge(issue)) == 0
        assert sum(ledger.counts(s, issue.id).values()) == 25


def test_finish_only_when_nothing_is_owed_and_only_once(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 4)
    rows = claim(engine, issue, "w/1")
    record(engine, [(r, Result.sent()) for r in rows[:3]])
    with session_scope(engine) as s:
        assert not ledger.finish_if_done(s, s.merge(issue))
    record(engine, [(rows[3], Result.sent())])

    def finish(_i: int) -> bool:
        with session_scope(engine) as s:
            return ledger.finish_if_done(s, s.get(Edition, issue.id))

    assert sorted(in_threads(4, finish)) == [False, False, False, True]
    with session_scope(engine) as s:
        assert s.get(Edition, issue.id).status == EditionStatus.SENT


def test_concurrent_starts_freeze_one_issue_and_fill_it_once(engine) -> None:
    settings = load_settings()
    add_picks(engine, settings, 2)
    add_subscribers(engine, 30)
    started = in_threads(3, lambda _i: campaign.prepare_send(engine, settings))
    assert {i.id for i in started} == {started[0].id}
    assert {i.status for i in started} == {EditionStatus.SENDING}
    with session_scope(engine) as s:
        # One edition started; beside it only the next draft, opened once, still empty.
        assert s.scalar(select(func.count()).where(Edition.status.not_in(OPEN))) == 1
        following = s.scalars(select(Edition).where(Edition.status.in_(OPEN))).one()
        assert following.id != started[0].id and following.frozen_at is None
        assert sum(ledger.counts(s, started[0].id).values()) == 30
        assert sum(ledger.counts(s, following.id).values()) == 0


# -- migrations on PostgreSQL ---------------------------------------------------------


@pytest.fixture
def fresh_pg(pg_database: str) -> Iterator[str]:
    """An empty PostgreSQL database of its own (the session's one is already migrated)."""
    name = pg.create_database("digest_mig")
    yield pg.url_for(name)
    pg.drop_database(name)


def test_migrations_run_on_postgresql_even_when_several_processes_start_at_once(
    fresh_pg: str,
) -> None:
    opener = "import sys; from digest.store.engine import get_engine; get_engine(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", opener, fresh_pg], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for p in procs:  # one migrates, the others wait for it and find the schema at head
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    check = create_engine(normalise_url(fresh_pg))
    try:
        with check.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            assert list(versions) == [head]
        found = inspect(check)
        tables = set(found.get_table_names())
        indexes = {i["name"]: i["column_names"] for i in found.get_indexes("deliveries")}
        columns = {c["name"] for c in found.get_columns("leases")}
    finally:
        check.dispose()
    assert {"editions", "newsletters", "deliveries", "subscribers", "subscriptions"} <= tables
    assert {"picks", "leases"} <= tables
    assert not {"workers", "scheduler_leases", "issues"} & tables  # one lease table now
    assert indexes["ix_deliveries_claimed_by"] == ["claimed_by"]
    assert {"name", "holder", "machine", "pid", "expires_at", "edition_id"} <= columns
