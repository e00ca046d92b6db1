"""The desk and the sign-up pages in a real headless Chromium, against a real server.

An editor signs in, adds a pick through the form, reorders it, sees it in the
preview at 375 px without horizontal scrolling, and sends a test that arrives at a
real aiosmtpd server. A reader signs up, gets the confirmation email, opens its link
and confirms with the button.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import func, select

from digest.delivery.models import Delivery
from digest.editorial import editions, newsletters
from digest.editorial.models import Pick
from digest.editorial.picks import live_picks
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.model import SubscriberStatus
from tests.samples import sample_pick
from tests.sending import pick_into
from tests.webtools import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EDITOR,
    EDITOR_EMAIL,
    PASSWORD,
    add_editor,
    html_part,
    parse,
    text_part,
    wait_for,
)

OLGA = "olga@example.org"
NEW_TITLE = "A new bridge over the Volga opens after twelve years"
NEW_URL = "https://www.themoscowtimes.com/2026/11/27/a-new-bridge-over-the-volga-a91234"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    p = context.new_page()
    yield p
    context.close()


def olga(srv):  # type: ignore[no-untyped-def]
    """Olga's subscription to the default newsletter, as the store has it now."""
    with session_scope(srv.engine) as s:
        member = subscriptions.find(s, newsletters.resolve(s, srv.settings, None).id, OLGA)
        assert member is not None
        s.expunge_all()
        return member


def new_id(srv) -> int:  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        return int(s.scalar(select(func.max(Pick.id))))


def _titles(page: Page) -> list[str]:
    return [t.strip() for t in page.locator(".pick-title").all_inner_texts()]


def test_editor_adds_reorders_previews_and_sends_a_test(smtp_server, serve_web, page) -> None:
    srv = serve_web()
    settings = srv.settings
    with session_scope(srv.engine) as s:
        seed = {
            k: v for k, v in sample_pick(0, section="News").items() if k not in ("id", "position")
        }
        pick_into(s, settings, seed)
    add_editor(srv.engine)

    # Without a session the desk sends the browser to the login page.
    page.goto(srv.url + "/desk/")
    expect(page).to_have_url(re.compile(r"/desk/login\?next="))
    page.get_by_label("Editor name").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(srv.url + "/desk/")

    page.get_by_label("Story URL").fill(NEW_URL)
    page.get_by_label("Headline").fill(NEW_TITLE)
    page.get_by_label("Lead", exact=True).fill(
        "The crossing at Kazan halves the trip between two regions."
    )
    page.get_by_label("Section").select_option("News")
    page.get_by_label("Byline").fill("AFP")
    page.get_by_role("button", name="Add pick").click()
    expect(page.get_by_role("status")).to_have_text("Pick added.")
    assert _titles(page) == [seed["title"], NEW_TITLE]

    page.get_by_role("button", name=f"Up “{NEW_TITLE}”").click()
    expect(page.get_by_role("status")).to_have_text("Pick moved.")
    assert _titles(page) == [NEW_TITLE, seed["title"]]
    with session_scope(srv.engine) as s:
        edition = editions.open_edition(s, settings, newsletters.resolve(s, settings, None))
        titles = [p.title for p in live_picks(s, edition.id, settings.sections)]
        assert titles == [NEW_TITLE, seed["title"]]
    expect(page.locator("#pick-" + str(new_id(srv)))).to_contain_text("Lead story")

    # Remove, then change one's mind: Undo puts the story back where it was.
    page.get_by_role("button", name=f"Remove “{seed['title']}”").click()
    expect(page.get_by_role("status")).to_contain_text("Removed “")
    assert _titles(page) == [NEW_TITLE]
    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("status")).to_have_text("Pick restored.")
    assert _titles(page) == [NEW_TITLE, seed["title"]]

    page.get_by_role("link", name="Preview, check and send a test").click()
    expect(page.get_by_role("heading", name="Preview")).to_be_visible()
    phone = page.locator("#preview-375").element_handle().content_frame()
    phone.wait_for_load_state("load")
    assert NEW_TITLE in phone.content()
    assert phone.evaluate("window.innerWidth") <= 375
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= 375
    desktop = page.locator("#preview-600").element_handle().content_frame()
    desktop.wait_for_load_state("load")
    assert NEW_TITLE in desktop.content()
    dark = page.locator("#preview-dark").element_handle().content_frame()
    dark.wait_for_load_state("load")
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(16, 16, 16)"
    # Each frame is sandboxed: an opaque origin that cannot reach the desk or its cookies.
    reach_desk = "() => { try { return parent.document.title } catch (e) { return e.name } }"
    for frame in (phone, desktop, dark):
        assert frame.evaluate("window.origin") == "null"
        assert frame.evaluate(reach_desk) == "SecurityError"
        assert (
            frame.evaluate("() => { try { return document.cookie } catch (e) { return e.name } }")
            == "SecurityError"
        )

    expect(page.get_by_label("Send to")).to_have_value(EDITOR_EMAIL)
    page.get_by_role("button", name="Send test").click()
    expect(page.locator(".results")).to_contain_text(f"{EDITOR_EMAIL}: sent")
    received = wait_for(lambda: smtp_server.messages, what="the test message")
    assert received[0].rcpt_tos == [EDITOR_EMAIL]
    msg = parse(received[0].data)
    assert str(msg["Subject"]).startswith("[TEST] ")
    assert NEW_TITLE in html_part(msg) and NEW_TITLE in text_part(msg)
    with session_scope(srv.engine) as s:  # a test send never starts the real one
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0


def test_reader_subscribes_and_confirms_with_the_button(smtp_server, serve_web, page) -> None:
    srv = serve_web()
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(srv.url + "/subscribe")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.get_by_label("Your name").fill("Olga Petrova")
    page.get_by_label("Email address").fill(OLGA)
    page.get_by_label("I agree to receive").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    received = wait_for(lambda: smtp_server.messages, what="the confirmation email")
    assert received[0].rcpt_tos == [OLGA]
    msg = parse(received[0].data)
    assert str(msg["Subject"]).startswith("Confirm your subscription")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.search(r"(http://\S+/confirm/\S+)", text_part(msg)).group(1)
    assert link.startswith(srv.url + "/confirm/")
    assert link in html_part(msg)

    # A link scanner that fetches the link subscribes nobody.
    assert httpx.get(link, timeout=30).status_code == 200
    assert olga(srv).status == SubscriberStatus.PENDING

    page.goto(link)
    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    member = olga(srv)
    assert member.status == SubscriberStatus.CONFIRMED
    assert member.subscription.consent_at is not None
    assert "confirmed by email link" in member.subscription.consent_source
