"""The 20-story issue in real Chromium: phone widths, images off, dark mode.

One browser for the whole module. Every request the page makes is answered by the
test (a placeholder picture, or refused), so nothing leaves the machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from digest.editorial import slots
from digest.editorial.darkmode import contrast, luminance
from digest.editorial.render import render_issue
from digest.settings import Settings
from tests.samples import sample_content

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: A stand-in picture with the aspect ratio of the newsroom's article images.
PICTURE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="1360" height="765">'
    b'<rect width="1360" height="765" fill="#777"/></svg>'
)
HEADLINES = "[...document.querySelectorAll('h1, h2, h3')].map(e => e.getBoundingClientRect().top)"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")


@pytest.fixture(scope="module")
def html() -> str:
    s = Settings(secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa", base_url="https://news.example.com")
    rendered = render_issue(sample_content(20), s).html
    return rendered.replace(slots.GREETING, "Hello Anna,").replace(
        slots.UNSUBSCRIBE_URL, "https://news.example.com/unsubscribe/abc"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser: Any, html: str, width: int, *, images: bool, scheme: str = "light") -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": 800}, color_scheme=scheme, java_script_enabled=True
    )
    page = context.new_page()

    def answer(route: Any) -> None:
        if images and route.request.resource_type == "image":
            route.fulfill(body=PICTURE, content_type="image/svg+xml")
        else:
            route.abort()

    page.route("**/*", answer)
    page.set_content(html, wait_until="load")
    return page


def rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r / 255, g / 255, b / 255


@pytest.mark.parametrize("width", [320, 375])
def test_no_horizontal_scroll_on_phones(browser, html, width) -> None:
    for images in (True, False):
        page = open_page(browser, html, width, images=images)
        try:
            sizes = page.evaluate(
                "[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"
            )
            assert sizes == [width, width, width], (images, sizes)
            widest = page.evaluate(
                "Math.max(...[...document.querySelectorAll('body *')]"
                ".filter(e => e.getClientRects().length)"
                ".map(e => e.getBoundingClientRect().right))"
            )
            assert widest <= width + 0.5, (images, widest)
        finally:
            page.context.close()


def test_images_carry_their_size_and_the_layout_holds_without_them(browser, html) -> None:
    loaded = open_page(browser, html, 375, images=True)
    blocked = open_page(browser, html, 375, images=False)
    try:
        attrs = loaded.evaluate(
            "[...document.images].map(i => [i.getAttribute('width'), i.getAttribute('height'),"
            " i.alt, i.naturalWidth, i.getBoundingClientRect().height])"
        )
        assert attrs, "the sample issue has pictures"
        for width, height, alt, natural, shown in attrs:
            assert width and width.isdigit() and height and height.isdigit()
            assert alt.strip() and natural > 0 and shown > 0
        off = blocked.evaluate(
            "[...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().height])"
        )
        assert all(natural == 0 for natural, _ in off)  # really not loaded
        # Blocked pictures keep their box, so no headline moves when images are off.
        assert [h for _, h in off] == pytest.approx([a[4] for a in attrs], abs=1)
        assert blocked.evaluate(HEADLINES) == pytest.approx(loaded.evaluate(HEADLINES), abs=1)
    finally:
        loaded.context.close()
        blocked.context.close()


def test_dark_mode_is_declared_and_honoured(browser, html) -> None:
    probe = (
        "(() => { const css = e => getComputedStyle(document.querySelector(e));"
        " return {meta: document.querySelector('meta[name=color-scheme]').content,"
        " body: css('body').backgroundColor, paper: css('.paper').backgroundColor,"
        " headline: css('.paper h3 a').color, text: css('.paper p').color}; })()"
    )
    looks = {}
    for scheme in ("light", "dark"):
        page = open_page(browser, html, 375, images=False, scheme=scheme)
        try:
            looks[scheme] = page.evaluate(probe)
        finally:
            page.context.close()
    light, dark = looks["light"], looks["dark"]
    assert "dark" in light["meta"].split()
    assert dark["body"] != light["body"] and dark["paper"] != light["paper"]
    assert luminance(rgb(dark["paper"])) < 0.05 < luminance(rgb(light["paper"]))
    for scheme, look in looks.items():
        for fg in ("headline", "text"):
            ratio = contrast(rgb(look[fg]), rgb(look["paper"]))
            assert ratio >= 4.5, (scheme, fg, look)
