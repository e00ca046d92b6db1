"""The desk's candidates panel in a real headless Chromium: an editor sees stories from
the site, picks one with one click, and it appears in the edition with the feed's words."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect

from digest.candidates import poll
from tests.feedserver import FeedServer, item, rss
from tests.test_web_browser import browser, page  # noqa: F401 - fixtures
from tests.webtools import EDITOR, PASSWORD, add_editor

SHOT = "/tmp/digest-candidates-panel.png"


def test_an_editor_picks_a_story_from_the_site_with_one_click(serve_web, page: Page) -> None:  # noqa: F811
    with FeedServer(rss([item(1), item(2), item(3)])) as feed:
        srv = serve_web(DIGEST_CANDIDATE_FEEDS=feed.url)
        with ThreadPoolExecutor(1) as pool:  # playwright's loop runs in this thread
            pool.submit(asyncio.run, poll.poll(srv.engine, srv.settings)).result()
    add_editor(srv.engine)
    page.goto(srv.url + "/desk/")
    page.get_by_label("Editor name").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(srv.url + "/desk/")

    panel = page.locator("#candidates")
    expect(panel.get_by_role("heading", name=re.compile("From the site"))).to_be_visible()
    expect(panel.locator(".candidate")).to_have_count(3)
    panel.get_by_role("button", name="Pick “Story 2 from the site”").click()
    expect(page.get_by_role("status")).to_contain_text("Candidate picked")
    expect(page.locator("#picks .pick-title")).to_have_text(["Story 2 from the site"])
    expect(page.locator("#picks .pick-meta").first).to_contain_text("Features")
    candidate = page.locator(".candidate", has_text="Story 2 from the site")
    expect(candidate.locator(".mark")).to_have_text("Picked for this edition")
    expect(candidate.get_by_role("button", name=re.compile("^Pick"))).to_have_count(0)
    panel.scroll_into_view_if_needed()
    page.screenshot(path=SHOT, full_page=True)
    # Phone width: no horizontal scrolling.
    page.set_viewport_size({"width": 375, "height": 800})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
