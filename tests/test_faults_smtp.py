"""The real send path against misbehaving SMTP servers: nothing lost, nothing counted twice.

Every test drives campaign.prepare_send -> Sender -> SMTP transport (the code path of
`digest send`) against a real aiosmtpd server on loopback that injects one kind of
fault (tests/faults.py), then holds the ledger against what the server really did:

- the send completes: every recipient ends `sent`, or `failed` with the server's reply;
- the ledger's sent set is exactly the set of recipients the server accepted with 250,
  each accepted once (the stalled-after-storing case is the one documented exception);
- deferred recipients were retried, and no sooner than the backoff allowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.delivery import campaign
from digest.delivery.models import Delivery, DeliveryStatus
from digest.delivery.sender import Sender, SendReport
from digest.delivery.transports import make_transport
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition, EditionStatus
from digest.editorial.picks import add_pick, validate_pick
from digest.errors import TransportError
from digest.settings import Settings, load_settings
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import Subscriber, SubscriberStatus
from tests.faults import FaultServer, Moment, Plan, Reply, Reset, Stall, self_signed_context

#: Every fault against the plain and the pipelined (RFC 2920) client path on SQLite, and
#: the pipelined one on PostgreSQL, whose claims and leases differ.
pytestmark = pytest.mark.parametrize(
    ("db_backend", "pipelining"),
    [("sqlite", False), ("sqlite", True), ("postgresql", True)],
    ids=["sqlite-plain", "sqlite-pipelined", "postgresql-pipelined"],
    indirect=["db_backend"],
)
N = 12
EMAILS = [f"reader{i:02d}@example.com" for i in range(N)]


@dataclass(frozen=True)
class Row:
    status: str
    attempts: int
    code: int | None
    reply: str


def seed(engine, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        edition = editions.open_edition(s, settings, nl)
        pick = {
            "url": "https://news.example.com/a/1",
            "title": "One story worth reading",
            "summary": "A short lead.",
            "section": settings.sections[0],
            "featured": True,
        }
        add_pick(s, edition.id, validate_pick(pick, settings.sections))
        for i, email in enumerate(EMAILS):
            subscriptions.add(s, nl.id, email, f"Reader {i}", status="confirmed")


@pytest.fixture
def deliver(pipelining: bool):  # type: ignore[no-untyped-def]
    """What `digest send` does, minus the progress bar: `issue, report = deliver(engine, s)`."""

    def run(engine, settings: Settings) -> tuple[Edition, SendReport]:  # type: ignore[no-untyped-def]
        issue = campaign.prepare_send(engine, settings)
        transport = make_transport(settings)

        async def go() -> SendReport:
            async with transport:
                return await Sender(engine, settings, issue, transport).run()

        try:
            return issue, asyncio.run(go())
        finally:
            # The client really took the path under test.
            opened = transport.connections_opened  # type: ignore[attr-defined]
            pipelined = transport.pipelined_connections  # type: ignore[attr-defined]
            assert pipelined == (opened if pipelining else 0), (opened, pipelined)

    return run


def ledger(engine, edition_id: int) -> dict[str, Row]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        rows = s.execute(
            select(
                Subscriber.email,
                Delivery.status,
                Delivery.attempts,
                Delivery.last_code,
                Delivery.last_reply,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.edition_id == edition_id)
        )
        return {email: Row(*rest) for email, *rest in rows}


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch, pipelining: bool):  # type: ignore[no-untyped-def]
    """`with serving(plan, **env) as srv:` a faulty server, DIGEST_* pointing at it."""
    return lambda plan, **env: _serving(plan, monkeypatch, pipelining, **env)


@contextmanager
def _serving(
    plan: Plan, monkeypatch: pytest.MonkeyPatch, pipelining: bool, **env: str
) -> Iterator[FaultServer]:
    """A faulty server, with DIGEST_* pointing at it; `env` adds settings (lower-case names)."""
    tls = env.pop("tls_dir", None)
    kwargs = {"tls_context": self_signed_context(Path(tls))} if tls else {}
    size_limit = env.pop("data_size_limit", None)
    if size_limit:
        kwargs["data_size_limit"] = int(size_limit)  # type: ignore[assignment]
    with FaultServer(plan, pipelining=pipelining, **kwargs) as srv:  # type: ignore[arg-type]
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(srv.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        monkeypatch.setenv("DIGEST_SMTP_TIMEOUT", "2")
        monkeypatch.setenv("DIGEST_CONCURRENCY", "3")
        for key, value in env.items():
            monkeypatch.setenv(f"DIGEST_{key.upper()}", value)
        yield srv


def check_truth(
    srv: FaultServer, rows: dict[str, Row], *, duplicates: frozenset[str] = frozenset()
) -> None:
    """The ledger agrees with the server, recipient by recipient."""
    assert set(rows) == set(EMAILS)
    unfinished = {
        e: r
        for e, r in rows.items()
        if r.status not in (DeliveryStatus.SENT, DeliveryStatus.FAILED)
    }
    assert not unfinished, f"the send left recipients owed: {unfinished}"
    sent = {e for e, r in rows.items() if r.status == DeliveryStatus.SENT}
    accepted = srv.accepted
    assert sent == set(accepted), "the ledger's sent set differs from what the server accepted"
    for email, r in rows.items():
        if r.status == DeliveryStatus.SENT:
            assert 200 <= (r.code or 0) < 300, (email, r)
            assert accepted[email] == (2 if email in duplicates else 1), (email, accepted[email])
        else:
            assert r.code is not None and r.code >= 400 and r.reply, (email, r)


def test_421_mid_session_closes_and_the_messages_are_retried(
    workdir, engine, serving, deliver
) -> None:  # type: ignore[no-untyped-def]
    at_rcpt, after_data = EMAILS[2], EMAILS[5]

    def plan(m: Moment) -> Reply | None:
        if m.attempt == 1 and m.recipient == at_rcpt and m.stage == "RCPT":
            return Reply("421 4.3.2 Service shutting down")
        if m.attempt == 1 and m.recipient == after_data and m.stage == "END":
            return Reply("421 4.3.2 Service shutting down")
        return None

    with serving(plan) as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert report.finished and report.run[DeliveryStatus.SENT] == N
    assert len(srv.handler.replies("421")) == 2
    for email in (at_rcpt, after_data):
        assert rows[email].attempts == 2, rows[email]
    # The 421 closed those connections; fresh ones carried on.
    assert srv.handler.connections >= 3 + 2 - 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "450 4.2.1 Mailbox temporarily unavailable, try later"),
        ("MAIL", "451 4.7.1 Too many messages, slow down"),
        ("RCPT", "452 4.5.3 Too many recipients this hour"),
        ("END", "454 4.7.0 Temporary authentication failure"),
    ],
)
def test_throttling_then_acceptance_retries_with_backoff(
    workdir, engine, serving, deliver, stage: str, reply: str
) -> None:  # type: ignore[no-untyped-def]
    throttled = set(EMAILS[:4])
    base = 0.2
    budget = {"MAIL": 2 * len(throttled)}  # MAIL does not know the recipient: a global budget

    def plan(m: Moment) -> Reply | None:
        if m.stage != stage:
            return None
        if stage == "MAIL":
            if budget["MAIL"] > 0:
                budget["MAIL"] -= 1
                return Reply(reply)
            return None
        if m.recipient in throttled and m.attempt <= 2:
            return Reply(reply)
        return None

    with serving(plan, retry_backoff=str(base), retry_backoff_max="5") as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert report.finished and report.run[DeliveryStatus.SENT] == N
    code = int(reply[:3])
    assert len(srv.handler.replies(reply[:3])) == 2 * len(throttled)
    assert report.run["deferred"] == 2 * len(throttled)
    if stage == "MAIL":
        assert sum(r.attempts for r in rows.values()) == N + 2 * len(throttled)
        return
    retried = {e for e, r in rows.items() if r.attempts > 1}
    assert retried == throttled, f"{code}: only the throttled recipients were retried"
    for email in throttled:
        assert rows[email].attempts == 3
        first, second, third = srv.handler.attempts_at(stage)[email]
        # Exponential backoff: at least base after the 1st failure, 2*base after the 2nd.
        assert second - first >= base, (email, second - first)
        assert third - second >= 2 * base, (email, third - second)


def test_permanent_550_and_553_fail_with_the_servers_reply(
    workdir, engine, serving, deliver
) -> None:  # type: ignore[no-untyped-def]
    replies = {
        EMAILS[1]: "550 5.1.1 <reader01@example.com>: Recipient address rejected: no such user",
        EMAILS[7]: "553 5.1.3 Recipient address syntax not accepted here",
    }

    def plan(m: Moment) -> Reply | None:
        if m.stage == "RCPT" and m.recipient in replies:
            return Reply(replies[m.recipient])
        return None

    with serving(plan) as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert (
        report.finished
        and report.run[DeliveryStatus.FAILED] == 2
        and report.run[DeliveryStatus.SENT] == N - 2
    )
    for email, text in replies.items():
        r = rows[email]
        assert r.status == DeliveryStatus.FAILED and r.attempts == 1, (
            "a 5xx is final: never retried"
        )
        assert r.code == int(text[:3])
        assert r.reply in text, (r.reply, text)
    with session_scope(engine) as s:
        assert s.get(Edition, issue.id).status == EditionStatus.SENT
        # A hard bounce counts toward the subscriber's bounce threshold.
        assert store.get_by_email(s, EMAILS[1]).bounce_count == 1


def test_552_too_big_at_mail_via_size_and_after_data(workdir, engine, serving, deliver) -> None:  # type: ignore[no-untyped-def]
    # (1) The server advertises SIZE smaller than the message: refused at MAIL, before the
    #     bytes are sent. (2) A mailbox over quota refuses at the end of the data.
    with serving(lambda m: None, data_size_limit="4000") as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert report.finished and report.run[DeliveryStatus.FAILED] == N
    assert {r.code for r in rows.values()} == {552}
    assert all("size" in r.reply and r.attempts == 1 for r in rows.values())
    with session_scope(engine) as s:
        # Too big is the message's fault, not the address's: nobody is marked bounced.
        members = subscriptions.members(s, newsletters.resolve(s, settings).id, limit=100)
        assert {(x.status, x.subscriber.bounce_count) for x in members} == {
            (SubscriberStatus.CONFIRMED, 0)
        }


def test_552_after_data_for_one_mailbox(workdir, engine, serving, deliver) -> None:  # type: ignore[no-untyped-def]
    full = EMAILS[3]
    text = "552 5.2.2 Mailbox full"
    with serving(
        lambda m: Reply(text) if m.stage == "END" and m.recipient == full else None
    ) as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert rows[full].status == DeliveryStatus.FAILED and rows[full].code == 552
    assert "Mailbox full" in rows[full].reply
    assert report.run[DeliveryStatus.SENT] == N - 1


def test_connection_reset_during_data_is_retried(workdir, engine, serving, deliver) -> None:  # type: ignore[no-untyped-def]
    mid_stream, before_reply = EMAILS[4], EMAILS[9]

    def plan(m: Moment) -> Reset | None:
        if m.attempt == 1 and m.recipient == mid_stream and m.stage == "DATA":
            return Reset()  # after the 354, while the message is streaming
        if m.attempt == 1 and m.recipient == before_reply and m.stage == "END":
            return Reset()  # the whole message arrived; the reply never leaves
        return None

    with serving(plan) as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert len(srv.handler.replies("reset")) == 2
    for email in (mid_stream, before_reply):
        assert rows[email].status == DeliveryStatus.SENT and rows[email].attempts == 2
    assert report.run["deferred"] == 2


def test_stalled_server_timeouts_fire(workdir, engine, serving, deliver) -> None:  # type: ignore[no-untyped-def]
    slow_rcpt, slow_reply = EMAILS[0], EMAILS[6]

    def plan(m: Moment) -> Stall | None:
        if m.stage == "EHLO" and m.connection == 1:
            return Stall(3)  # the first connection hangs in the handshake
        if m.attempt == 1 and m.recipient == slow_rcpt and m.stage == "RCPT":
            return Stall(3)
        if m.attempt == 1 and m.recipient == slow_reply and m.stage == "END":
            # The server keeps the message but its 250 comes too late: the client must
            # assume it may not have arrived and send again. SMTP's own duplicate.
            return Stall(3, store_first=True)
        return None

    with serving(plan, smtp_timeout="0.5") as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows, duplicates=frozenset({slow_reply}))
    assert report.finished and report.run[DeliveryStatus.SENT] == N
    assert rows[slow_rcpt].attempts == 2 and rows[slow_reply].attempts == 2
    assert len(srv.handler.replies("stall")) == 3


def test_server_that_never_answers_stops_the_send_and_keeps_everyone_owed(
    workdir, engine, serving, deliver
) -> None:  # type: ignore[no-untyped-def]
    state = {"down": True}

    def plan(m: Moment) -> Stall | None:
        return Stall(2) if state["down"] and m.stage == "EHLO" else None

    with serving(plan, smtp_timeout="0.3") as srv:
        settings = load_settings()
        seed(engine, settings)
        with pytest.raises(TransportError, match="timed out"):
            deliver(engine, settings)
        with session_scope(engine) as s:
            issue = s.scalars(select(Edition).where(Edition.status == EditionStatus.SENDING)).one()
        rows = ledger(engine, issue.id)
        # An outage burns nobody's attempts: everyone is still owed, untouched.
        assert {(r.status, r.attempts) for r in rows.values()} == {(DeliveryStatus.PENDING, 0)}
        assert not srv.accepted
        state["down"] = False
        _, report = deliver(engine, settings)  # the operator runs `digest send` again
    check_truth(srv, ledger(engine, issue.id))
    assert report.finished and report.run[DeliveryStatus.SENT] == N


def test_server_limit_of_messages_per_connection(workdir, engine, serving, deliver) -> None:  # type: ignore[no-untyped-def]
    limit = 3

    def plan(m: Moment) -> Reply | None:
        if m.stage == "MAIL" and m.transaction > limit:
            return Reply("421 4.7.0 Too many messages on this connection, reconnect")
        return None

    with serving(plan) as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert report.finished and report.run[DeliveryStatus.SENT] == N
    refusals = len(srv.handler.replies("421"))
    assert refusals > 0 and report.run["deferred"] == refusals
    assert srv.handler.connections >= N // limit


def test_messages_per_connection_setting_avoids_the_limit(
    workdir, engine, serving, deliver
) -> None:  # type: ignore[no-untyped-def]
    limit = 3

    def plan(m: Moment) -> Reply | None:
        if m.stage == "MAIL" and m.transaction > limit:
            return Reply("421 4.7.0 Too many messages on this connection, reconnect")
        return None

    with serving(plan, smtp_messages_per_connection=str(limit)) as srv:
        settings = load_settings()
        seed(engine, settings)
        issue, report = deliver(engine, settings)
    rows = ledger(engine, issue.id)
    check_truth(srv, rows)
    assert not srv.handler.replies("421")
    assert {r.attempts for r in rows.values()} == {1}


def test_starttls_with_untrusted_certificate_is_refused_unless_allowed(
    workdir, engine, serving, deliver, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    with serving(lambda m: None, tls_dir=str(workdir)) as srv:
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "starttls")
        settings = load_settings()
        assert settings.smtp_tls_verify is True  # verification is on unless turned off
        seed(engine, settings)
        with pytest.raises(TransportError, match="certificate not trusted") as caught:
            deliver(engine, settings)
        assert "\n" not in str(caught.value)
        assert "DIGEST_SMTP_TLS_VERIFY=false" in str(caught.value)
        with session_scope(engine) as s:
            issue = s.scalars(select(Edition).where(Edition.status == EditionStatus.SENDING)).one()
        assert {(r.status, r.attempts) for r in ledger(engine, issue.id).values()} == {
            (DeliveryStatus.PENDING, 0)
        }
        assert not srv.accepted

        monkeypatch.setenv("DIGEST_SMTP_TLS_VERIFY", "false")
        _, report = deliver(engine, load_settings())
    check_truth(srv, ledger(engine, issue.id))
    assert report.finished and srv.handler.tls_sessions == N
