"""The public archive and the small pages every email links to."""

from __future__ import annotations

import socket

from digest.editorial import editions, newsletters
from digest.editorial.models import EditionStatus
from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.sending import pick_into
from tests.webtools import LiveServer


def publish(srv: LiveServer, key: str, *, status: str = EditionStatus.SENT) -> None:
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, None)
        edition = editions.open_edition(s, srv.settings, nl)
        edition.key = key  # pin the week under test; the slot would be this week's
        s.flush()
        for i in range(3):
            pick = {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")}
            pick_into(s, srv.settings, pick)
        editions.edit(s, edition, subject=f"Issue {key}: the week in review")
        editions.freeze(s, srv.settings, nl, edition)
        if status != "frozen":
            editions.start_sending(s, srv.settings, nl, edition)
            edition.status = status


def raw_get(srv: LiveServer, target: str) -> int:
    """Send a request line exactly as written (clients would normalise '..')."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_the_archive_shows_sent_issues_without_personal_parts(serve_web) -> None:
    srv = serve_web()
    publish(srv, "2026-W40")
    publish(srv, "2026-W41", status="sending")  # links to it are already in inboxes
    publish(srv, "2026-W42", status="frozen")  # not sent yet: not public
    with srv.client() as c:
        index = c.get("/issues/")
        assert index.status_code == 200
        text = index.text
        assert 'href="/issues/2026-W41"' in text and 'href="/issues/2026-W40"' in text
        assert text.index("2026-W41") < text.index("2026-W40")
        assert "2026-W42" not in text and "Issue 2026-W40: the week in review" in text

        page = c.get("/issues/2026-W40")
        assert page.status_code == 200
        assert "__DIGEST_" not in page.text and "/unsubscribe/" not in page.text
        assert "Hello," in page.text and f'{srv.url}/subscribe"' in page.text
        assert sample_pick(0)["title"] in page.text
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert page.headers["cache-control"].startswith("public")
        assert c.get("/issues/2026-W41").status_code == 200
        for missing in ("2026-W42", "2026-W43", "2026-W99", "2026-w40", "2026-W40x", "%2e%2e"):
            r = c.get(f"/issues/{missing}")
            assert r.status_code == 404, missing
            assert "<h1>" in r.text and r.headers["x-content-type-options"] == "nosniff"
    for trick in (
        "/issues/..%2F..%2Fdesk%2F",
        "/issues/2026-W40%00",
        "/issues/2026-W40/../../etc/passwd",
        "/issues/%2e%2e/%2e%2e/etc/passwd",
    ):
        assert raw_get(srv, trick) == 404, trick


def test_privacy_support_health_and_home(serve_web) -> None:
    srv = serve_web(DIGEST_REPLY_TO="Editors <editors@news.example.com>")
    with srv.client() as c:
        privacy = c.get("/privacy").text
        assert srv.settings.postal_address in privacy
        assert "mailto:editors@news.example.com" in privacy
        support = c.get("/support", params={"frequency": "monthly"}).text
        assert 'class="choice chosen" href="?frequency=monthly" aria-current="true"' in support
        assert "mailto:editors@news.example.com?subject=Support%3A%20monthly" in support
        odd = c.get("/support", params={"frequency": "<script>"}).text
        assert "<script>" not in odd and 'class="choice chosen"' not in odd
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
        home = c.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/subscribe"
        subscribe = c.get("/subscribe").text
        assert f'href="{srv.settings.effective_privacy_url}"' in subscribe
        assert '<label for="f-email">' in subscribe and '<label for="f-consent">' in subscribe
