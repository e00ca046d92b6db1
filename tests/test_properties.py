"""Property-based: whatever editors and subscribers type, every message is well-formed.

For any recipient name and address, subject, pick text or attribute value (URLs, alt
text), the message built the way `digest send` builds it (picks validated and stored,
the issue frozen and rendered by editions.freeze, then sender.template_for(...).build)
parses, carries exactly the headers a plain message carries (each single-instance one
exactly once, none smuggled in), keeps its personal parts in place, and its HTML has
no element or attribute the editors did not put in the template.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.delivery.message import MessageTemplate, Recipient, greeting
from digest.delivery.sender import template_for
from digest.editorial import editions, newsletters, slots
from digest.editorial.models import Edition
from digest.editorial.picks import add_pick, validate_pick
from digest.errors import InputError
from digest.settings import Settings
from digest.store.engine import dispose_all, get_engine, session_scope
from subscribers.tokens import make_token

SINGLE = (
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id",
    "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Type",
)  # fmt: skip
#: What hostile text looks like: header injection, encoded words, markup, slot markers,
#: control and exotic line-break characters, quoting.
NASTY = [
    "\r\n", "\n", "\r", "\r\nBcc: evil@example.com", "\r\n\r\n<html>", "\x00", "\x1b[2J",
    "\u2028", "\u0085", "\x0b", "\t", "=?utf-8?q?=0D=0ABcc:_x?=", "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>', "&amp;", "&#13;&#10;", "__DIGEST_GREETING__",
    "__DIGEST_UNSUBSCRIBE_URL__", ".", "\r\n.\r\n", "=", "Ж", "😀", '"', "'", "\\", " ",
]  # fmt: skip
text = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(NASTY)), max_size=8).map("".join)
#: What can be in a URL we accept (check_url refuses spaces and invisible characters).
VISIBLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"))
URL_NASTY = [
    '"',
    "'",
    "<",
    ">",
    "&",
    "&amp;",
    "\\",
    "__DIGEST_GREETING__",
    "%0D%0A",
    "#",
    "=",
    "😀",
]
url_part = st.lists(
    st.one_of(st.text(VISIBLE, max_size=10), st.sampled_from(URL_NASTY)), max_size=6
).map("".join)


def examples(n: int) -> hsettings:
    return hsettings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Settings]]:
    """A migrated SQLite store and settings; every example works in a rolled-back session."""
    path: Path = tmp_path_factory.mktemp("props") / "digest.db"
    settings = Settings(
        database_url=f"sqlite:///{path}",
        secret_key="p3Xw9Lk2Qz7Rt5Vm1Nb8Ch4Fd6Jg0SyU",
        base_url="https://news.example.com",
        _env_file=None,  # type: ignore[call-arg]
    )
    engine = get_engine(settings.database_url)
    with session_scope(engine) as s:  # the newsletter and its open edition, committed
        editions.open_edition(s, settings, newsletters.resolve(s, settings))
    yield engine, settings
    dispose_all()


def the_edition(session: Session, settings: Settings) -> Edition:
    """The default newsletter's open edition: where the desk's picks and subject go."""
    return editions.open_edition(session, settings, newsletters.resolve(session, settings))


def build(
    session: Session, settings: Settings, name: str = "Reader", addr: str = "r@example.com"
) -> bytes:
    """Freeze what is in the session into the edition and build one subscriber's message."""
    nl = newsletters.resolve(session, settings)
    edition = editions.freeze(session, settings, nl, the_edition(session, settings))
    template: MessageTemplate = template_for(edition, newsletters.settings_for(settings, nl))
    token = make_token(settings.secret(), "unsubscribe", 77, settings.effective_list_id)
    return template.build(Recipient(77, addr, name, token))


def pick(settings: Settings, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "url": "https://news.example.com/story",
        "title": "A plain title",
        "section": settings.sections[0],
    }
    return {**base, **fields}


def add(session: Session, settings: Settings, data: dict[str, object]) -> None:
    try:
        add_pick(session, the_edition(session, settings).id, validate_pick(data, settings.sections))
    except InputError:
        assume(False)  # refused with a clear error: nothing to build


def parse(data: bytes) -> EmailMessage:
    """As a receiving MTA with SMTPUTF8 would: headers may be raw UTF-8 (RFC 6532)."""
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)  # type: ignore[return-value]


class Tags(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def shapes(html: str) -> list[tuple[str, frozenset[str]]]:
    """Each element's name and attribute names: what hostile text must never change."""
    return sorted({(t, frozenset(a)) for t, a in Tags(html).tags}, key=repr)


def check(data: bytes, plain: bytes, greeting: str = "") -> tuple[str, str]:
    """The invariants of every message, against `plain`: the same message built from
    harmless text. Returns the text and HTML parts."""
    lines = data.split(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 and not line.startswith(b".") for line in lines)
    msg, expected = parse(data), parse(plain)
    assert sorted(msg.keys()) == sorted(expected.keys()), "a header appeared or went missing"
    for name in SINGLE:
        assert len(msg.get_all(name) or []) == 1, name
    for name, value in msg.items():
        assert "\n" not in str(value) and "\r" not in str(value), (name, str(value))
    assert msg.get_content_type() == "multipart/alternative"
    plain_part, html_part = msg.get_payload()
    text_body, html_body = plain_part.get_content(), html_part.get_content()
    # Slot markers are all filled (a recipient may call themselves "__DIGEST_...": shown as is).
    assert "__DIGEST_" not in text_body.replace(greeting, "")
    assert "__DIGEST_" not in html_body.replace(html.escape(greeting, quote=False), "")
    unsubscribe = re.search(r"<(https://[^>]+/unsubscribe/[^>]+)>", str(msg["List-Unsubscribe"]))
    assert unsubscribe is not None
    assert unsubscribe.group(1) in text_body and unsubscribe.group(1) in html_body
    html_plain = expected.get_payload()[1].get_content()
    assert set(shapes(html_body)) <= set(shapes(html_plain)), "an element or attribute was injected"
    return text_body, html_body


def one_message(
    engine: Engine, settings: Settings, picks: list[dict[str, object]], **kw: str
) -> bytes:
    """Store `picks` (rejected examples are skipped), freeze and build; all rolled back."""
    subject = kw.pop("subject", None)
    with Session(engine) as s:
        for data in picks:
            add(s, settings, data)
        if subject is not None:
            try:
                editions.edit(s, the_edition(s, settings), subject=subject)
            except InputError:
                assume(False)
        built = build(s, settings, **kw)
        s.rollback()
    return built


@pytest.fixture(scope="module")
def frozen(store: tuple[Engine, Settings]) -> tuple[MessageTemplate, str]:
    """One issue, frozen and rendered once (a name changes nothing there), and its token."""
    engine, settings = store
    with Session(engine) as s:
        add(s, settings, pick(settings, image_url="https://img.example.com/a.jpg", image_alt="A"))
        template = template_for(
            editions.freeze(
                s, settings, newsletters.resolve(s, settings), the_edition(s, settings)
            ),
            settings,
        )
        s.rollback()
    return template, make_token(settings.secret(), "unsubscribe", 77, settings.effective_list_id)


@examples(150)
@given(name=text, local=st.sampled_from(["anna", "o'neil+news", "иван", "user.name"]))
def test_any_recipient_name(frozen, name: str, local: str) -> None:  # type: ignore[no-untyped-def]
    template, token = frozen
    addr = f"{local}@example.com"
    data = template.build(Recipient(77, addr, name, token))
    check(data, template.build(Recipient(77, addr, "Reader", token)), greeting(name))
    to = parse(data)["To"].addresses[0]
    assert to.addr_spec == addr
    # The name as typed, control characters blanked. Whitespace is compared loosely: the
    # stdlib's parser puts a space between adjacent encoded words of a display name.
    shown = re.sub(r"[\x00-\x1f\x7f]", " ", name)
    assert "".join(to.display_name.split()) == "".join(shown.split())


@examples(50)
@given(subject=text)
def test_any_subject(store, subject: str) -> None:  # type: ignore[no-untyped-def]
    engine, settings = store
    picks = [pick(settings, image_url="https://img.example.com/a.jpg", image_alt="A")]
    data = one_message(engine, settings, picks, subject=subject)
    check(data, one_message(engine, settings, picks, subject="A plain subject"))
    with Session(engine) as s:  # the subject arrives as the desk stored it
        try:
            stored = editions.edit(s, the_edition(s, settings), subject=subject).subject
        finally:
            s.rollback()
    default = editions.default_subject(
        settings.list_name, [{"featured": True, "title": "A plain title"}]
    )
    # As stored (whitespace aside: the stdlib's fold/parse round trip may add a space).
    assert str(parse(data)["Subject"]).split() == (stored or default).split()


@examples(50)
@given(title=text, summary=text, byline=text, credit=text, tags=st.lists(text, max_size=3))
def test_any_pick_text(store, title, summary, byline, credit, tags) -> None:  # type: ignore[no-untyped-def]
    engine, settings = store

    def picks(title: str, summary: str, byline: str, credit: str, tags: list[str]) -> list:  # type: ignore[type-arg]
        featured = pick(
            settings,
            title=title,
            summary=summary,
            byline=byline,
            image_url="https://img.example.com/a.jpg",
            image_alt=title,
            image_credit=credit,
            tags=tags,
            featured=True,
        )
        other = pick(settings, title="Second", summary=title, section=settings.sections[1])
        return [featured, other]

    data = one_message(engine, settings, picks(title, summary, byline, credit, tags))
    plain = one_message(engine, settings, picks("Title", "Summary", "AFP", "Photo", ["a"]))
    check(data, plain)
    stored = validate_pick(picks(title, summary, byline, credit, tags)[0], settings.sections)
    expected = editions.default_subject(
        settings.list_name, [{"featured": True, "title": stored.title}]
    )
    assert str(parse(data)["Subject"]) == expected


@examples(50)
@given(path=url_part, query=url_part, alt=text)
def test_any_attribute_value(store, path: str, query: str, alt: str) -> None:  # type: ignore[no-untyped-def]
    engine, settings = store

    def picks(url: str, image: str, alt: str) -> list:  # type: ignore[type-arg]
        return [pick(settings, url=url, image_url=image, image_alt=alt, featured=True)]

    url = f"https://news.example.com/{path}?q={query}"
    image = f"https://img.example.com/{query}.jpg"
    data = one_message(engine, settings, picks(url, image, alt or "x"))
    plain = one_message(
        engine,
        settings,
        picks("https://news.example.com/a?q=b", "https://img.example.com/b.jpg", "x"),
    )
    _, html_body = check(data, plain)
    stored = validate_pick(picks(url, image, alt or "x")[0], settings.sections)
    attrs = [a for _, a in Tags(html_body).tags]
    # The values come back whole, as attribute values (slot markers are defused: in URLs
    # escaped, in text split by a zero-width space; a blank alt text becomes the title).
    marker = slots.MARKER_PREFIX
    assert stored.url.replace(marker, "%5F" + marker[1:]) in {a.get("href") for a in attrs}
    assert stored.image_url.replace(marker, "%5F" + marker[1:]) in {a.get("src") for a in attrs}
    assert slots.scrub(stored.image_alt or stored.title) in {a.get("alt") for a in attrs}
