"""The whole pipeline against a real aiosmtpd server: picks -> issue -> ledger -> inbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from contextlib import contextmanager

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.delivery import campaign, ledger
from digest.delivery.models import DeliveryStatus
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition, EditionStatus
from digest.editorial.picks import live_picks
from digest.errors import StateError
from digest.settings import load_settings
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import SubscriberStatus, Suppression
from subscribers.tokens import verify_token
from tests import sending
from tests.smtpd import CollectingHandler, SMTPServer


def seed(engine, settings, n_confirmed: int = 30) -> list[str]:
    sending.add_picks(engine, settings, 6)
    emails = [f"reader{i}@example.com" for i in range(n_confirmed)]
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        for i, e in enumerate(emails):
            subscriptions.add(s, nl.id, e, f"Reader {i}", status="confirmed")
        subscriptions.add(s, nl.id, "pending@example.com", "Pending", status="pending")
        subscriptions.add(s, nl.id, "gone@example.com", "Gone", status="confirmed")
        subscriptions.unsubscribe(s, nl.id, "gone@example.com")
    return emails


def send(engine, settings, key=None, **kw):
    issue = campaign.prepare_send(engine, settings, key=key)

    async def go():
        transport = make_transport(settings)
        async with transport:
            return await Sender(engine, settings, issue, transport, **kw).run()

    return issue, asyncio.run(go())


def test_every_confirmed_subscriber_gets_exactly_one_message(smtp_server, workdir, engine) -> None:
    settings = load_settings()
    emails = seed(engine, settings)
    issue, report = send(engine, settings)
    got = Counter(smtp_server.handler.recipients())
    assert sorted(got) == sorted(emails)
    assert set(got.values()) == {1}
    assert report.run[DeliveryStatus.SENT] == len(emails) and report.finished
    tokens = set()
    for m in smtp_server.messages:
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        assert msg.get_content_type() == "multipart/alternative"
        assert msg["To"].addresses[0].addr_spec == m.rcpt_tos[0]
        url = str(msg["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]
        sid = verify_token(
            settings.secret(), "unsubscribe", url.rsplit("/", 1)[1], settings.effective_list_id
        )
        with session_scope(engine) as s:
            assert store.get(s, sid).email == m.rcpt_tos[0]
        tokens.add(url)
        text = msg.get_payload()[0].get_content()
        assert url in text
    assert len(tokens) == len(emails)
    with session_scope(engine) as s:
        row = editions.get(s, newsletters.resolve(s, settings), issue.key)
        assert row.status == EditionStatus.SENT
        assert ledger.counts(s, row.id)[DeliveryStatus.SENT] == len(emails)
    # Sending it again is a no-op: nobody gets it twice.
    again = campaign.prepare_send(engine, settings, key=issue.key)
    assert again.status == EditionStatus.SENT
    # Without a key a send addresses the next edition, where nothing is picked yet.
    with pytest.raises(StateError, match="nothing picked"):
        campaign.prepare_send(engine, settings)
    assert len(smtp_server.messages) == len(emails)


def test_interrupted_send_resumes_without_duplicates(smtp_server, workdir, engine) -> None:
    settings = load_settings()
    emails = seed(engine, settings, 60)
    stop = asyncio.Event()

    def stop_early(report):
        if report.run[DeliveryStatus.SENT] >= 10:
            stop.set()

    issue = campaign.prepare_send(engine, settings)

    async def first():
        transport = make_transport(settings)
        async with transport:
            return await Sender(
                engine, settings, issue, transport, stop=stop, on_progress=stop_early, batch_size=5
            ).run()

    report = asyncio.run(first())
    assert report.stopped and not report.finished
    first_count = len(smtp_server.messages)
    assert 10 <= first_count < 60
    with session_scope(engine) as s:
        assert s.get(Edition, issue.id).status == EditionStatus.SENDING
    # The next `digest send` without a key resumes the interrupted issue.
    _, report2 = send(engine, settings)
    got = Counter(smtp_server.handler.recipients())
    assert sorted(got) == sorted(emails)
    assert set(got.values()) == {1}
    assert report2.finished


class Throttling(CollectingHandler):
    """451 for chosen recipients the first `times` tries; 550 for others, forever."""

    def __init__(self, flaky: set[str], dead: set[str], times: int = 2) -> None:
        super().__init__()
        self.flaky, self.dead, self.times = flaky, dead, times
        self.tries: Counter[str] = Counter()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options
    ):
        self.tries[address] += 1
        if address in self.dead:
            return "550 5.1.1 no such user"
        if address in self.flaky and self.tries[address] <= self.times:
            return "451 4.7.1 slow down"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@contextmanager
def serving(handler, monkeypatch, **env: str):
    """A real SMTP server with `handler`, and DIGEST_* settings pointing at it."""
    with SMTPServer(handler) as srv:
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(srv.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        for key, value in env.items():
            monkeypatch.setenv(f"DIGEST_{key.upper()}", value)
        yield srv


def test_4xx_is_retried_and_5xx_fails_and_bounces(workdir, engine, monkeypatch) -> None:
    flaky = {"reader1@example.com", "reader2@example.com"}
    dead = {"reader3@example.com"}
    handler = Throttling(flaky, dead)
    with serving(handler, monkeypatch, bounce_threshold="1"):
        settings = load_settings()
        emails = seed(engine, settings, 8)
        issue, report = send(engine, settings)
    got = Counter(handler.recipients())
    assert sorted(got) == sorted(set(emails) - dead)
    assert set(got.values()) == {1}
    assert report.finished
    with session_scope(engine) as s:
        for addr in flaky:
            info = ledger.explain(s, issue, addr)
            assert info["status"] == DeliveryStatus.SENT and info["attempts"] == 3
        info = ledger.explain(s, issue, "reader3@example.com")
        assert info["status"] == DeliveryStatus.FAILED and info["last_code"] == 550
        assert "no such user" in info["last_reply"]
        assert store.get_by_email(s, "reader3@example.com").suppression == Suppression.BOUNCED


def test_deferred_forever_gives_up_after_max_attempts(workdir, engine, monkeypatch) -> None:
    handler = Throttling({"reader0@example.com"}, set(), times=100)
    with serving(handler, monkeypatch, max_attempts="3"):
        settings = load_settings()
        seed(engine, settings, 3)
        issue, report = send(engine, settings)
    assert handler.tries["reader0@example.com"] == 3
    with session_scope(engine) as s:
        info = ledger.explain(s, issue, "reader0@example.com")
        assert info["status"] == DeliveryStatus.FAILED
        assert info["last_reply"].startswith("gave up after 3 attempts")
        # Never counted as sent: the throttled reader is not in what arrived.
    assert "reader0@example.com" not in handler.recipients()


def test_unsubscribed_after_fill_is_skipped(smtp_server, workdir, engine) -> None:
    settings = load_settings()
    seed(engine, settings, 5)
    issue = campaign.prepare_send(engine, settings)
    with session_scope(engine) as s:
        subscriptions.unsubscribe(s, newsletters.resolve(s, settings).id, "reader4@example.com")
    asyncio.run(_send_issue(engine, settings, issue))
    assert "reader4@example.com" not in smtp_server.handler.recipients()
    with session_scope(engine) as s:
        assert ledger.explain(s, issue, "reader4@example.com")["status"] == "skipped"
        member = subscriptions.find(s, newsletters.resolve(s, settings).id, "reader4@example.com")
        assert member.status == SubscriberStatus.UNSUBSCRIBED


async def _send_issue(engine, settings, issue):
    transport = make_transport(settings)
    async with transport:
        return await Sender(engine, settings, issue, transport).run()


def test_outbox_when_no_smtp_host(workdir, engine) -> None:
    settings = load_settings()
    emails = seed(engine, settings, 7)
    issue, report = send(engine, settings)
    files = list((workdir / "outbox" / "new").iterdir())
    assert len(files) == len(emails)
    rcpts = set()
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        rcpts.add(msg["To"].addresses[0].addr_spec)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert rcpts == set(emails)


def test_sent_issue_is_never_refrozen(smtp_server, workdir, engine) -> None:
    settings = load_settings()
    seed(engine, settings, 2)
    issue, _ = send(engine, settings)
    sending.add_picks(engine, settings, 1)  # goes into the next edition
    with pytest.raises(StateError, match="can no longer change"):
        campaign.build(engine, settings, key=issue.key)
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        frozen = editions.get(s, nl, issue.key)
        assert frozen.status == EditionStatus.SENT
        assert len(frozen.content["picks"]) == 6  # the new pick waits for the next edition
        assert len(live_picks(s, frozen.id, settings.sections)) == 6
        following = editions.open_edition(s, settings, nl)
        assert following.id != frozen.id
        assert len(live_picks(s, following.id, settings.sections)) == 1
