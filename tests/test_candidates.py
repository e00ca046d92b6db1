"""Candidates from the newsroom's site: feeds polled with conditional GETs from a real
local HTTP server, hostile items left out, duplicates folded, and the desk's panel with
one-click Pick and "already sent" marks."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from digest.candidates import poll, store
from digest.candidates.models import Candidate, CandidateFeed
from digest.delivery import campaign
from digest.editorial import newsletters, picks
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.clirun import run_cli
from tests.feedserver import FeedServer, item, rss
from tests.sending import add_subscribers
from tests.webtools import csrf_of, desk_client

HOSTILE = [
    item(90, title="&lt;script&gt;alert(1)&lt;/script&gt;Markup in a title"),
    item(91, url="javascript:alert(document.cookie)"),
    item(92, title=""),
]


def test_polls_use_conditional_gets_and_keep_only_valid_stories(
    workdir, capsys, monkeypatch
) -> None:
    with FeedServer(rss([item(1), item(2), item(1), *HOSTILE])) as feed:
        monkeypatch.setenv("DIGEST_CANDIDATE_FEEDS", feed.url)
        first = run_cli(capsys, "candidates", "poll")
        assert first.code == 0, first.err
        assert "6 items, 3 new candidates, 2 left out" in first.out
        second = run_cli(capsys, "candidates", "poll")
        assert "not modified" in second.out
        assert feed.requests[-1]["If-None-Match"].startswith('"')
        assert feed.requests[-1]["If-Modified-Since"] == "Wed, 02 Dec 2026 08:00:00 GMT"
        feed.body = rss([item(3), item(1), item(2)])
        third = run_cli(capsys, "candidates", "poll")
        assert "3 items, 1 new candidates" in third.out
        feed.status = 500
        broken = run_cli(capsys, "candidates", "poll")
        assert broken.code == 1 and "HTTP 500" in broken.out
    engine_url = load_settings().database_url
    from digest.store.engine import get_engine

    with session_scope(get_engine(engine_url)) as s:
        rows = s.scalars(select(Candidate).order_by(Candidate.id)).all()
        assert len(rows) == 4
        titles = [c.title for c in rows]
        assert "Markup in a title" in titles and not any("<" in t for t in titles)
        one = rows[0]
        assert one.summary == "The lead of story 1, as the site writes it."
        assert one.image_url == "https://static.themoscowtimes.com/image/1.jpg"
        assert one.image_alt == "Picture of story 1" and one.image_credit == "AFP"
        assert one.section == "Features" and "AFP" in one.byline
        state = s.scalars(select(CandidateFeed)).one()
        assert state.outcome.endswith("HTTP 500") and state.etag
    listed = run_cli(capsys, "candidates", "list")
    assert listed.code == 0 and "Story 3 from the site" in listed.out


def test_the_scheduler_job_and_feeds_for_one_newsletter(engine, settings) -> None:
    with session_scope(engine) as s:
        newsletters.resolve(s, settings)
        culture = newsletters.add(s, "culture", "Culture Weekly")
    with FeedServer(rss([item(1)])) as shared, FeedServer(rss([item(2)])) as own:
        s2 = settings.model_copy(update={"candidate_feeds": [shared.url, f"culture={own.url}"]})
        asyncio.run(poll.scheduled_poll(engine, s2))
    with session_scope(engine) as s:
        default = newsletters.get(s, "default")
        culture = newsletters.get(s, "culture")
        ed_default = campaign.target(s, settings, "default").edition
        ed_culture = campaign.target(s, settings, "culture").edition
        seen_default = [o.candidate.title for o in store.offers(s, default, ed_default)]
        seen_culture = sorted(o.candidate.title for o in store.offers(s, culture, ed_culture))
    assert seen_default == ["Story 1 from the site"]
    assert seen_culture == ["Story 1 from the site", "Story 2 from the site"]


@pytest.fixture
def polled(serve_web, monkeypatch):  # type: ignore[no-untyped-def]
    with FeedServer(rss([item(1), item(2), item(3)])) as feed:
        srv = serve_web(DIGEST_CANDIDATE_FEEDS=feed.url)
        asyncio.run(poll.poll(srv.engine, srv.settings))
        yield srv


def candidate_id(srv, n: int) -> int:  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        return s.scalars(
            select(Candidate.id).where(Candidate.title == f"Story {n} from the site")
        ).one()


def test_the_desk_offers_candidates_with_one_click_pick(polled) -> None:
    srv = polled
    # Story 2 went out last week: the panel says so.
    with session_scope(srv.engine) as s:
        t = campaign.target(s, srv.settings)
        store.pick(s, t.newsletter, t.edition, t.settings.sections, candidate_id(srv, 2))
    add_subscribers(srv.engine, 1, settings=srv.settings)
    sent = campaign.prepare_send(srv.engine, srv.settings)
    with desk_client(srv) as c:
        page = c.get("/desk/")
        assert page.status_code == 200 and 'id="candidates"' in page.text
        assert "Story 1 from the site" in page.text
        assert f"Already sent in edition {sent.key}" in page.text
        token = csrf_of(page.text)
        r = c.post(
            f"/desk/candidates/{candidate_id(srv, 1)}/pick",
            data={"csrf": token, "newsletter": "default"},
        )
        assert r.status_code == 303 and "ok=picked" in r.headers["location"]
        page = c.get(r.headers["location"])
        assert "Candidate picked" in page.text and "Picked for this edition" in page.text
        again = c.post(
            f"/desk/candidates/{candidate_id(srv, 1)}/pick",
            data={"csrf": token, "newsletter": "default"},
        )
        assert again.status_code == 409 and "already in this edition" in again.text
        forged = c.post(f"/desk/candidates/{candidate_id(srv, 3)}/pick", data={"csrf": "x"})
        assert forged.status_code == 403
        hidden = c.post(
            f"/desk/candidates/{candidate_id(srv, 3)}/dismiss",
            data={"csrf": token, "newsletter": "default"},
        )
        assert hidden.status_code == 303
        assert "Story 3 from the site" not in c.get("/desk/").text
    with session_scope(srv.engine) as s:
        t = campaign.target(s, srv.settings)
        (row,) = picks.live_picks(s, t.edition.id, t.settings.sections)
        assert row.title == "Story 1 from the site" and row.section == "Features"
        assert row.summary == "The lead of story 1, as the site writes it."
        assert row.image_url == "https://static.themoscowtimes.com/image/1.jpg"
        assert row.image_alt == "Picture of story 1" and "AFP" in row.byline
