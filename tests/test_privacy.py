"""Data requests about one address: everything stored about it, and erasing it for good.

An erased person is gone from every table (the ledger keeps anonymous rows, so an
edition's counts stay), their webhook data is redacted, their old links stop working,
their id is never handed out again, and no import, sign-up, CLI or API call adds them back.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from sqlalchemy import func, select

from digest.api import keys
from digest.clock import utcnow
from digest.delivery import ledger
from digest.delivery.models import Delivery
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial import newsletters
from digest.editorial.models import Edition
from digest.stats import counting
from digest.stats.models import ReaderClick, StoryClick
from digest.store.engine import session_scope
from digest.webhooks import endpoints
from digest.webhooks.models import WebhookEvent
from subscribers import store, subscriptions
from subscribers.erasures import Erasure
from subscribers.model import Subscriber, Subscription
from tests.clirun import run_cli
from tests.sending import started_send
from tests.test_web_public import sign_up
from tests.webtools import unsubscribe_url, wait_for

OLGA = "reader0@example.com"


def sent_edition(engine, settings, n: int = 3):  # type: ignore[no-untyped-def]
    """An edition sent to `n` readers through the outbox folder, with a webhook listening."""
    with session_scope(engine) as s:
        endpoints.add(s, "https://hooks.example.com/digest", None, allow_private=True)
    edition, emails = started_send(engine, settings, n)

    async def send() -> None:
        async with make_transport(settings) as transport:
            await Sender(engine, settings, edition, transport).run()

    asyncio.run(send())
    return edition, emails


def test_export_person_gives_everything_stored(engine, settings, capsys, workdir) -> None:
    edition, _emails = sent_edition(engine, settings)
    with session_scope(engine) as s:
        culture = newsletters.add(s, "culture", "Culture Weekly")
        subscriptions.add(s, culture.id, OLGA, status="pending", source="web sign-up")
        nl = newsletters.get(s, "default")
        subscriptions.unsubscribe(s, nl.id, OLGA, "unsubscribe link")
    story = edition.content["picks"][0]
    with session_scope(engine) as s:  # as /r/ records it under DIGEST_CLICK_STATS=per-subscriber
        counting.add(s, edition.id, story["id"], store.require(s, OLGA).id, utcnow())
    out = run_cli(capsys, "subscribers", "export-person", OLGA.upper())
    assert out.code == 0, out.err
    data = json.loads(out.out)
    (click,) = data["clicks"]
    assert click["edition"] == edition.key and click["story"]["url"] == story["url"]
    assert click["clicks"] == 1 and click["first_at"]
    assert data["email"] == OLGA and data["found"] and not data["erased"]
    assert data["subscriber"]["name"] == "Reader reader0@example.com"
    subs = {s["newsletter"]: s for s in data["subscriptions"]}
    assert subs["default"]["status"] == "unsubscribed" and subs["default"]["consent_at"]
    assert subs["default"]["consent_source"] == "test" and subs["culture"]["status"] == "pending"
    assert [(d["edition"], d["status"]) for d in data["deliveries"]] == [(edition.key, "sent")]
    assert data["bounces"]["bounce_count"] == 0
    assert [e["type"] for e in data["webhook_events"]] == ["subscriber.unsubscribed"]
    path = workdir / "olga.json"
    written = run_cli(capsys, "subscribers", "export-person", OLGA, "--out", str(path))
    assert written.code == 0 and os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["email"] == OLGA
    nobody = json.loads(run_cli(capsys, "subscribers", "export-person", "x@example.net").out)
    assert nobody["found"] is False and nobody["subscriptions"] is None
    assert (
        "email"
        in run_cli(capsys, "subscribers", "export-person", "not-an-address").one_line_error()
    )


def test_erase_removes_the_person_everywhere_and_keeps_them_out(
    engine, settings, capsys, workdir
) -> None:
    edition, emails = sent_edition(engine, settings)
    with session_scope(engine) as s:
        olga = store.require(s, OLGA)
        olga_id = olga.id
        subscriptions.unsubscribe(s, newsletters.get(s, "default").id, OLGA, "cli")
        counts_before = ledger.counts(s, edition.id)
    outbox = workdir / "outbox" / "new"
    assert any(OLGA in p.read_text() for p in outbox.iterdir())

    with session_scope(engine) as s:
        counting.add(s, edition.id, edition.content["picks"][0]["id"], olga_id, utcnow())
    out = run_cli(capsys, "subscribers", "erase", OLGA)
    assert out.code == 0, out.err
    assert "erased" in out.out and "keyed hash" in out.out and "reader clicks=1" in out.out
    assert "webhook notices=1" in out.out

    with session_scope(engine) as s:
        assert store.get_by_email(s, OLGA) is None
        assert s.get(Subscriber, olga_id) is None
        assert not s.scalars(
            select(Subscription).where(Subscription.subscriber_id == olga_id)
        ).all()
        assert ledger.counts(s, edition.id) == counts_before  # anonymous counts stay
        assert not s.scalars(select(ReaderClick).where(ReaderClick.subscriber_id == olga_id)).all()
        assert s.scalar(select(func.sum(StoryClick.clicks))) == 1  # the story's count names nobody
        rows = s.scalars(select(Delivery).where(Delivery.edition_id == edition.id)).all()
        assert len(rows) == 3 and sum(r.subscriber_id is None for r in rows) == 1
        every = s.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert [e.type for e in every] == [
            "edition.sent",
            "subscriber.unsubscribed",
            "subscriber.erased",
        ]
        events, notice = every[1:2], every[2]
        assert [e.data for e in events] == [{"erased": True, "newsletter": "default"}]
        assert events[0].subscriber_id is None and notice.subscriber_id is None
        # The notice tells the endpoint whom to erase, so it holds the address while owed.
        assert notice.data["subscriber"] == {"id": olga_id, "email": OLGA}
        assert notice.data["newsletters"] == ["default"] and notice.data["erased_at"]
        hashes = s.scalars(select(Erasure.key_hash)).all()
        assert len(hashes) == 1 and OLGA not in hashes[0]
        dump = json.dumps([e.data for e in events]) + "".join(r.last_reply for r in rows)
        assert OLGA not in dump
    assert not any(OLGA in p.read_text() for p in outbox.iterdir())
    assert any(emails[1] in p.read_text() for p in outbox.iterdir())
    # Nobody is owed the notice once its endpoint is removed: the address leaves it too.
    assert run_cli(capsys, "webhooks", "remove", "https://hooks.example.com/digest").code == 0
    with session_scope(engine) as s:
        notice = s.scalars(
            select(WebhookEvent).where(WebhookEvent.type == "subscriber.erased")
        ).one()
        assert notice.data["subscriber"] == {"id": olga_id} and OLGA not in json.dumps(notice.data)

    csv = workdir / "list.csv"
    csv.write_text(f"email,name\n{OLGA.upper()},Olga\nnew@example.com,New\n")
    imported = run_cli(capsys, "subscribers", "import", str(csv), "--confirmed")
    assert imported.code == 0, imported.err
    assert (
        "1 added" in imported.out and "1 skipped: erased at their owner's request" in imported.out
    )
    assert (
        "erased at its owner's request"
        in run_cli(capsys, "subscribers", "add", OLGA).one_line_error()
    )
    again = run_cli(capsys, "subscribers", "erase", OLGA)
    assert again.code == 0 and "nothing stored" in again.out
    with session_scope(engine) as s:
        assert store.get_by_email(s, OLGA) is None
        newest = store.require(s, "new@example.com").id
        assert newest > max(olga_id, *(store.require(s, e).id for e in emails[1:]))
    exported = json.loads(run_cli(capsys, "subscribers", "export-person", OLGA).out)
    assert exported["found"] is False and exported["erased"] is True


def test_erased_addresses_cannot_come_back_through_the_web_or_the_api(serve_web) -> None:
    srv = serve_web()
    edition, _emails = started_send(srv.engine, srv.settings, 2)
    with session_scope(srv.engine) as s:
        key = keys.create(s, "crm", ["subscribers"])[1]
        limited = keys.create(s, "one", ["subscribers"], newsletters.get(s, "default").id)[1]
        olga = store.require(s, OLGA).id

    async def send() -> None:
        async with make_transport(srv.settings) as transport:
            await Sender(srv.engine, srv.settings, edition, transport).run()

    asyncio.run(send())
    from tests.webtools import parse

    message = next(
        parse(p.read_bytes())
        for p in (srv.settings.outbox_dir / "new").iterdir()
        if OLGA in p.read_text()
    )
    link = unsubscribe_url(message).replace(srv.settings.base_url, "")
    auth = {"Authorization": f"Bearer {key}"}
    with srv.client(headers=auth) as c:
        assert (
            c.get(f"/api/v1/subscribers/{OLGA}/export").json()["deliveries"][0]["status"] == "sent"
        )
        with srv.client(headers={"Authorization": f"Bearer {limited}"}) as one:
            assert one.delete(f"/api/v1/subscribers/{OLGA}").status_code == 403
        r = c.delete(f"/api/v1/subscribers/{OLGA}")
        assert r.status_code == 200 and r.json()["found"] is True
        assert r.json()["removed"]["subscriber"] == 1 and r.json()["removed"]["deliveries"] == 1
        assert c.get(f"/api/v1/subscribers/{OLGA}").status_code == 404
        r = c.post("/api/v1/subscribers", json={"email": OLGA})
        assert r.status_code == 409 and r.json()["field"] == "email"
        r = c.post(
            "/api/v1/subscribers",
            json={"email": OLGA, "confirmed": True, "consent_source": "CMS form"},
        )
        assert r.status_code == 409
        assert c.delete(f"/api/v1/subscribers/{OLGA}").json()["found"] is False
    with srv.client() as browser:
        assert browser.get(link).status_code == 400  # the old one-click link is dead
        assert browser.post(link).status_code == 400
        assert sign_up(browser, OLGA).status_code == 200  # same answer as for anyone
        assert sign_up(browser, "fresh@example.com").status_code == 200
    wait_for(lambda: _known(srv, "fresh@example.com"), what="the other sign-up")
    time.sleep(0.3)
    assert not _known(srv, OLGA)
    with session_scope(srv.engine) as s:
        assert s.get(Subscriber, olga) is None
        assert s.scalar(select(func.count()).select_from(Delivery)) == 2


def _known(srv, email: str) -> bool:  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        return store.get_by_email(s, email) is not None


def test_erasing_during_a_send_skips_what_was_owed(engine, settings, capsys) -> None:
    edition, emails = started_send(engine, settings, 2)
    assert run_cli(capsys, "subscribers", "erase", emails[0]).code == 0
    assert run_cli(capsys, "subscribers", "erase", emails[1]).code == 0
    with session_scope(engine) as s:
        counts = ledger.counts(s, edition.id)
        assert counts["skipped"] == 2 and counts["pending"] == 0
        assert s.get(Edition, edition.id).status == "sent"  # nothing was owed any more
