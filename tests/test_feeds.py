"""Atom feeds of the archive, read by feedparser from a real server: one per newsletter,
each published edition's web page, escaping, ids and times; <link rel="alternate">."""

from __future__ import annotations

import feedparser
import httpx
import pytest

from digest.editorial import editions, newsletters
from digest.store.engine import session_scope
from tests.test_web_public import add_picks, send_issue, subscribe

pytestmark = pytest.mark.db

TRICKY = 'Rates: 5 < 7 & 9 > 3, "quoted" — ünïcödé ]]>'


def publish(srv, slug: str | None = None, subject: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """Send the newsletter's next edition (to the outbox folder); its key."""
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, slug)
        edition = editions.open_edition(s, srv.settings, nl)
        if subject:
            editions.edit(s, edition, subject=subject)
        key = edition.key
    send_issue(srv, srv.settings, slug)
    return key


def test_feeds_list_published_editions_per_newsletter(serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        newsletters.ensure_default(s)
        newsletters.add(s, "culture", "The Culture Letter")
    subscribe(srv, "reader@example.com")
    subscribe(srv, "reader@example.com", slug="culture")
    add_picks(srv, 0, 2)
    first = publish(srv)
    add_picks(srv, 2, 2)
    second = publish(srv, subject=TRICKY)
    add_picks(srv, 4, 1, slug="culture")
    culture = publish(srv, "culture")

    with srv.client() as c:
        r = c.get("/issues/feed.xml")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
        feed = feedparser.parse(r.content)
        assert not feed.bozo, feed.get("bozo_exception")
        assert feed.feed.title == "The Weekly Digest"
        assert feed.feed.link == f"{srv.url}/issues/"
        assert any(
            x.rel == "self" and x.href == f"{srv.url}/issues/feed.xml" for x in feed.feed.links
        )
        entries = feed.entries
        assert [e.link for e in entries] == [
            f"{srv.url}/issues/{second}",
            f"{srv.url}/issues/{first}",
        ]
        assert entries[0].title == TRICKY  # escaped on the way, exact on arrival
        assert entries[0].id.startswith("tag:127.0.0.1,") and entries[0].id.endswith(
            f":default/{second}"
        )
        assert len({e.id for e in entries}) == 2
        assert entries[0].updated_parsed and entries[0].published_parsed
        assert "<li>" in entries[0].content[0].value  # the stories, linked
        # Every entry's page is there; a poller with the ETag gets 304.
        assert c.get(entries[1].link.removeprefix(srv.url)).status_code == 200
        again = c.get("/issues/feed.xml", headers={"if-none-match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content

        other = feedparser.parse(c.get("/newsletters/culture/issues/feed.xml").content)
        assert other.feed.title == "The Culture Letter" and not other.bozo
        assert [e.link for e in other.entries] == [
            f"{srv.url}/newsletters/culture/issues/{culture}"
        ]
        assert c.get("/newsletters/nope/issues/feed.xml").status_code == 404

        archive = c.get("/issues/").text
        assert (
            '<link rel="alternate" type="application/atom+xml" '
            'title="The Weekly Digest: past editions" href="/issues/feed.xml">'
        ) in archive
        assert (
            'href="/newsletters/culture/issues/feed.xml"'
            in c.get("/newsletters/culture/issues/").text
        )


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_a_feed_before_the_first_edition_is_valid_and_empty(serve_web) -> None:
    srv = serve_web()
    add_picks(srv, 0, 1)  # a draft is not published
    feed = feedparser.parse(httpx.get(srv.url + "/issues/feed.xml", timeout=30).content)
    assert not feed.bozo and feed.entries == [] and feed.feed.updated_parsed
