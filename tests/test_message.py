"""Per-recipient messages: every header and both parts, parsed back with the stdlib."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from digest.delivery import qp
from digest.delivery.message import MessageTemplate, Recipient, subject_header
from digest.editorial.render import render_issue
from subscribers.tokens import make_token, verify_token
from tests.samples import sample_content

SINGLE = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Content-Type",
)
EXPECTED_HEADERS = set(SINGLE) | {"Precedence", "X-Digest-Issue"}


@pytest.fixture(scope="module")
def rendered():
    from digest.settings import Settings

    s = Settings(secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa", base_url="https://news.example.com")
    return render_issue(sample_content(20), s)


@pytest.fixture
def template(settings, rendered) -> MessageTemplate:
    return MessageTemplate(
        rendered,
        settings=settings,
        issue_key="2026-W48",
        subject="The Weekly Digest: Lavrov hosts Choe Son Hui — and more",
        date=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
    )


def build(template, settings, sid: int, addr: str, name: str) -> bytes:
    token = make_token(settings.secret(), "unsubscribe", sid, settings.effective_list_id)
    return template.build(Recipient(sid, addr, name, token))


def check_wire_format(data: bytes) -> None:
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    for line in data.split(b"\r\n"):
        assert not line.startswith(b"."), "a line starts with a dot: SMTP would eat it"
        assert len(line) <= 998


def parse(data: bytes):
    """Parse as a receiving MTA with SMTPUTF8 would: headers may be raw UTF-8 (RFC 6532)."""
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)


def parts(msg):
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    return plain.get_content(), html.get_content()


@pytest.mark.parametrize(
    ("addr", "name"),
    [
        ("anna@example.com", "Anna Petrova"),
        ("dmitry@example.org", "Дмитрий Соколов"),
        ("noname@example.net", ""),
        ("quote@example.com", 'Robert "Bobby" O\'Neil, Jr.'),
        ("user@xn--bcher-kva.example", "Jürgen Bücher"),
        ("иван@пример.рф", "Иван"),
    ],
)
def test_message_parses_with_every_header(template, settings, addr, name) -> None:
    data = build(template, settings, 42, addr, name)
    check_wire_format(data)
    msg = parse(data)
    for header in SINGLE:
        assert len(msg.get_all(header) or []) == 1, header
    assert set(msg.keys()) == EXPECTED_HEADERS
    assert msg["To"].addresses[0].addr_spec == addr
    assert msg["To"].addresses[0].display_name == name
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "The Weekly Digest <digest.news.example.com>"
    unsub = str(msg["List-Unsubscribe"])
    https_url = unsub.split("<", 1)[1].split(">", 1)[0]
    assert https_url.startswith("https://news.example.com/unsubscribe/")
    token = https_url.rsplit("/", 1)[1]
    assert verify_token(settings.secret(), "unsubscribe", token, settings.effective_list_id) == 42
    assert "<mailto:unsubscribe@news.example.com?subject=unsubscribe-" in unsub
    text, html = parts(msg)
    greeting = f"Hello {name.split()[0]}," if name else "Hello,"
    assert greeting in text
    assert https_url in text and https_url in html
    assert "__DIGEST_" not in text and "__DIGEST_" not in html
    assert "https://news.example.com/issues/2026-W48" in html


def test_message_ids_are_unique_per_recipient(template, settings) -> None:
    ids = set()
    for sid in range(1, 200):
        msg = parse(build(template, settings, sid, f"r{sid}@example.com", "R"))
        ids.add(msg["Message-ID"])
    assert len(ids) == 199


def test_html_escapes_the_greeting(template, settings) -> None:
    data = build(template, settings, 7, "x@example.com", "<b>Eve</b> & co")
    _, html = parts(parse(data))
    assert "Hello &lt;b&gt;Eve&lt;/b&gt;," in html
    assert "<b>Eve" not in html


def test_qp_lines_stay_within_76_columns(template, settings) -> None:
    data = build(template, settings, 9, "long@example.com", "Ж" * 150)
    body = data.split(b"\r\n\r\n", 1)[1]
    for line in body.split(b"\r\n"):
        if not line.startswith(b"--") and not line.startswith(b"Content-"):
            assert len(line) <= 76, line


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(max_size=120), sid=st.integers(min_value=1, max_value=2**40))
def test_any_name_gives_a_valid_message(template, settings, name: str, sid: int) -> None:
    data = build(template, settings, sid, "prop@example.com", name)
    check_wire_format(data)
    msg = parse(data)
    assert set(msg.keys()) == EXPECTED_HEADERS
    for header in SINGLE:
        assert len(msg.get_all(header) or []) == 1
    text, html = parts(msg)
    assert "/unsubscribe/" in text


@given(st.binary(max_size=400).map(lambda b: b.decode("latin-1").encode("utf-8")))
def test_qp_round_trip(data: bytes) -> None:
    encoded = qp.encode(data)
    for line in encoded.split(b"\r\n"):
        assert len(line) <= 76 and not line.startswith(b".")
    normal = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert qp.decode(encoded).replace(b"\r\n", b"\n") == normal


@pytest.mark.parametrize(
    "subject",
    [
        "The Weekly Digest: __DIGEST_UNSUBSCRIBE_URL____DIGEST_UNSUBSCRIBE_URL__",
        "a " + "b" * 90 + " c",
        "two  spaces  and a subject line that runs on well past the seventy-eight columns",
        "Short",
    ],
)
def test_long_subjects_fold_without_a_leading_space(subject: str) -> None:
    raw = subject_header(subject)
    lines = raw.split(b"\r\n")[:-1]
    assert lines[0].startswith(b"Subject: ") and all(line.strip() for line in lines)
    parsed = email.message_from_bytes(raw + b"\r\nbody", policy=email.policy.default)
    assert str(parsed["Subject"]) == subject  # was " The Weekly..." (the stdlib's fold)
