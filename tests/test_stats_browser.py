"""The desk's stats page and its "What readers read" panel in a real headless Chromium:
charts as inline SVG with a title and description, the same numbers as tables, CSV
export, no script or style the CSP would block, and no sideways scrolling on a phone.
Screenshots go to /tmp/digest-stats-*.png for a person to look at."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect

from digest.clock import utcnow
from digest.editorial.models import Edition, EditionStatus
from digest.stats import counting
from digest.store.engine import session_scope
from tests import browsers
from tests.test_web_public import add_picks, send_issue, subscribe
from tests.webtools import EDITOR, PASSWORD, add_editor

SHOTS = "/tmp/digest-stats-{}.png"

browser, page = browsers.browser, browsers.page  # the Chromium fixtures


def clicks(srv, edition: Edition, counts: list[int]) -> None:  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        for pick, n in zip(edition.content["picks"], counts):
            for _ in range(n):
                counting.add(s, edition.id, pick["id"], None, utcnow())


def sent(srv) -> list[Edition]:  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        rows = s.query(Edition).filter(Edition.status == EditionStatus.SENT)
        return sorted(rows, key=lambda e: e.id)


def test_stats_page_and_desk_panel(serve_web, page: Page) -> None:
    srv = serve_web()
    for i in range(8):
        subscribe(srv, f"reader{i}@example.com")
    for first, counts in ((0, [5, 1, 2, 0]), (4, [3, 6, 1, 2, 4]), (9, [9, 2, 4, 1, 3, 2])):
        add_picks(srv, first, len(counts))
        # In a thread: playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(send_issue, srv, srv.settings).result()
        clicks(srv, sent(srv)[-1], counts)
    add_picks(srv, 20, 3)  # the next edition's picks, beside what readers read
    add_editor(srv.engine)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    page.goto(srv.url + "/desk/stats")
    page.get_by_label("Editor name").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(srv.url + "/desk/stats")
    expect(page.get_by_role("heading", name="The Weekly Digest: what readers read")).to_be_visible()
    latest = sent(srv)[-1]

    stories = page.get_by_role("img", name=f"Clicks per story, {latest.key}", exact=True)
    expect(stories).to_be_visible()
    assert stories.locator("desc").text_content().startswith("21 clicks on 6 stories of edition")
    assert stories.locator("rect.bar").count() == 6
    widths = stories.locator("rect.bar").evaluate_all(
        "e => e.map(r => r.getBoundingClientRect().width)"
    )
    assert widths[0] == max(widths) and widths[3] < widths[1]  # 9 clicks longest, 1 shortest
    over_time = page.get_by_role("img", name="Click-through per edition")
    expect(over_time).to_be_visible()
    assert over_time.locator("rect.bar").count() == 3
    table = page.locator("#stories table")
    expect(table.locator("tbody tr")).to_have_count(6)
    expect(table.locator("tbody tr").first).to_contain_text("9")
    expect(page.locator("#editions tbody tr")).to_have_count(3)
    colour = page.evaluate(
        "getComputedStyle(document.querySelector('#clicks-per-story rect.bar')).fill"
    )
    assert colour == "rgb(180, 20, 30)"  # styled by site.css (no inline style)
    page.screenshot(path=SHOTS.format("page"), full_page=True)

    # Another edition from the menu; CSV of its stories.
    older = sent(srv)[0]
    page.get_by_label("Edition", exact=True).select_option(older.key)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("img", name=f"Clicks per story, {older.key}")).to_be_visible()
    csv_link = page.get_by_role("link", name="Download the stories as CSV")
    response = page.request.get(srv.url + csv_link.get_attribute("href"))
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    assert re.search(rf"{older.key},1,.*,5,,0\.6250", response.text())

    # The desk: most-read sections beside the next edition's picks.
    page.get_by_role("link", name="Desk").click()
    panel = page.get_by_role("complementary", name="What readers read")
    expect(panel).to_be_visible()
    expect(panel.locator("tbody tr").first).to_be_visible()
    box, picks = panel.bounding_box(), page.locator(".pick").first.bounding_box()
    assert box and picks and box["x"] > picks["x"] + picks["width"] - 1  # beside, not below
    page.screenshot(path=SHOTS.format("desk"), full_page=True)

    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(srv.url + "/desk/stats")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.screenshot(path=SHOTS.format("phone"), full_page=True)
    page.emulate_media(color_scheme="dark")  # the charts follow the page's colours
    bar = "getComputedStyle(document.querySelector('#clicks-per-story rect.bar')).fill"
    assert page.evaluate(bar) == "rgb(255, 143, 143)"
    page.screenshot(path=SHOTS.format("dark"), full_page=True)
    assert not problems, problems
