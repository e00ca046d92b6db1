"""Signed webhooks against a real HTTP receiver on loopback.

Events are written in the transaction of the change (outbox), delivered signed by the
dispatcher, retried with backoff after a 500, in order per subscriber (a failing one
holds back only its subscriber), resumed after the app restarts, never twice at once
from two dispatchers, and never to loopback or private addresses unless allowed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.settings import Settings, load_settings
from digest.store.engine import session_scope
from digest.webhooks import endpoints, signing
from digest.webhooks.dispatcher import Dispatcher
from digest.webhooks.models import EVENT_TYPES, HookStatus, WebhookDelivery, WebhookEvent
from subscribers import store, subscriptions
from subscribers.model import SubscriptionStatus, Suppression
from tests.clirun import run_cli
from tests.hookreceiver import Receiver
from tests.sending import newsletter, started_send, subscribe

FAST = {
    "DIGEST_WEBHOOK_ALLOW_PRIVATE": "true",
    "DIGEST_WEBHOOK_RETRY_BACKOFF": "0.1",
    "DIGEST_WEBHOOK_RETRY_BACKOFF_MAX": "0.4",
    "DIGEST_WEBHOOK_POLL_SECONDS": "0.05",
    "DIGEST_WEBHOOK_TIMEOUT": "3",
}


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, workdir) -> Settings:  # type: ignore[no-untyped-def]
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture
def receiver() -> Receiver:
    with Receiver() as r:
        yield r  # type: ignore[misc]


def hook_up(engine, settings: Settings, receiver: Receiver, events=None) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        row = endpoints.add(s, receiver.url, events, allow_private=True)
        receiver.secret = row.secret
        return row.id


def dispatch(
    engine, settings: Settings, until: Callable[[], object], timeout: float = 20
) -> Dispatcher:  # type: ignore[no-untyped-def]
    """Run one dispatcher until `until()` holds (or fail after `timeout`)."""

    async def go() -> Dispatcher:
        stop = asyncio.Event()
        d = Dispatcher(engine, settings)
        task = asyncio.create_task(d.run(stop))
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline or task.done():
                stop.set()
                await task
                raise AssertionError("the dispatcher did not get there in time")
            await asyncio.sleep(0.02)
        stop.set()
        await task
        return d

    return asyncio.run(go())


def emails_of(receiver: Receiver, email: str) -> list[str]:
    return [
        h.event["type"]
        for h in receiver.accepted()
        if (h.event["data"].get("subscriber") or {}).get("email") == email
    ]


def test_subscriber_events_arrive_signed_in_order(engine, fast, receiver, capsys) -> None:
    out = run_cli(capsys, "webhooks", "add", receiver.url)
    assert out.code == 0, out.err
    receiver.secret = out.out.split()[-1]
    assert receiver.secret.startswith("whsec_") and len(receiver.secret) > 40
    listed = run_cli(capsys, "webhooks", "list")
    assert receiver.url in listed.out and receiver.secret not in listed.out

    nl = newsletter(engine, fast)
    subscribe(engine, fast, "olga@example.org", "Olga", status="pending")
    with session_scope(engine) as s:
        olga = store.require(s, "olga@example.org")
        subscriptions.set_status(s, nl.id, olga.id, SubscriptionStatus.CONFIRMED, "confirm link")
        subscriptions.set_status(s, nl.id, olga.id, SubscriptionStatus.CONFIRMED, "again")  # no-op
        subscriptions.unsubscribe(s, nl.id, "olga@example.org", "unsubscribe link")
        store.suppress(s, olga.id, Suppression.COMPLAINED, "ARF abuse report")
    subscribe(engine, fast, "ivan@example.org", "Ivan")  # confirmed at once (an import, the CLI)
    with pytest.raises(RuntimeError), session_scope(engine) as s:  # rolled back: no event
        subscriptions.unsubscribe(s, nl.id, "ivan@example.org", "cli")
        raise RuntimeError("the transaction fails after the change")

    dispatch(engine, fast, lambda: len(receiver.accepted()) >= 4)
    hooks = receiver.wait(4)
    assert all(h.verified for h in hooks)
    assert emails_of(receiver, "olga@example.org") == [
        "subscriber.confirmed",
        "subscriber.unsubscribed",
        "subscriber.complained",
    ]
    assert emails_of(receiver, "ivan@example.org") == ["subscriber.confirmed"]
    first = next(h for h in hooks if h.event["data"]["subscriber"]["email"] == "olga@example.org")
    body = first.event
    assert set(body) == {"id", "type", "created_at", "data"} and body["id"].startswith("evt_")
    assert body["data"]["newsletter"] == nl.slug and body["data"]["source"] == "confirm link"
    assert first.headers["Digest-Event-Id"] == body["id"]
    assert first.headers["Content-Type"] == "application/json"
    # The receiver's check really checks: a changed body or another secret fails.
    header = first.headers[signing.HEADER]
    assert not signing.verify(receiver.secret, header, first.body + b" ")
    assert not signing.verify("whsec_other", header, first.body)
    assert not signing.verify(receiver.secret, header, first.body, now=time.time() + 3600)
    log = run_cli(capsys, "webhooks", "log")
    assert log.code == 0 and "subscriber.complained" in log.out and "HTTP 200" in log.out
    removed = run_cli(capsys, "webhooks", "remove", receiver.url)
    assert removed.code == 0 and "removed" in removed.out
    with session_scope(engine) as s:
        subscriptions.add(s, nl.id, "new@example.org", status="confirmed")
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 4  # nobody listens


def test_a_failing_event_is_retried_and_holds_back_only_its_subscriber(engine, fast) -> None:
    tries: dict[str, int] = {}

    def answer(n: int, event: dict) -> int:  # type: ignore[type-arg]
        who = event["data"]["subscriber"]["email"]
        tries[event["id"]] = tries.get(event["id"], 0) + 1
        failing = who == "olga@example.org" and event["type"] == "subscriber.confirmed"
        return 500 if failing and tries[event["id"]] <= 2 else 200

    with Receiver(answer) as receiver:
        hook_up(engine, fast, receiver, ["subscriber.confirmed", "subscriber.unsubscribed"])
        nl = newsletter(engine, fast)
        subscribe(engine, fast, "olga@example.org")
        with session_scope(engine) as s:
            subscriptions.unsubscribe(s, nl.id, "olga@example.org", "cli")
        subscribe(engine, fast, "ivan@example.org")
        dispatch(engine, fast, lambda: len(receiver.accepted()) >= 3)
        order = [
            (h.event["data"]["subscriber"]["email"], h.event["type"], h.status)
            for h in receiver.hooks
        ]
    # Olga's first event failed twice; her second waited for it; Ivan's went at once.
    assert order.index(("ivan@example.org", "subscriber.confirmed", 200)) < order.index(
        ("olga@example.org", "subscriber.confirmed", 200)
    )
    olga = [(t, st) for who, t, st in order if who == "olga@example.org"]
    assert olga == [
        ("subscriber.confirmed", 500),
        ("subscriber.confirmed", 500),
        ("subscriber.confirmed", 200),
        ("subscriber.unsubscribed", 200),
    ]
    with session_scope(engine) as s:
        rows = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert [r.status for r in rows] == [HookStatus.DELIVERED] * 3
        assert [r.attempts for r in rows] == [3, 1, 1]


def test_an_event_is_given_up_after_its_time_and_the_next_one_goes(
    engine, fast, monkeypatch
) -> None:
    settings = fast.model_copy(update={"webhook_give_up_after": 0.5})
    with Receiver(lambda n, e: 500 if e["type"] == "subscriber.confirmed" else 200) as receiver:
        hook_up(engine, settings, receiver)
        nl = newsletter(engine, settings)
        subscribe(engine, settings, "olga@example.org")
        with session_scope(engine) as s:
            subscriptions.unsubscribe(s, nl.id, "olga@example.org", "cli")
        dispatch(engine, settings, lambda: receiver.accepted())
    with session_scope(engine) as s:
        first, second = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert first.status == HookStatus.FAILED and "gave up after" in first.last_error
        assert second.status == HookStatus.DELIVERED


def test_deliveries_survive_a_restart_of_the_app(fast, serve_web, monkeypatch) -> None:
    """The app runs the dispatcher; events owed when it stops go out after it restarts."""
    up = {"ok": False}
    with Receiver(lambda n, e: 200 if up["ok"] else 500) as receiver:
        for key, value in FAST.items():
            monkeypatch.setenv(key, value)
        first = serve_web()
        hook_up(first.engine, first.settings, receiver)
        key = _api_key(first.engine)
        with first.client(headers={"Authorization": f"Bearer {key}"}) as client:
            for who in ("olga@example.org", "ivan@example.org"):
                body = {"email": who, "confirmed": True, "consent_source": "CMS form"}
                assert client.post("/api/v1/subscribers", json=body).status_code == 201
        deadline = time.monotonic() + 10
        while len(receiver.hooks) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.hooks) >= 2 and not receiver.accepted()  # tried, refused
        first.__exit__(None, None, None)  # the app stops (a deploy)
        up["ok"] = True
        second = serve_web()
        hooks = receiver.wait(2)
        assert sorted(h.event["data"]["subscriber"]["email"] for h in hooks) == [
            "ivan@example.org",
            "olga@example.org",
        ]
        assert all(h.verified for h in receiver.hooks)
        assert len({h.event["id"] for h in hooks}) == 2  # each accepted once
        second.__exit__(None, None, None)


def _api_key(engine) -> str:  # type: ignore[no-untyped-def]
    from digest.api import keys

    with session_scope(engine) as s:
        return keys.create(s, "crm")[1]


def test_bounces_complaints_and_a_finished_send(engine, fast, receiver) -> None:
    hook_up(engine, fast, receiver, ["subscriber.bounced", "edition.sent"])
    edition, emails = started_send(engine, fast, 3)
    with session_scope(engine) as s:
        first = store.require(s, emails[0])
        assert not store.record_bounce(s, first.id, 2)  # counted, not yet bounced
        assert store.record_bounce(s, first.id, 2)  # bounced now: one event
        assert store.record_bounce(s, first.id, 2)  # still bounced: no second event

    async def send() -> None:
        async with make_transport(fast) as transport:
            await Sender(engine, fast, edition, transport).run()

    asyncio.run(send())
    dispatch(engine, fast, lambda: len(receiver.accepted()) >= 2)
    types = [h.event["type"] for h in receiver.wait(2)]
    assert sorted(types) == ["edition.sent", "subscriber.bounced"]
    sent = next(h.event for h in receiver.accepted() if h.event["type"] == "edition.sent")
    assert sent["data"]["edition"]["key"] == edition.key
    assert sent["data"]["deliveries"]["sent"] == 2 and sent["data"]["deliveries"]["skipped"] == 1
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 2


def test_an_erasure_is_told_after_the_earlier_events_then_forgotten(
    engine, fast, receiver, capsys
) -> None:
    hook_up(engine, fast, receiver, ["subscriber.confirmed", "subscriber.erased"])
    nl = newsletter(engine, fast)
    subscribe(engine, fast, "olga@example.org", "Olga")
    subscribe(engine, fast, "ivan@example.org", "Ivan")
    with session_scope(engine) as s:
        olga = store.require(s, "olga@example.org").id
        ivan = store.require(s, "ivan@example.org").id
    out = run_cli(capsys, "subscribers", "erase", "olga@example.org")
    assert out.code == 0 and "webhook notices=1" in out.out, out.err

    dispatch(engine, fast, lambda: len(receiver.accepted()) >= 3)
    hooks = receiver.wait(3)
    assert all(h.verified for h in hooks)
    mine = [h.event for h in hooks if h.event["data"].get("subscriber", {}).get("id") != ivan]
    # In order for the person: the confirmation (redacted before it went) before the erasure.
    assert [e["type"] for e in mine] == ["subscriber.confirmed", "subscriber.erased"]
    assert mine[0]["data"] == {"erased": True, "newsletter": nl.slug}
    notice = mine[1]["data"]
    assert notice["subscriber"] == {"id": olga, "email": "olga@example.org"}
    assert notice["newsletters"] == [nl.slug] and notice["erased_at"].endswith("Z")
    assert emails_of(receiver, "ivan@example.org") == ["subscriber.confirmed"]
    with session_scope(engine) as s:  # delivered: the stored notice keeps only the id
        stored = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "subscriber.erased"))
        (event,) = stored.all()
        assert event.data["subscriber"] == {"id": olga} and event.subscriber_id is None
        dump = " ".join(str(e.data) for e in s.scalars(select(WebhookEvent)))
        assert "olga@example.org" not in dump and "Olga" not in dump


def test_two_dispatchers_never_deliver_an_event_twice(engine, fast, receiver) -> None:
    hook_up(engine, fast, receiver)
    for i in range(30):
        subscribe(engine, fast, f"reader{i}@example.com")

    async def both() -> None:
        stop = asyncio.Event()
        pair = [Dispatcher(engine, fast), Dispatcher(engine, fast)]
        tasks = [asyncio.create_task(d.run(stop)) for d in pair]
        deadline = time.monotonic() + 20
        while len(receiver.accepted()) < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # time for a second copy, if there were one
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(both())
    ids = [h.event["id"] for h in receiver.hooks]
    assert len(ids) == 30 and len(set(ids)) == 30


def test_private_addresses_are_refused_unless_allowed(engine, workdir, capsys, receiver) -> None:
    refused = run_cli(capsys, "webhooks", "add", "http://127.0.0.1:9/hooks")
    assert "loopback or private address" in refused.one_line_error()
    for url in ("ftp://example.com/x", "http://user:pw@example.com/x", "javascript:alert(1)"):
        assert run_cli(capsys, "webhooks", "add", url).code != 0
    bad = run_cli(capsys, "webhooks", "add", "https://example.com/x", "--event", "nope")
    assert "unknown event" in bad.one_line_error()
    # An endpoint stored while allowed is still refused at connection time once disallowed.
    settings = load_settings().model_copy(update={"webhook_poll_seconds": 0.05})
    hook_up(engine, settings, receiver)
    subscribe(engine, settings, "olga@example.org")
    dispatch(engine, settings, lambda: _attempts(engine) >= 1)
    assert not receiver.hooks
    with session_scope(engine) as s:
        row = s.scalars(select(WebhookDelivery)).one()
        assert "resolves to 127.0.0.1" in row.last_error and row.status == HookStatus.PENDING


def _attempts(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return int(s.scalar(select(func.sum(WebhookDelivery.attempts))) or 0)


def test_the_cli_names_every_event_type() -> None:
    from digest.cli.webhooks import EVENT_NAMES

    assert EVENT_NAMES == EVENT_TYPES
