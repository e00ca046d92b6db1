"""The PostgreSQL-minded parts of claiming and recording, on both backends: the keyset
cursor of a claim, a batch recorded with one timestamp, fresh statistics after the fill."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, text

from digest.clock import utcnow
from digest.delivery import claims, ledger
from digest.delivery.models import Delivery, DeliveryStatus
from digest.delivery.sender import Sender
from digest.delivery.transports.base import Outbound, Outcome, Result, Transport
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.sending import started_send

POLICY = ledger.RetryPolicy(max_attempts=3, backoff_base=60.0, backoff_cap=60.0, bounce_threshold=1)


def claim(engine, edition, token, limit=10, after=0):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return claims.claim(s, edition.id, token, limit, 60.0, after_id=after)


def test_a_claim_after_the_cursor_skips_lower_ids_and_a_new_pass_finds_them(engine) -> None:
    edition, _ = started_send(engine, load_settings(), 30)
    first = claim(engine, edition, "w/1")
    cursor = first[-1].id
    assert [r.id for r in first] == sorted(r.id for r in first)
    # A row behind the cursor becomes claimable again (its holder gave it back).
    with session_scope(engine) as s:
        claims.release(s, ["w/1"])
    second = claim(engine, edition, "w/2", after=cursor)
    assert min(r.id for r in second) > cursor and len(second) == 10
    third = claim(engine, edition, "w/3", after=second[-1].id)
    assert len(third) == 10 and min(r.id for r in third) > second[-1].id
    assert claim(engine, edition, "w/4", after=third[-1].id) == []  # the end of this pass
    again = claim(engine, edition, "w/5")  # a new pass starts at 0: the rows given back
    assert [r.id for r in again] == [r.id for r in first]


def test_the_sender_comes_back_for_rows_behind_its_cursor(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Rows deferred behind the cursor are sent by the Sender's next pass (small batches,
    so the cursor moves on many times before they are due)."""
    monkeypatch.setenv("DIGEST_RETRY_BACKOFF", "0.05")
    monkeypatch.setenv("DIGEST_RETRY_BACKOFF_MAX", "0.05")
    settings = load_settings()
    edition, emails = started_send(engine, settings, 60)
    deferred_once: set[str] = set()

    class Flaky(Transport):
        """451 for every third address the first time it comes, 250 afterwards."""

        name = "flaky"

        async def send(self, message: Outbound) -> Result:
            first = message.recipient not in deferred_once
            if emails.index(message.recipient) % 3 == 0 and first:
                deferred_once.add(message.recipient)
                return Result(Outcome.DEFERRED, 451, "4.3.0 try again")
            return Result.sent()

    async def go():  # type: ignore[no-untyped-def]
        async with Flaky() as transport:
            return await Sender(engine, settings, edition, transport, batch_size=7).run()

    report = asyncio.run(go())
    assert report.finished and report.totals[DeliveryStatus.SENT] == 60
    assert len(deferred_once) == 20 and report.run[DeliveryStatus.DEFERRED] == 20
    assert report.run[DeliveryStatus.SENT] == 60


def test_a_batch_is_recorded_with_one_timestamp(engine) -> None:
    edition, _ = started_send(engine, load_settings(), 6)
    rows = claim(engine, edition, "w/1")
    outcomes: list[Result | str] = [
        Result.sent(),
        Result(Outcome.SENT, 250, "2.0.0 queued as A1"),
        Result(Outcome.DEFERRED, 451, "later"),
        Result(Outcome.FAILED, 550, "no such user", recipient_rejected=True),
        "skipped: subscriber is unsubscribed",
        Result.sent(),
    ]
    stamp = utcnow().replace(microsecond=123456)
    with session_scope(engine) as s:
        counts = ledger.record(s, list(zip(rows, outcomes)), POLICY, stamp=stamp)
    assert counts[DeliveryStatus.SENT] == 3 and counts[DeliveryStatus.DEFERRED] == 1
    with session_scope(engine) as s:
        got = {
            d.id: d
            for d in s.scalars(select(Delivery).where(Delivery.edition_id == edition.id)).all()
        }
    sent = [
        got[r.id]
        for r, o in zip(rows, outcomes)
        if isinstance(o, Result) and o.outcome is Outcome.SENT
    ]
    assert len(sent) == 3
    for d in sent:
        assert d.status == DeliveryStatus.SENT and d.attempts == 1 and d.claimed_by is None
        assert d.sent_at == stamp and d.updated_at == stamp  # the batch's one timestamp, exact
    assert got[rows[1].id].last_code == 250 and got[rows[1].id].last_reply == "2.0.0 queued as A1"
    deferred, failed, skipped = (got[rows[i].id] for i in (2, 3, 4))
    assert deferred.status == DeliveryStatus.DEFERRED and deferred.sent_at is None
    assert deferred.next_attempt_at == stamp + timedelta(seconds=60)
    assert failed.status == DeliveryStatus.FAILED and failed.last_code == 550
    assert skipped.status == DeliveryStatus.SKIPPED and skipped.attempts == 0
    assert all(d.updated_at == stamp for d in (deferred, failed, skipped))
    # Retried after a lost commit: counted once, nothing written twice.
    with session_scope(engine) as s:
        again = ledger.record(s, list(zip(rows, outcomes)), POLICY, stamp=stamp)
    assert again[DeliveryStatus.SENT] == 3


def test_postgresql_statistics_are_fresh_after_the_fill(engine) -> None:
    edition, _ = started_send(engine, load_settings(), 300)
    with session_scope(engine) as s:
        if s.get_bind().dialect.name != "postgresql":
            return  # SQLite plans without statistics
        tuples = s.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"))
        analysed = s.scalar(
            text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'deliveries'")
        )
    assert tuples >= 300 and analysed is not None
