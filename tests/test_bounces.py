"""Bounces and complaints by mail: DSN (RFC 3464) and ARF (RFC 5965) samples (tests.bouncemail),
read from a real Maildir or IMAP folder, applied to real subscribers. Forgeries:
tests/test_bounce_forgery.py."""

from __future__ import annotations

import imaplib
import mailbox
import os
import re
import ssl
from pathlib import Path

import pytest

from digest.bounces import open_mailbox, process
from digest.bounces.imap import ImapSource
from digest.bounces.maildir import MaildirSource
from digest.bounces.reports import COMPLAINT, HARD, IGNORED, SOFT, parse
from digest.editorial import newsletters
from digest.errors import SettingsError, TransportError
from digest.settings import load_settings
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.model import SubscriberStatus
from tests import imapd
from tests.bouncemail import (
    DOMAIN,
    arf,
    auto_reply,
    dsn,
    gmail_dsn,
    jmrp_arf,
    original_headers,
    outlook_dsn,
    postfix_dsn,
    send_issue,
    yahoo_arf,
)
from tests.clirun import run_cli

# -- parsing ------------------------------------------------------------------------


PARSE_CASES = [
    ("user unknown", dsn("a@example.com", "5.1.1"), HARD, "5.1.1", ("a@example.com",)),
    ("domain gone", dsn("a@example.com", "5.4.4"), HARD, "5.4.4", ("a@example.com",)),
    ("mailbox full, permanent", dsn("a@example.com", "5.2.2"), SOFT, "5.2.2", ("a@example.com",)),
    ("blocked as spam", dsn("a@example.com", "5.7.1"), SOFT, "5.7.1", ("a@example.com",)),
    ("gave up on 4xx", dsn("a@example.com", "4.4.1"), SOFT, "4.4.1", ("a@example.com",)),
    ("still trying", dsn("a@example.com", "4.4.1", action="delayed"), IGNORED, "4.4.1", ("a@example.com",)),
    ("delivered", dsn("a@example.com", "2.0.0", action="delivered"), IGNORED, "2.0.0", ("a@example.com",)),
    ("status only in the diagnostic", dsn("a@example.com", None, diagnostic="smtp; 550 5.1.1 no such user"), HARD, "5.1.1", ("a@example.com",)),
    ("bare SMTP code 452", dsn("a@example.com", None, diagnostic="smtp; 452 too many recipients"), SOFT, "4.0.0", ("a@example.com",)),
    ("original recipient first", dsn("fwd@example.net", "5.1.1", original_recipient="Anna@Example.com"), HARD, "5.1.1", ("anna@example.com", "fwd@example.net")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "data", "kind", "status", "addresses"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES]
)
def test_dsn_classification(case, data, kind, status, addresses) -> None:
    notice = parse(data)
    assert notice is not None and notice.report == "dsn"
    assert (notice.kind, notice.status, notice.addresses) == (kind, status, addresses)
    assert notice.refs == ()  # hand-written: nothing that could be our reference


def test_worst_recipient_block_wins() -> None:
    second = "\r\nFinal-Recipient: rfc822; b@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    data = dsn(
        "a@example.com",
        "4.2.2",
        extra_recipients=second,
        returned=original_headers(42, "a@example.com"),
    )
    notice = parse(data)
    assert notice.kind == HARD and notice.status == "5.1.1"
    assert notice.addresses == ("a@example.com", "b@example.com")
    # A made-up Message-ID in our old shape is no reference at all.
    assert notice.refs == () and notice.issue_key == "2026-W48"


def test_arf_reports() -> None:
    original = original_headers(7, "redacted@example.com") + "\r\nHello,\r\n"
    abuse = parse(arf("abuse", original))
    assert abuse.report == "arf" and abuse.kind == COMPLAINT and abuse.status == "abuse"
    assert abuse.detail == "ExampleFBL/1.0" and abuse.refs == ()
    with_rcpt = parse(arf("abuse", original, rcpt="Reader@Example.com"))
    assert with_rcpt.addresses == ("reader@example.com", "redacted@example.com")
    assert parse(arf("not-spam", original)).kind == IGNORED
    assert parse(arf("auth-failure", original)).kind == IGNORED
    assert parse(auto_reply()) is None
    assert parse(b"\x00\xff garbage without headers") is None


# -- processing a Maildir -----------------------------------------------------------


def confirmed(engine, *emails: str) -> dict[str, int]:
    """Subscribe `emails` to the default newsletter; their subscriber ids."""
    with session_scope(engine) as s:
        nl = newsletters.ensure_default(s)
        return {
            e: subscriptions.add(
                s, nl.id, e, e.split("@")[0].title(), status="confirmed"
            ).subscriber.id
            for e in emails
        }


def statuses(engine) -> dict[str, tuple[str, int]]:
    """Each address's status for the default newsletter (suppression first), bounce count."""
    with session_scope(engine) as s:
        nl = newsletters.ensure_default(s)
        return {
            m.email: (m.status, m.subscriber.bounce_count) for m in subscriptions.members(s, nl.id)
        }


def maildir_with(path: Path, *messages: bytes) -> mailbox.Maildir:
    md = mailbox.Maildir(path, create=True)
    for m in messages:
        md.add(m)
    return md


def test_maildir_run_marks_subscribers_and_is_idempotent(workdir, settings, engine) -> None:
    _, sent = send_issue(
        engine,
        settings,
        "hard@example.com",
        "moved@example.com",
        "complains@example.com",
        "soft@example.com",
        "slow@example.com",
        "left@example.com",
    )
    with session_scope(engine) as s:
        subscriptions.unsubscribe(s, newsletters.ensure_default(s).id, "left@example.com")
    moved = sent["moved@example.com"]
    box = workdir / "bounces"
    md = maildir_with(
        box,
        postfix_dsn(sent["hard@example.com"], "5.1.1"),
        # Forwarded: the failing address is elsewhere; our reference says who it was.
        dsn("new-job@example.net", "5.1.1", returned=moved.headers, to=moved.envelope),
        yahoo_arf(sent["complains@example.com"]),
        postfix_dsn(sent["soft@example.com"], "4.2.2"),
        outlook_dsn(sent["soft@example.com"], "5.2.2"),
        postfix_dsn(sent["slow@example.com"], "4.4.1", action="delayed"),
        dsn("nobody@example.org", "5.1.1"),  # no reference: changes nobody
        postfix_dsn(sent["left@example.com"], "5.1.1"),
        auto_reply(),
    )
    report = process(engine, settings, f"maildir:{box}")
    assert report.read == 9 and report.unrecognized == 1
    assert dict(report.kinds) == {"hard": 4, "complaint": 1, "soft": 2, "ignored": 1}
    # The address that left the newsletter bounced too: suppression is per address, so
    # no other newsletter mails a mailbox that no longer exists.
    assert report.outcomes["bounced"] == 3 and report.outcomes["complained"] == 1
    assert report.outcomes["counted"] == 2 and report.outcomes["already"] == 0
    assert report.outcomes["rejected"] == 1 and report.outcomes["ignored"] == 1
    assert statuses(engine) == {
        "hard@example.com": (SubscriberStatus.BOUNCED, 0),
        "moved@example.com": (SubscriberStatus.BOUNCED, 0),
        "complains@example.com": (SubscriberStatus.COMPLAINED, 0),
        "soft@example.com": (SubscriberStatus.CONFIRMED, 2),
        "slow@example.com": (SubscriberStatus.CONFIRMED, 0),
        "left@example.com": (SubscriberStatus.BOUNCED, 0),
    }
    with session_scope(engine) as s:  # its subscription still says it left
        left = subscriptions.find(s, newsletters.ensure_default(s).id, "left@example.com")
        assert left.subscription.status == "unsubscribed"
    assert "2 soft bounces counted" in report.summary()
    assert "1 rejected without a valid signed reference" in report.summary()
    # Every message is now in cur/ and seen; the one that is no report and the
    # rejected one are also flagged for a person.
    assert not os.listdir(box / "new")
    flags = sorted(m.get_flags() for m in mailbox.Maildir(box, create=False))
    assert flags == ["FS", "FS"] + ["S"] * 7

    again = process(engine, settings, f"maildir:{box}")
    assert again.read == 0 and statuses(engine)["soft@example.com"] == (
        SubscriberStatus.CONFIRMED,
        2,
    )

    # The third soft bounce reaches DIGEST_SOFT_BOUNCE_THRESHOLD (3).
    md.add(gmail_dsn(sent["soft@example.com"], "4.2.2"))
    third = process(engine, settings, f"maildir:{box}")
    assert third.read == 1 and third.outcomes["bounced"] == 1
    assert statuses(engine)["soft@example.com"] == (SubscriberStatus.BOUNCED, 3)


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_bounced_and_complained_are_never_mailed_again(workdir, settings, engine) -> None:
    emails = ("ok@example.com", "gone@example.com", "angry@example.com")
    first, sent = send_issue(engine, settings, *emails)
    box = workdir / "bounces"
    maildir_with(box, gmail_dsn(sent["gone@example.com"]), jmrp_arf(sent["angry@example.com"]))
    report = process(engine, settings, f"maildir:{box}")
    assert report.outcomes["bounced"] == 1 and report.outcomes["complained"] == 1
    second, again = send_issue(engine, settings, *emails)  # the next edition
    assert second.id != first.id and set(again) == {"ok@example.com"}


SHAPES = {
    "postfix": postfix_dsn,
    "gmail": gmail_dsn,
    "outlook": outlook_dsn,
    "yahoo-arf": yahoo_arf,
    "jmrp-arf": jmrp_arf,
    # No returned message at all (RET=HDRS ignored): the VERP address is enough.
    "verp only": lambda sent: dsn(sent.email, "5.1.1", to=sent.envelope),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_real_reports_from_each_provider_are_acted_on(workdir, settings, engine, shape) -> None:
    _, sent = send_issue(engine, settings, "reader@example.com", "other@example.com")
    reader = sent["reader@example.com"]
    assert reader.envelope.startswith("digest+b-") and reader.envelope.endswith("@" + DOMAIN)
    data = SHAPES[shape](reader)
    notice = parse(data)
    assert notice is not None and notice.refs, shape
    maildir_with(workdir / "box", data)
    report = process(engine, settings, f"maildir:{workdir / 'box'}")
    assert report.outcomes["rejected"] == 0, report.summary()
    expected = (
        SubscriberStatus.COMPLAINED
        if "arf" in shape
        else (SubscriberStatus.CONFIRMED if shape == "outlook" else SubscriberStatus.BOUNCED)
    )
    assert statuses(engine)["reader@example.com"][0] == expected
    assert statuses(engine)["other@example.com"] == (SubscriberStatus.CONFIRMED, 0)


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_without_verp_the_message_id_carries_the_reference(workdir, engine, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_BOUNCE_VERP", "false")
    monkeypatch.setenv("DIGEST_BOUNCE_ADDRESS", f"bounces@{DOMAIN}")
    settings = load_settings()
    _, sent = send_issue(engine, settings, "reader@example.com")
    reader = sent["reader@example.com"]
    assert reader.envelope == f"bounces@{DOMAIN}"
    maildir_with(workdir / "box", gmail_dsn(reader))
    assert process(engine, settings, f"maildir:{workdir / 'box'}").outcomes["bounced"] == 1


# -- mailbox settings and the command -------------------------------------------------


def test_mailbox_urls(workdir) -> None:
    assert isinstance(open_mailbox("maildir:/var/mail/bounces"), MaildirSource)
    imap = open_mailbox("imaps://bounce%40news.example.com:p%40ss@imap.example.com/Bounces")
    assert isinstance(imap, ImapSource)
    assert (imap.user, imap.host, imap.port, imap.folder) == (
        "bounce@news.example.com",
        "imap.example.com",
        993,
        "Bounces",
    )
    assert "p@ss" not in imap.describe() and "p%40ss" not in repr(vars(imap))
    for bad in ("pop3://x@y/INBOX", "/var/mail/bounces", "maildir:", "imaps://host-only/INBOX"):
        with pytest.raises(SettingsError, match=r"^DIGEST_BOUNCE_MAILBOX: "):
            open_mailbox(bad)
    with pytest.raises(SettingsError, match="is not a Maildir"):
        with open_mailbox(f"maildir:{workdir / 'missing'}"):
            pass


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_bounces_process_command(workdir, settings, engine, monkeypatch, capsys, caplog) -> None:
    _, sent = send_issue(engine, settings, "hard@example.com")
    forged = dsn("other@example.com", "5.1.1")
    maildir_with(workdir / "box", postfix_dsn(sent["hard@example.com"]), auto_reply(), forged)
    monkeypatch.setenv("DIGEST_FROM", f"News <digest@{DOMAIN}>")
    monkeypatch.setenv("DIGEST_BOUNCE_MAILBOX", f"maildir:{workdir / 'box'}")
    out = run_cli(capsys, "bounces", "process")
    assert out.code == 0, out.err
    assert out.out.startswith(f"3 messages read from maildir:{workdir / 'box'}: 2 hard bounces")
    assert "marked 1 bounced" in out.out and "1 not a report" in out.out
    assert "1 rejected without a valid signed reference" in out.out
    assert statuses(engine)["hard@example.com"][0] == SubscriberStatus.BOUNCED

    monkeypatch.delenv("DIGEST_BOUNCE_MAILBOX")
    unset = run_cli(capsys, "bounces", "process")
    assert unset.code == 2
    assert unset.one_line_error().startswith("DIGEST_BOUNCE_MAILBOX: not set")
    # A mailbox that cannot be reached: one line, and the password is never shown.
    closed = socket_port()
    mailbox = f"imaps://bob:s3cret-pw@127.0.0.1:{closed}/INBOX"
    monkeypatch.setenv("DIGEST_BOUNCE_MAILBOX", mailbox)
    imap = run_cli(capsys, "bounces", "process")
    assert imap.code == 1
    assert f"bounce mailbox imaps://bob@127.0.0.1:{closed}/INBOX: " in imap.one_line_error()
    assert "s3cret" not in imap.err + imap.out + caplog.text  # nor in a log line


def socket_port() -> int:
    """A loopback port with nobody listening."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a real IMAP server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def imap_server():
    why = imapd.available()
    if why:
        pytest.skip(why)
    with imapd.IMAPServer() as srv:
        yield srv


def deliver(srv, user: str, *messages: bytes) -> imaplib.IMAP4_SSL:
    """Put messages in the user's INBOX as an MTA would; returns a logged-in client."""
    ctx = ssl.create_default_context(cafile=str(srv.cafile))
    client = imaplib.IMAP4_SSL("127.0.0.1", srv.imaps_port, ssl_context=ctx, timeout=30)
    client.login(user, imapd.PASSWORD)
    for m in messages:
        typ, _ = client.append("INBOX", None, None, m)
        assert typ == "OK"
    client.select("INBOX")
    return client


def flags_by_uid(client: imaplib.IMAP4_SSL) -> list[set[str]]:
    client.noop()
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK"
    flags: dict[int, set[str]] = {}  # the server may also send unsolicited FETCH lines
    for line in data:
        uid, found = re.search(rb"UID (\d+)", line), re.search(rb"FLAGS \(([^)]*)\)", line)
        if uid and found:
            flags[int(uid.group(1))] = set(found.group(1).decode().split()) - {"\\Recent"}
    return [flags[uid] for uid in sorted(flags)]


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_imap_mailbox_over_tls(imap_server, workdir, settings, engine, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(imap_server.cafile))  # trust the test server
    _, sent = send_issue(engine, settings, "hard@example.com", "angry@example.com")
    user = "bounces@news.example.com"
    client = deliver(
        imap_server,
        user,
        postfix_dsn(sent["hard@example.com"], "5.1.1"),
        yahoo_arf(sent["angry@example.com"]),
        auto_reply(),
    )
    url = f"imaps://bounces%40news.example.com:{imapd.PASSWORD}@127.0.0.1:{imap_server.imaps_port}/INBOX"
    report = process(engine, settings, url)
    assert report.read == 3 and report.unrecognized == 1
    assert report.outcomes["bounced"] == 1 and report.outcomes["complained"] == 1
    assert report.source == f"imaps://{user}@127.0.0.1:{imap_server.imaps_port}/INBOX"
    assert statuses(engine)["hard@example.com"][0] == SubscriberStatus.BOUNCED
    assert statuses(engine)["angry@example.com"][0] == SubscriberStatus.COMPLAINED
    assert flags_by_uid(client) == [{"\\Seen"}, {"\\Seen"}, {"\\Seen", "\\Flagged"}]

    # Plain IMAP with STARTTLS reads the same folder; nothing is new, nothing changes.
    plain = url.replace("imaps://", "imap://").replace(
        str(imap_server.imaps_port), str(imap_server.imap_port)
    )
    again = process(engine, settings, plain)
    assert again.read == 0 and again.source.startswith("imap://")
    client.logout()

    wrong = url.replace(imapd.PASSWORD, "not-the-password")
    with pytest.raises(TransportError) as info:
        process(engine, settings, wrong)
    assert str(info.value).startswith(f"bounce mailbox imaps://{user}@127.0.0.1:")
    assert "not-the-password" not in str(info.value) and "\n" not in str(info.value)
