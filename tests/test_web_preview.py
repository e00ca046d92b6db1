"""The preview is what subscribers get; test sends and delivery progress on the desk."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import func, select

from digest.delivery import campaign
from digest.delivery.models import Delivery
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial.models import EditionStatus
from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.sending import open_edition, pick_into, subscribe
from tests.smtpd import free_port
from tests.webtools import LiveServer, csrf_of, desk_client, html_part, parse, wait_for

TOKEN = re.compile(r"/(unsubscribe|preferences)/[A-Za-z0-9_-]+")


def seed(srv: LiveServer, n: int = 4, **overrides: object) -> None:
    with session_scope(srv.engine) as s:
        for i in range(n):
            pick = {
                k: v
                for k, v in sample_pick(i, featured=i == 0).items()
                if k not in ("id", "position")
            }
            pick_into(s, srv.settings, {**pick, **overrides})


def next_key(srv: LiveServer) -> str:
    """The default newsletter's next edition (what the desk shows)."""
    return open_edition(srv.engine, srv.settings).key


def deliveries(srv: LiveServer) -> int:
    with session_scope(srv.engine) as s:
        return s.scalar(select(func.count()).select_from(Delivery))


def test_the_preview_is_the_html_a_subscriber_receives(smtp_server, serve_web) -> None:
    srv = serve_web()
    seed(srv)
    email, name = campaign.SAMPLE_RECIPIENT
    subscribe(srv.engine, srv.settings, email, name)
    key = next_key(srv)
    with desk_client(srv) as c:
        page = c.get(f"/desk/issues/{key}")
        assert page.status_code == 200 and 'id="preview-375"' in page.text
        # opening the preview renders it, never sends
        built = open_edition(srv.engine, srv.settings)
        assert built.key == key and built.status == EditionStatus.DRAFT and built.is_built
        assert deliveries(srv) == 0
        preview = c.get(f"/desk/issues/{key}/email.html").text
        dark = c.get(f"/desk/issues/{key}/email-dark.html").text

    issue = campaign.prepare_send(srv.engine, srv.settings, None, key)

    async def go() -> None:
        async with make_transport(srv.settings) as transport:
            await Sender(srv.engine, srv.settings, issue, transport).run()

    asyncio.run(go())
    (received,) = smtp_server.messages
    delivered = html_part(parse(received.data))
    # Byte for byte the same document; only the reader's own link tokens differ.
    assert TOKEN.sub(r"/\1/T", preview) == TOKEN.sub(r"/\1/T", delivered)
    assert "Hello Sample," in preview and "__DIGEST_" not in preview
    assert "prefers-color-scheme: dark" not in dark and "@media all" in dark
    assert dark.replace("@media all", "@media (prefers-color-scheme: dark)") == preview


def test_issue_page_shows_text_part_preflight_and_headers(serve_web) -> None:
    srv = serve_web()
    seed(srv, 2, image_url="http://insecure.example.com/pic.jpg", image_alt="A picture")
    key = next_key(srv)
    with desk_client(srv) as c:
        page = c.get(f"/desk/issues/{key}").text
        assert "image URL is not https: http://insecure.example.com/pic.jpg" in page
        assert "of Gmail&#39;s 102 KB" in page or "of Gmail's 102 KB" in page
        assert 'class="textpart"' in page and "Hello Sample," in page
        assert "List-Unsubscribe-Post" in page and "List-Unsubscribe=One-Click" in page
        assert c.get("/desk/issues/2026-W99").status_code == 404
        assert c.get("/desk/issues/..%2Fdesk").status_code == 404
        assert c.get("/desk/issues/2020-W01/email.html").status_code == 404


def test_preview_without_picks_explains_instead_of_failing(serve_web) -> None:
    srv = serve_web()
    key = next_key(srv)
    with desk_client(srv) as c:
        page = c.get(f"/desk/issues/{key}")
        assert page.status_code == 200 and "nothing picked for edition" in page.text
        assert 'id="preview-375"' not in page.text
        assert c.get(f"/desk/issues/{key}/email.html").status_code == 404


def test_test_sends_report_bad_addresses_and_an_unreachable_server(serve_web) -> None:
    port = free_port()  # nobody listens here
    srv = serve_web(
        DIGEST_SMTP_HOST="127.0.0.1",
        DIGEST_SMTP_PORT=str(port),
        DIGEST_SMTP_SECURITY="none",
        DIGEST_SMTP_TIMEOUT="5",
    )
    seed(srv, 2)
    key = next_key(srv)
    with desk_client(srv) as c:
        token = csrf_of(c.get(f"/desk/issues/{key}").text)
        bad = c.post(f"/desk/issues/{key}/test", data={"csrf": token, "to": "not-an-address"})
        assert bad.status_code == 400 and "not-an-address" in bad.text
        many = ",".join(f"e{i}@example.com" for i in range(11))
        assert (
            c.post(f"/desk/issues/{key}/test", data={"csrf": token, "to": many}).status_code == 400
        )
        down = c.post(f"/desk/issues/{key}/test", data={"csrf": token, "to": "ed@example.com"})
        assert down.status_code == 502 and "mail server" in down.text
    assert deliveries(srv) == 0


def test_progress_of_a_running_send(smtp_server, serve_web) -> None:
    srv = serve_web()
    seed(srv, 2)
    for i in range(5):
        subscribe(srv.engine, srv.settings, f"r{i}@example.com")
    key = next_key(srv)
    issue = campaign.prepare_send(srv.engine, srv.settings, None, key)  # SENDING, ledger filled
    assert issue.status == EditionStatus.SENDING
    with desk_client(srv) as c:
        p = c.get(f"/desk/issues/{key}/progress.json").json()
        assert p["sending"] and not p["finished"]
        assert p["counts"]["pending"] == 5 and p["total"] == 5 and p["percent"] == 0
        page = c.get(f"/desk/issues/{key}/progress").text
        assert '<noscript><meta http-equiv="refresh"' in page
        assert 'data-progress="/desk/issues/' in page

        async def go() -> None:
            async with make_transport(srv.settings) as transport:
                await Sender(srv.engine, srv.settings, issue, transport).run()

        asyncio.run(go())
        p = wait_for(
            lambda: (
                c.get(f"/desk/issues/{key}/progress.json").json()["finished"]
                and c.get(f"/desk/issues/{key}/progress.json").json()
            )
        )
        assert p["counts"]["sent"] == 5 and p["percent"] == 100 and p["status"] == "sent"
        assert "http-equiv" not in c.get(f"/desk/issues/{key}/progress").text
        past = c.get("/desk/issues/" + key).text
        assert 'data-count="sent">5<' in past
