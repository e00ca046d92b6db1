"""Rendering: real Jinja templates from templates/, real MJML compilation (mrml)."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.editorial import slots
from digest.editorial.plaintext import LinkRefs, tidy, underline, wrap
from digest.editorial.render import (
    byline_label,
    render_confirmation,
    render_issue,
    render_welcome,
    split_picks,
    web_version,
    with_query,
)
from digest.errors import InputError
from digest.resources import builtin_templates
from digest.settings import Settings, load_settings
from tests.samples import sample_content, sample_pick

EVIL = '<script>alert(1)</script> & "quotes"'


class _Tags(HTMLParser):
    """Collects start tags with their attributes, and the text of every <a>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.anchors: list[tuple[str | None, str]] = []
        self._href: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None:
            self.anchors.append((self._href, "".join(self._text).strip()))
            self._text = None


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def escaped(text: str) -> str:
    """How Jinja's autoescape writes `text`."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


@pytest.fixture(scope="module")
def cfg() -> Settings:
    return load_settings(
        base_url="https://news.example.com",
        list_name="The Moscow Digest",
        postal_address="The Moscow Digest, Postbus 15735, 1001 NG Amsterdam, Netherlands",
        privacy_url="https://news.example.com/legal/privacy?lang=en",
        support_url="https://news.example.com/contribute?utm_source=digest",
    )


@pytest.fixture(scope="module")
def issue(cfg: Settings):  # type: ignore[no-untyped-def]
    return render_issue(sample_content(20), cfg)


# -- HTML part -------------------------------------------------------------------


def test_html_has_every_story_escaped_and_linked(issue, cfg: Settings) -> None:
    content = sample_content(20)
    hrefs = {href for href, _ in parse(issue.html).anchors}
    for pick in content["picks"]:
        assert escaped(pick["title"]) in issue.html
        assert pick["url"] in hrefs
    assert issue.html.startswith("<!doctype html>")
    assert '<html lang="en"' in issue.html
    assert "<title>" + escaped(content["subject"]) + "</title>" in issue.html
    assert escaped(content["preheader"]) in issue.html
    assert "Friday, 27 November 2026" in issue.html and "Week 48" in issue.html
    assert "By AFP" in issue.html and "min read" in issue.html


def test_slots_appear_exactly_where_expected(issue) -> None:
    doc = parse(issue.html)
    assert issue.html.count(slots.UNSUBSCRIBE_URL) == 1
    assert (slots.UNSUBSCRIBE_URL, "Unsubscribe") in doc.anchors
    assert issue.html.count(slots.GREETING) == 1
    assert re.search(r"<p[^>]*>" + slots.GREETING + "</p>", issue.html)
    # The greeting comes before the first story, the unsubscribe link after the last.
    first_story = issue.html.index(escaped(sample_content(1)["picks"][0]["title"]))
    assert issue.html.index(slots.GREETING) < first_story
    assert issue.html.index(slots.UNSUBSCRIBE_URL) > issue.html.index("A message from")


def test_footer_links_and_address(issue, cfg: Settings) -> None:
    anchors = parse(issue.html).anchors
    assert ("https://news.example.com/issues/2026-W48", "View in browser") in anchors
    assert ("https://news.example.com/legal/privacy?lang=en", "Privacy policy") in anchors
    assert escaped(cfg.postal_address) in issue.html
    assert "You receive this because you subscribed to The Moscow Digest." in issue.html


def test_support_buttons_carry_the_frequency(issue) -> None:
    anchors = {text: href for href, text in parse(issue.html).anchors}
    base = "https://news.example.com/contribute?utm_source=digest&frequency="
    for label in ("Once", "Monthly", "Annual"):
        assert anchors[label] == base + label.lower()


def test_dark_mode_and_color_scheme(issue) -> None:
    head = issue.html[: issue.html.index("</head>")]
    assert '<meta name="color-scheme" content="light dark"' in head
    assert '<meta name="supported-color-schemes" content="light dark"' in head
    assert "@media (prefers-color-scheme: dark)" in head
    dark = head[head.index("prefers-color-scheme: dark") :]
    assert ".paper" in dark and "background" in dark and "color:" in dark


def test_every_section_has_an_explicit_background(issue) -> None:
    """Text never sits on a transparent background that dark mode could invert."""
    classes = re.findall(r'<div class="(paper|support|foot)" style="([^"]*)"', issue.html)
    assert len(classes) >= 6
    assert all("background-color:#" in style for _, style in classes)
    # Every mj-section rendered a wrapper div with one of our classes.
    assert issue.html.count('style="background:#') >= len(classes)


def test_images_have_alt_width_height(issue) -> None:
    images = [attrs for tag, attrs in parse(issue.html).tags if tag == "img"]
    assert images, "the featured story has a picture"
    for attrs in images:
        assert attrs.get("alt"), attrs
        assert attrs.get("width", "").isdigit() and attrs.get("height", "").isdigit(), attrs
    featured = images[0]
    assert featured["width"] == "600" and featured["height"] == "338"
    assert featured["alt"] == "Choe Son Hui and Sergei Lavrov shake hands in Moscow"
    assert "Alexander Shcherbak / TASS" in issue.html
    assert "mj-full-width-mobile" in issue.html  # fluid-on-mobile


def test_twenty_stories_stay_under_gmail_clipping(issue) -> None:
    size = len(issue.html.encode("utf-8"))
    assert size < 90_000, f"{size} bytes"
    assert "fonts.googleapis" not in issue.html  # no web-font import weighing it down


def test_sections_follow_settings_order_and_skip_empty(cfg: Settings) -> None:
    content = sample_content(4, featured_index=None)
    sections = ["Opinion", "Sport", "Analysis", "News", "Features"]
    for pick, section in zip(content["picks"], ["News", "Opinion", "Analysis", "Opinion"]):
        pick["section"] = section
    settings = cfg.model_copy(update={"sections": sections})
    html = render_issue(content, settings).html
    headings = re.findall(r'class="section-title[^"]*"[^>]*>([^<]+)</h2>', html)
    assert headings == ["Opinion", "Analysis"]  # News only held the featured story
    opinion = [p["title"] for p in content["picks"] if p["section"] == "Opinion"]
    positions = [html.index(escaped(t), html.index(">Opinion<")) for t in opinion]
    assert positions == sorted(positions)


def test_no_featured_pick_means_the_first_is_featured() -> None:
    picks = [sample_pick(i) for i in range(5)]
    featured, groups = split_picks(picks, ["News", "Features", "Analysis", "Opinion"])
    assert featured is picks[0]
    assert all(featured not in items for _, items in groups)
    picks[3]["featured"] = True
    featured, groups = split_picks(picks, ["News", "Features", "Analysis", "Opinion"])
    assert featured is picks[3]
    assert picks[0] in groups[0][1]


def test_first_pick_rendered_as_top_story(cfg: Settings) -> None:
    content = sample_content(6, featured_index=None)
    content["picks"][0]["title"] = "The Story Nobody Marked As Featured"
    html = render_issue(content, cfg).html
    top = html.index("Top story")
    assert html.index("The Story Nobody Marked As Featured") > top
    assert html.count("The Story Nobody Marked As Featured") == 1
    assert html.index("The Story Nobody Marked As Featured") < html.index('class="section-title')


def test_hostile_text_is_escaped(cfg: Settings) -> None:
    content = sample_content(3)
    content["picks"][0]["title"] = EVIL
    content["picks"][1]["summary"] = EVIL
    content["picks"][2]["image_alt"] = EVIL
    content["picks"][2]["featured"] = True
    content["picks"][0]["featured"] = False
    content["picks"][2]["image_url"] = 'https://img.example.com/a.jpg?x="><script>'
    content["intro"] = EVIL
    rendered = render_issue(content, cfg)
    assert "<script" not in rendered.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" in rendered.html
    imgs = [a for t, a in parse(rendered.html).tags if t == "img"]
    assert imgs[0]["src"] == 'https://img.example.com/a.jpg?x="><script>'
    assert imgs[0]["alt"] == EVIL
    assert EVIL in rendered.text  # plain text is not HTML-escaped


def test_user_text_cannot_forge_a_slot(cfg: Settings) -> None:
    content = sample_content(3)
    content["picks"][1]["title"] = f"Click {slots.UNSUBSCRIBE_URL} {slots.GREETING}"
    content["picks"][1]["url"] = f"https://evil.example.com/{slots.UNSUBSCRIBE_URL}"
    content["intro"] = slots.GREETING
    rendered = render_issue(content, cfg)
    for part in (rendered.html, rendered.text):
        assert part.count(slots.UNSUBSCRIBE_URL) == 1
        assert part.count(slots.GREETING) == 1
    assert "https://evil.example.com/%5F_DIGEST_UNSUBSCRIBE_URL__" in rendered.html


def test_web_version_has_no_slots(issue, cfg: Settings) -> None:
    web = web_version(issue.html, cfg)
    assert slots.MARKER_PREFIX not in web
    assert "<p" in web and "Hello," in web
    assert ("https://news.example.com/subscribe", "Subscribe") in parse(web).anchors
    assert "Unsubscribe" not in web


# -- text part -------------------------------------------------------------------

URL = re.compile(r"^\s*(https?://\S+|__DIGEST_[A-Z_]+__)$")


def test_text_lines_fit_78_columns(issue) -> None:
    for line in issue.text.splitlines():
        assert len(line) <= 78 or URL.match(line), line


def test_text_references_match_links_list(issue) -> None:
    body, _, links = issue.text.partition("\nLINKS\n-----\n")
    listed = dict(re.findall(r"^\[(\d+)\]\s+(\S+)", links, flags=re.MULTILINE))
    used = re.findall(r"\[(\d+)\]", body)
    assert used == sorted(used, key=int)  # numbered in reading order
    assert set(used) == set(listed) and len(listed) == 23  # 20 stories + 3 support links
    for pick in sample_content(20)["picks"]:
        number = next(n for n, url in listed.items() if url == pick["url"])
        assert re.search(r"\[" + number + r"\]", body)


def test_text_has_greeting_footer_and_sections(issue, cfg: Settings) -> None:
    lines = issue.text.splitlines()
    assert slots.GREETING in lines[:6]
    assert lines.count(slots.UNSUBSCRIBE_URL) == 1
    assert "https://news.example.com/issues/2026-W48" in lines
    assert "https://news.example.com/legal/privacy?lang=en" in lines
    assert cfg.postal_address in issue.text
    headings = [lines[i - 1] for i, line in enumerate(lines) if line and set(line) == {"-"}]
    sections = [h for h in headings if h in ("NEWS", "FEATURES", "ANALYSIS", "OPINION")]
    assert sections == ["NEWS", "FEATURES", "ANALYSIS", "OPINION"]
    assert "&amp;" not in issue.text and "&#" not in issue.text


def test_long_urls_and_markers_are_never_split() -> None:
    long_url = "https://example.com/" + "a-very-long-path-segment/" * 5
    text = f"Read this {long_url} and then {slots.UNSUBSCRIBE_URL} please " * 3
    wrapped = wrap(text)
    assert long_url in wrapped.splitlines()
    assert all(
        slots.UNSUBSCRIBE_URL in line or slots.MARKER_PREFIX not in line
        for line in wrapped.splitlines()
    )
    assert wrapped.count(slots.UNSUBSCRIBE_URL) == 3
    bullet = wrap("word " * 40, indent="  ", first_indent="* ")
    assert bullet.startswith("* ") and all(x.startswith("  ") for x in bullet.splitlines()[1:])
    refs = LinkRefs()
    assert (refs.ref("https://a.example"), refs.ref("https://b.example")) == (1, 2)
    assert refs.ref("https://a.example") == 1 and len(refs) == 2
    assert refs.block().splitlines() == ["[1] https://a.example", "[2] https://b.example"]
    refs.ref(long_url)
    assert refs.block().splitlines()[-1] == "    " + long_url
    assert underline("News") == "News\n----"
    assert tidy("a  \n\n\n\nb\n\n") == "a\n\nb\n"


# -- confirmation email ----------------------------------------------------------


def test_confirmation_email(cfg: Settings) -> None:
    url = "https://news.example.com/confirm/tok_abc.DEF-123?x=1&y=2"
    mail = render_confirmation(cfg, url, 'Anna <b>"Ann"</b>')
    doc = parse(mail.html)
    assert (url, "Yes, subscribe me") in doc.anchors
    assert "x=1&amp;y=2" in mail.html
    assert "Confirm your subscription" in mail.html
    assert "Hello Anna &lt;b&gt;&#34;Ann&#34;&lt;/b&gt;," in mail.html
    assert "nothing happens" in mail.html
    assert (slots.UNSUBSCRIBE_URL, "Unsubscribe") in doc.anchors
    assert (cfg.effective_privacy_url, "Privacy policy") in doc.anchors
    assert escaped(cfg.postal_address) in mail.html
    assert '<meta name="color-scheme" content="light dark"' in mail.html
    assert slots.GREETING not in mail.html
    lines = mail.text.splitlines()
    assert url in lines and slots.UNSUBSCRIBE_URL in lines
    assert 'Hello Anna <b>"Ann"</b>,' in lines
    assert all(len(line) <= 78 or URL.match(line) for line in lines)
    plain = render_confirmation(cfg, url, "  ")
    assert "Hello," in plain.text.splitlines()


def test_a_newsletter_can_have_its_own_welcome_and_confirmation(
    tmp_path: Path, cfg: Settings
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    builtin = builtin_templates()
    for kind in ("welcome", "confirm"):
        mjml = (builtin / f"{kind}.mjml.j2").read_text(encoding="utf-8")
        own = "<mj-section><mj-column><mj-text>OWN-MARK</mj-text></mj-column></mj-section>"
        marked = mjml.replace("{% block content %}", "{% block content %}" + own)
        (templates / f"culture-{kind}.mjml.j2").write_text(marked, encoding="utf-8")
        text = (builtin / f"{kind}.txt.j2").read_text(encoding="utf-8")
        (templates / f"culture-{kind}.txt.j2").write_text("Culture only\n" + text, encoding="utf-8")
    settings = cfg.model_copy(update={"templates_dir": templates})
    culture = {"slug": "culture", "name": "Culture", "language": "en", "template": "culture"}
    weekly = {**culture, "slug": "weekly", "template": "digest"}

    own = render_welcome(settings, culture, latest_url="https://news.example.com/issues/1")
    assert "OWN-MARK" in own.html and own.text.startswith("Culture only")
    assert "https://news.example.com/issues/1" in own.html
    shared = render_welcome(settings, weekly)
    assert "OWN-MARK" not in shared.html and "Culture only" not in shared.text
    mail = render_confirmation(settings, "https://news.example.com/confirm/t", "", culture)
    assert "OWN-MARK" in mail.html and mail.text.startswith("Culture only")
    assert "OWN-MARK" not in render_confirmation(settings, "https://x.example/c", "").html

    # Half a pair is an editor's mistake, named with its file, not a silent fallback.
    (templates / "culture-welcome.txt.j2").unlink()
    with pytest.raises(InputError, match=r"culture-welcome\.txt\.j2: template not found"):
        render_welcome(settings, culture)


# -- helpers and errors ------------------------------------------------------------


def test_small_helpers() -> None:
    assert byline_label("AFP") == "By AFP"
    assert byline_label("by Reuters") == "by Reuters"
    assert byline_label("") == ""
    assert with_query("https://x.example/s?a=1", frequency="once") == (
        "https://x.example/s?a=1&frequency=once"
    )


def test_bad_template_names_file_and_line(tmp_path: Path, cfg: Settings) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(builtin_templates(), templates)
    broken = templates / "digest.txt.j2"
    broken.write_text("line one\n{% if %}\n", encoding="utf-8")
    settings = cfg.model_copy(update={"templates_dir": templates})
    with pytest.raises(InputError) as err:
        render_issue(sample_content(2), settings)
    assert "digest.txt.j2:2:" in str(err.value)
    assert "\n" not in str(err.value)
    (templates / "digest.mjml.j2").write_text("<mjml><mj-body><mj-section>", encoding="utf-8")
    with pytest.raises(InputError, match=r"digest\.mjml\.j2: invalid MJML"):
        render_issue(sample_content(2), settings)


def test_missing_snapshot_field_is_a_clear_error(cfg: Settings) -> None:
    content = sample_content(1)
    del content["subject"]
    with pytest.raises(InputError, match=r"issue 2026-W48: subject: missing"):
        render_issue(content, cfg)
    content = sample_content(1)
    content["date"] = "next friday"
    with pytest.raises(InputError, match="not an ISO date"):
        render_issue(content, cfg)


def test_empty_issue_still_renders(cfg: Settings) -> None:
    content = sample_content(0)
    rendered = render_issue(content, cfg)
    assert "Top story" not in rendered.html and slots.UNSUBSCRIBE_URL in rendered.html
    assert "LINKS" in rendered.text
