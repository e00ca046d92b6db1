"""The welcome email: sent once after a reader confirms (over a real SMTP server), with
the latest edition's web page and the digest's List-Unsubscribe headers; not after a
re-confirm, not for a second click on the link; one per newsletter chosen on the
preferences page."""

from __future__ import annotations

import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text, update

from digest.clock import utcnow
from digest.editorial import newsletters
from digest.settings import load_settings
from digest.store.engine import dispose_all, get_engine, session_scope
from subscribers.model import SubscriberStatus, Subscription
from tests.smtpd import Received
from tests.test_web_public import add_picks, send_issue, sign_up, status_of, subscribe
from tests.webtools import csrf_of, html_part, parse, text_part, unsubscribe_url, wait_for

pytestmark = pytest.mark.db

READER = "olga@example.org"


def mail_to(messages: list[Received], subject_start: str) -> list[Received]:
    return [m for m in messages if str(parse(m.data)["Subject"]).startswith(subject_start)]


def confirm_url(msg: Received) -> str:
    return re.search(r"(http://\S+/confirm/\S+)", text_part(parse(msg.data))).group(1)


def drain(srv, smtp_server) -> None:  # type: ignore[no-untyped-def]
    """Wait until the sign-up queue did everything queued so far: it works in order, so
    once a sign-up made now has its confirmation, any welcome queued before was sent."""
    with srv.client() as c:
        form = {"email": "probe@example.com", "consent": "yes", "newsletter": "default"}
        form["csrf"] = csrf_of(c.get("/subscribe").text)
        assert c.post("/subscribe", data=form).status_code == 200
    wait_for(lambda: [m for m in smtp_server.messages if m.rcpt_tos == ["probe@example.com"]])


def test_welcome_once_after_confirming_with_the_latest_edition(smtp_server, serve_web) -> None:
    srv = serve_web()
    subscribe(srv, "early@example.com")
    add_picks(srv, 0, 2)
    send_issue(srv, srv.settings)
    with session_scope(srv.engine) as s:
        latest = newsletters.resolve(s, srv.settings).id
    smtp_server.handler.messages.clear()

    with srv.client() as c:
        assert sign_up(c, READER).status_code == 200
        (confirmation,) = wait_for(lambda: mail_to(smtp_server.messages, "Confirm"))
        started = time.monotonic()
        assert c.post(confirm_url(confirmation).removeprefix(srv.url)).status_code == 200
        assert time.monotonic() - started < 2  # the answer does not wait for SMTP
        (welcome,) = wait_for(lambda: mail_to(smtp_server.messages, "Welcome"), what="welcome")
        # A second click on the link confirms nothing new, and welcomes nobody again.
        assert c.post(confirm_url(confirmation).removeprefix(srv.url)).status_code == 200

    msg = parse(welcome.data)
    assert welcome.rcpt_tos == [READER]
    assert str(msg["Subject"]) == "Welcome to The Weekly Digest"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "mailto:" in str(msg["List-Unsubscribe"])
    assert str(msg["List-Id"]).endswith("<digest.127.0.0.1>")
    assert msg.get_content_type() == "multipart/alternative"
    html, plain = html_part(msg), text_part(msg)
    with session_scope(srv.engine) as s:
        from digest.web.archive import published

        key = published(s, latest, 1)[0].key
    latest_url = f"{srv.url}/issues/{key}"
    assert latest_url in html and latest_url in plain
    assert "Read the latest edition" in html and "Hello A," in plain  # "A Reader"
    assert f"{srv.url}/preferences/" in plain and "The next edition goes out on" in plain
    assert "__DIGEST" not in html + plain

    # The welcome's one-click unsubscribe works; signing up and confirming again brings
    # the reader back without a second welcome.
    r = httpx.post(unsubscribe_url(msg), data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert r.status_code == 200
    with session_scope(srv.engine) as s:  # a link must be newer than the unsubscribe
        s.execute(update(Subscription).values(status_changed_at=utcnow() - timedelta(minutes=5)))
    with srv.client() as c:
        assert sign_up(c, READER).status_code == 200
        again = wait_for(lambda: mail_to(smtp_server.messages, "Confirm")[1:], what="2nd")[0]
        assert c.post(confirm_url(again).removeprefix(srv.url)).status_code == 200
    assert status_of(srv, READER) == SubscriberStatus.CONFIRMED
    drain(srv, smtp_server)
    assert len(mail_to(smtp_server.messages, "Welcome")) == 1


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_a_newsletter_chosen_on_the_preferences_page_welcomes_once(smtp_server, serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        newsletters.ensure_default(s)
        newsletters.add(s, "culture", "The Culture Letter", language="ru")
    subscribe(srv, "reader@example.com")
    add_picks(srv, 0, 1)
    send_issue(srv, srv.settings)
    (edition,) = [parse(m.data) for m in smtp_server.messages]
    path = re.search(r"http://\S+(/preferences/\S+)", text_part(edition)).group(1)
    with srv.client() as c:
        both = {"newsletter": ["default", "culture"], "action": "save"}
        assert c.post(path, data=both).status_code == 200
        (welcome,) = wait_for(lambda: mail_to(smtp_server.messages, "Добро"), what="welcome")
        assert c.post(path, data={"newsletter": ["default"], "action": "save"}).status_code == 200
        assert c.post(path, data=both).status_code == 200  # back again: no second welcome
    msg = parse(welcome.data)
    assert str(msg["Subject"]) == "Добро пожаловать в «The Culture Letter»"
    assert msg["Content-Language"] == "ru"
    assert "culture." in str(msg["List-Id"])
    assert f"{srv.url}/newsletters/culture/issues/" in text_part(msg)  # no edition yet
    drain(srv, smtp_server)
    assert len(mail_to(smtp_server.messages, "Добро")) == 1
    assert not mail_to(smtp_server.messages, "Welcome")  # the default one was not new


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_readers_confirmed_before_the_upgrade_count_as_welcomed(workdir) -> None:
    release = Path(__file__).parent / "fixtures" / "releases" / "v0.1-demo.sqlite"
    db = workdir / "old.db"
    shutil.copy(release, db)
    settings = load_settings(database_url=f"sqlite:///{db}")
    try:
        engine = get_engine(settings.database_url)
        with session_scope(engine) as s:
            rows = s.execute(
                text(
                    "SELECT status, consent_at IS NOT NULL, welcomed_at IS NOT NULL FROM subscriptions"
                )
            ).all()
    finally:
        dispose_all()
    assert rows and all(welcomed == consented for _status, consented, welcomed in rows)
    assert any(welcomed for *_, welcomed in rows) and any(not w for *_, w in rows)
