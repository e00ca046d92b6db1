"""The subscribers' pages over real HTTP: sign-up, confirm, and one-click unsubscribe."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path

import dkim as dkimpy
import httpx
import pytest
from sqlalchemy import update

from digest.clock import utcnow
from digest.delivery import campaign, dkimkeys
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial import editions, newsletters
from digest.editorial.picks import add_pick, validate_pick
from digest.errors import StateError
from digest.settings import Settings
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import SubscriberStatus, Subscription, Suppression
from subscribers.tokens import make_token
from tests.samples import sample_pick
from tests.webtools import LiveServer, csrf_of, parse, text_part, unsubscribe_url, wait_for

pytestmark = pytest.mark.db


def add_picks(srv: LiveServer, first: int, n: int, slug: str | None = None) -> None:
    """Picks for the newsletter's next edition (the default newsletter's unless `slug`)."""
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, slug)
        edition = editions.open_edition(s, srv.settings, nl)
        for i in range(first, first + n):
            pick = {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")}
            add_pick(s, edition.id, validate_pick(pick, srv.settings.sections))


def send_issue(srv: LiveServer, settings: Settings, slug: str | None = None) -> None:
    """Send the newsletter's next edition, as `digest send` would."""
    issue = campaign.prepare_send(srv.engine, settings, slug)
    with session_scope(srv.engine) as s:
        own = newsletters.settings_for(settings, newsletters.resolve(s, settings, slug))

    async def go() -> None:
        async with make_transport(own) as transport:
            report = await Sender(srv.engine, own, issue, transport).run()
            assert report.finished

    asyncio.run(go())


def subscribe(srv: LiveServer, email: str, status: str = "confirmed", slug: str | None = None):  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, slug)
        return subscriptions.add(s, nl.id, email, "", status=status, source="test")


def status_of(srv: LiveServer, email: str, slug: str | None = None) -> str | None:
    """The address's status for the newsletter (its suppression first)."""
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, slug)
        member = subscriptions.find(s, nl.id, email)
        return member.status if member else None


def sign_up(client: httpx.Client, email: str, *, consent: bool = True, **headers: str):
    page = client.get("/subscribe")
    data = {"csrf": csrf_of(page.text), "name": "A Reader", "email": email}
    if consent:
        data["consent"] = "yes"
    return client.post("/subscribe", data=data, headers=headers)


def outbox(workdir: Path) -> list[bytes]:
    folder = workdir / "outbox" / "new"
    return [f.read_bytes() for f in sorted(folder.iterdir())] if folder.exists() else []


def confirm_link(data: bytes) -> str:
    return re.search(r"(http://\S+/confirm/\S+)", text_part(parse(data))).group(1)


def test_one_click_unsubscribe_from_a_digest_takes_effect_for_the_next_send(
    smtp_server, serve_web
) -> None:
    srv = serve_web()
    settings = srv.settings
    readers = [f"reader{i}@example.com" for i in range(4)]
    for r in readers:
        subscribe(srv, r)
    add_picks(srv, 0, 3)
    send_issue(srv, settings)
    by_rcpt = {m.rcpt_tos[0]: parse(m.data) for m in smtp_server.messages}
    assert sorted(by_rcpt) == readers

    # Bare POSTs as a mail provider sends them: no cookie, no CSRF token, no login.
    url = unsubscribe_url(by_rcpt[readers[0]])
    assert url.startswith(srv.url + "/unsubscribe/")
    one_click = {"List-Unsubscribe": "One-Click"}
    r = httpx.post(url, data=one_click, timeout=30)
    assert r.status_code == 200 and not r.history and "You are unsubscribed" in r.text
    assert status_of(srv, readers[0]) == SubscriberStatus.UNSUBSCRIBED
    again = httpx.post(url, data=one_click, timeout=30)  # idempotent
    assert again.status_code == 200 and "You are unsubscribed" in again.text
    multipart = httpx.post(
        unsubscribe_url(by_rcpt[readers[1]]),
        files={"List-Unsubscribe": (None, "One-Click")},
        timeout=30,
    )
    assert multipart.request.headers["content-type"].startswith("multipart/form-data")
    assert multipart.status_code == 200
    assert status_of(srv, readers[1]) == SubscriberStatus.UNSUBSCRIBED
    assert status_of(srv, readers[2]) == SubscriberStatus.CONFIRMED

    smtp_server.handler.messages.clear()
    add_picks(srv, 3, 2)
    send_issue(srv, settings)  # the next edition
    assert sorted(smtp_server.handler.recipients()) == readers[2:]


def test_unsubscribe_page_asks_first_and_bad_tokens_change_nothing(serve_web) -> None:
    srv = serve_web()
    sid = subscribe(srv, "kept@example.com").subscriber.id
    secret, list_id = srv.settings.secret(), srv.settings.effective_list_id
    token = make_token(secret, "unsubscribe", sid, list_id)
    with srv.client() as c:
        page = c.get(f"/unsubscribe/{token}")
        assert page.status_code == 200
        assert 'method="post"' in page.text and "k•••@example.com" in page.text
        assert (
            status_of(srv, "kept@example.com") == SubscriberStatus.CONFIRMED
        )  # GET changes nothing
        garbled = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        forged_other_purpose = make_token(secret, "confirm", sid, list_id)
        forged_other_list = make_token(secret, "unsubscribe", sid, "other.list")
        for bad in (garbled, forged_other_purpose, forged_other_list, "x" * 200, "%00", "1"):
            for method in ("GET", "POST"):
                r = c.request(method, f"/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"})
                assert r.status_code == 400, (bad, method)
                assert "This link does not work" in r.text
    assert status_of(srv, "kept@example.com") == SubscriberStatus.CONFIRMED


def test_sign_up_answers_the_same_whether_or_not_the_address_is_known(workdir, serve_web) -> None:
    srv = serve_web()
    subscribe(srv, "pending@example.com", "pending")
    subscribe(srv, "member@example.com")
    subscribe(srv, "left@example.com")
    sid = subscribe(srv, "angry@example.com").subscriber.id
    with session_scope(srv.engine) as s:
        subscriptions.unsubscribe(s, newsletters.ensure_default(s).id, "left@example.com")
        store.suppress(s, sid, Suppression.COMPLAINED, "abuse report")
    addresses = [
        "new@example.com",
        "pending@example.com",
        "member@example.com",
        "left@example.com",
        "angry@example.com",
    ]
    bodies = set()
    with srv.client() as c:
        for address in addresses:
            r = sign_up(c, address)
            assert r.status_code == 200
            bodies.add(r.text.replace(address, "ADDRESS"))
    assert len(bodies) == 1
    # Mail goes out after the answer; only the new, pending and unsubscribed addresses get it.
    wait_for(lambda: len(outbox(workdir)) >= 3, what="three confirmation emails")
    time.sleep(0.3)
    got = sorted(parse(m)["To"].addresses[0].addr_spec for m in outbox(workdir))
    assert got == ["left@example.com", "new@example.com", "pending@example.com"]
    assert status_of(srv, "member@example.com") == SubscriberStatus.CONFIRMED
    assert status_of(srv, "angry@example.com") == SubscriberStatus.COMPLAINED
    assert status_of(srv, "new@example.com") == SubscriberStatus.PENDING
    with session_scope(srv.engine) as s:  # the form never renames a known reader
        assert store.get_by_email(s, "member@example.com").name == ""


def test_sign_up_checks_consent_address_and_form_token(workdir, serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        r = sign_up(c, "reader@example.com", consent=False)
        assert r.status_code == 400 and "privacy policy" in r.text
        r = sign_up(c, "not-an-address")
        assert r.status_code == 400 and "Email address" in r.text
        assert 'aria-invalid="true"' in r.text
        # A sign-up box on another site posts without our token: one more click here.
        r = c.post(
            "/subscribe",
            data={"name": "X", "email": "crossed@example.com", "consent": "yes"},
        )
        assert r.status_code == 403
        assert 'value="crossed@example.com"' in r.text and 'name="csrf"' in r.text
    with session_scope(srv.engine) as s:
        nl = newsletters.ensure_default(s)
        assert subscriptions.count(s, nl.id)[SubscriberStatus.PENDING] == 0
    assert outbox(workdir) == []


def test_sign_ups_are_limited_per_client_and_per_address(workdir, serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        client_a = {"x-forwarded-for": "203.0.113.5"}
        for i in range(10):
            assert sign_up(c, f"a{i}@example.com", **client_a).status_code == 200
        limited = sign_up(c, "a10@example.com", **client_a)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert "Too many sign-ups" in limited.text
        # Another client is not affected; one address gets at most three emails a day.
        for i in range(5):
            r = sign_up(c, "same@example.com", **{"x-forwarded-for": f"198.51.100.{i}"})
            assert r.status_code == 200
    with session_scope(srv.engine) as s:
        assert store.get_by_email(s, "a10@example.com") is None
    wait_for(lambda: len(outbox(workdir)) >= 13, what="13 confirmation emails")
    time.sleep(0.3)
    to_same = [m for m in outbox(workdir) if b"same@example.com" in m]
    assert len(to_same) == 3


def test_confirm_links(workdir, serve_web) -> None:
    srv = serve_web()
    secret, list_id = srv.settings.secret(), srv.settings.effective_list_id
    with srv.client() as c:
        assert sign_up(c, "ivan@example.com").status_code == 200
        data = wait_for(lambda: outbox(workdir), what="the confirmation email")[0]
        link = confirm_link(data)
        path = link.removeprefix(srv.url)
        assert c.get(path).status_code == 200
        assert status_of(srv, "ivan@example.com") == SubscriberStatus.PENDING
        done = c.post(path)  # no CSRF token needed: the link itself is the proof
        assert done.status_code == 200 and "You are subscribed" in done.text
        assert status_of(srv, "ivan@example.com") == SubscriberStatus.CONFIRMED
        assert "already subscribed" in c.get(path).text
        assert c.post(path).status_code == 200

        with session_scope(srv.engine) as s:
            sid = store.get_by_email(s, "ivan@example.com").id
        expired = make_token(
            secret, "confirm", sid, list_id, issued_at=int(time.time()) - 8 * 86400
        )
        for bad in (expired, path.rsplit("/", 1)[1][:-3] + "abc", "nonsense"):
            assert c.post(f"/confirm/{bad}").status_code == 400

        # After unsubscribing, the old link no longer brings the reader back ...
        with session_scope(srv.engine) as s:
            nl = newsletters.ensure_default(s).id
            subscriptions.unsubscribe(s, nl, "ivan@example.com")
            s.execute(
                update(Subscription)
                .where(Subscription.subscriber_id == sid, Subscription.newsletter_id == nl)
                .values(status_changed_at=utcnow() - timedelta(days=1))
            )
        stale = make_token(secret, "confirm", sid, list_id, issued_at=int(time.time()) - 2 * 86400)
        assert c.post(f"/confirm/{stale}").status_code == 400
        assert status_of(srv, "ivan@example.com") == SubscriberStatus.UNSUBSCRIBED
        # ... but signing up again sends a fresh link that does.
        assert sign_up(c, "ivan@example.com").status_code == 200
        fresh = wait_for(lambda: outbox(workdir)[1:], what="the second confirmation")[0]
        assert c.post(confirm_link(fresh).removeprefix(srv.url)).status_code == 200
        assert status_of(srv, "ivan@example.com") == SubscriberStatus.CONFIRMED


def test_the_confirmation_email_unsubscribes_in_one_click(workdir, serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        assert sign_up(c, "maybe@example.com").status_code == 200
    data = wait_for(lambda: outbox(workdir), what="the confirmation email")[0]
    msg = parse(data)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "mailto:" in str(msg["List-Unsubscribe"])
    r = httpx.post(unsubscribe_url(msg), data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert r.status_code == 200
    assert status_of(srv, "maybe@example.com") == SubscriberStatus.UNSUBSCRIBED
    # The confirmation link sent before that no longer subscribes anyone.
    assert httpx.post(confirm_link(data), timeout=30).status_code == 400
    assert status_of(srv, "maybe@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_the_confirmation_email_is_dkim_signed_when_a_key_is_set(workdir, serve_web) -> None:
    key = dkimkeys.generate_key("ed25519")
    dkimkeys.write_private_key(workdir / "dkim.key", key)
    srv = serve_web(
        DIGEST_DKIM_DOMAIN="news.example.com",
        DIGEST_DKIM_SELECTOR="web",
        DIGEST_DKIM_KEY_FILE=str(workdir / "dkim.key"),
    )
    with srv.client() as c:
        assert sign_up(c, "signed@example.com").status_code == 200
    data = wait_for(lambda: outbox(workdir), what="the confirmation email")[0]
    signature = str(parse(data)["DKIM-Signature"])
    assert "list-unsubscribe" in signature.lower() and "list-unsubscribe-post" in signature.lower()
    record = dkimkeys.txt_value(key).encode()
    assert dkimpy.verify(data, dnsfunc=lambda name, timeout=5: record)


def test_two_newsletters_one_reader_leaves_one_and_keeps_the_other(smtp_server, serve_web) -> None:
    srv = serve_web()
    settings = srv.settings
    with session_scope(srv.engine) as s:
        newsletters.ensure_default(s)
        newsletters.add(
            s, "culture", "The Culture Letter", from_addr="Culture <culture@news.example.com>"
        )
    both, only_weekly = "both@example.com", "weekly@example.com"
    subscribe(srv, both)
    subscribe(srv, only_weekly)
    subscribe(srv, both, slug="culture")
    add_picks(srv, 0, 2)
    add_picks(srv, 2, 2, slug="culture")
    send_issue(srv, settings)
    send_issue(srv, settings, "culture")
    got = [(m.rcpt_tos[0], parse(m.data)) for m in smtp_server.messages]
    culture = next(msg for rcpt, msg in got if msg["From"].addresses[0].username == "culture")
    assert culture["List-Id"] != got[0][1]["List-Id"]
    assert "culture." in str(culture["List-Id"])
    # One click in the culture letter: only that one stops.
    r = httpx.post(unsubscribe_url(culture), data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert r.status_code == 200 and "The Culture Letter" in r.text
    assert status_of(srv, both, "culture") == SubscriberStatus.UNSUBSCRIBED
    assert status_of(srv, both) == SubscriberStatus.CONFIRMED
    smtp_server.handler.messages.clear()
    add_picks(srv, 4, 1)
    add_picks(srv, 5, 1, slug="culture")
    send_issue(srv, settings)
    with pytest.raises(StateError, match="nobody to send"):  # the culture letter lost its reader
        send_issue(srv, settings, "culture")
    assert sorted(smtp_server.handler.recipients()) == [both, only_weekly]


def test_the_preferences_page_chooses_newsletters_or_leaves_all(smtp_server, serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        newsletters.ensure_default(s)
        newsletters.add(s, "culture", "The Culture Letter")
    subscribe(srv, "reader@example.com")
    add_picks(srv, 0, 2)
    send_issue(srv, srv.settings)
    (message,) = [parse(m.data) for m in smtp_server.messages]
    link = re.search(r"(http://\S+/preferences/\S+)", text_part(message)).group(1)
    path = link.removeprefix(srv.url)
    with srv.client() as c:
        page = c.get(path)  # no sign-in: the link is the proof
        assert page.status_code == 200 and "r•••@example.com" in page.text
        assert 'value="default" checked' in page.text and 'value="culture" >' in page.text
        assert status_of(srv, "reader@example.com", "culture") is None  # a GET changes nothing
        saved = c.post(path, data={"newsletter": ["culture"], "action": "save"})
        assert saved.status_code == 200 and "Saved" in saved.text
        assert status_of(srv, "reader@example.com", "culture") == SubscriberStatus.CONFIRMED
        assert status_of(srv, "reader@example.com") == SubscriberStatus.UNSUBSCRIBED
        left = c.post(path, data={"action": "leave"})
        assert "You have left every newsletter" in left.text
        assert status_of(srv, "reader@example.com", "culture") == SubscriberStatus.UNSUBSCRIBED
        forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
        assert c.post(forged, data={"newsletter": ["default"]}).status_code == 400
    assert status_of(srv, "reader@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_sign_up_offers_the_newsletters(workdir, serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        newsletters.ensure_default(s)
        newsletters.add(s, "culture", "The Culture Letter")
    with srv.client() as c:
        page = c.get("/subscribe?newsletter=culture")
        assert 'value="culture" checked' in page.text and 'value="default">' in page.text
        data = {
            "csrf": csrf_of(page.text),
            "email": "arts@example.com",
            "consent": "yes",
            "newsletter": ["culture", "default"],
        }
        assert c.post("/subscribe", data=data).status_code == 200
        none = {**data, "newsletter": []}
        r = c.post("/subscribe", data=none)
        assert r.status_code == 400 and "at least one newsletter" in r.text
    mails = wait_for(lambda: outbox(workdir)[1:], what="two confirmation emails")
    subjects = sorted(str(parse(m)["Subject"]) for m in outbox(workdir))
    assert subjects == [
        "Confirm your subscription to The Culture Letter",
        "Confirm your subscription to The Weekly Digest",
    ]
    culture = next(m for m in mails + outbox(workdir) if b"Culture Letter" in m)
    with srv.client() as c:
        assert c.post(confirm_link(culture).removeprefix(srv.url)).status_code == 200
    assert status_of(srv, "arts@example.com", "culture") == SubscriberStatus.CONFIRMED
    assert status_of(srv, "arts@example.com") == SubscriberStatus.PENDING
