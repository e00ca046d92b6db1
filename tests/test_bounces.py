"""Bounces and complaints by mail: DSN (RFC 3464) and ARF (RFC 5965) samples built here,
read from a real Maildir, applied to real subscribers in SQLite."""

from __future__ import annotations

import asyncio
import imaplib
import mailbox
import os
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.bounces import open_mailbox, process
from digest.bounces.imap import ImapSource
from digest.bounces.maildir import MaildirSource
from digest.bounces.reports import COMPLAINT, HARD, IGNORED, SOFT, parse
from digest.delivery import campaign
from digest.delivery.message import MessageTemplate, Recipient
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial import newsletters
from digest.editorial.render import render_issue
from digest.errors import SettingsError, TransportError
from digest.settings import load_settings
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.model import SubscriberStatus, SubscriptionStatus
from tests import imapd, sending
from tests.clirun import run_cli
from tests.samples import sample_content

DOMAIN = "news.example.com"


def original_headers(sid: int, to: str, key: str = "2026-W48", domain: str = DOMAIN) -> str:
    """The headers of a digest message as we send it."""
    return (
        f"From: The Weekly Digest <digest@{DOMAIN}>\r\n"
        f"To: {to}\r\n"
        "Subject: The Weekly Digest: Lavrov's guests\r\n"
        f"Message-ID: <{key}.{sid}.1a2b3c4d@{domain}>\r\n"
        f"X-Digest-Issue: {key}\r\n"
        "List-Id: The Weekly Digest <digest.news.example.com>\r\n"
    )


def dsn(
    final: str,
    status: str | None,
    *,
    action: str = "failed",
    diagnostic: str | None = None,
    original_recipient: str | None = None,
    returned: str | None = None,
    extra_recipients: str = "",
) -> bytes:
    """A delivery status notification in the shape Postfix sends."""
    diag = diagnostic or f"smtp; 550 {status} <{final}>: Recipient address rejected"
    block = f"Final-Recipient: rfc822; {final}\r\n"
    if original_recipient:
        block += f"Original-Recipient: rfc822;{original_recipient}\r\n"
    block += f"Action: {action}\r\n"
    if status:
        block += f"Status: {status}\r\n"
    block += f"Remote-MTA: dns; mail.example.com\r\nDiagnostic-Code: {diag}\r\n"
    parts = [
        "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.example.org.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n",
        "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\nX-Postfix-Queue-ID: 4Q1XYZ\r\n"
        "Arrival-Date: Fri, 27 Nov 2026 06:00:01 +0000 (UTC)\r\n\r\n" + block + extra_recipients,
    ]
    if returned is not None:
        parts.append(
            "Content-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n" + returned
        )
    return _report("delivery-status", "Undelivered Mail Returned to Sender", parts)


def arf(feedback_type: str, original: str, rcpt: str | None = None) -> bytes:
    """An abuse report as mailbox providers send them (recipient often redacted)."""
    fields = (
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <bounces@{DOMAIN}>\r\n"
        "Arrival-Date: Fri, 27 Nov 2026 06:00:02 +0000\r\nSource-IP: 192.0.2.1\r\n"
    )
    if rcpt:
        fields += f"Original-Rcpt-To: <{rcpt}>\r\n"
    parts = [
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is an email abuse report for an email message received from IP 192.0.2.1.\r\n",
        "Content-Type: message/feedback-report\r\n\r\n" + fields,
        "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + original,
    ]
    return _report("feedback-report", "Complaint about message", parts)


def _report(kind: str, subject: str, parts: list[str]) -> bytes:
    boundary = f"=_{kind}_boundary"
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    head = (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        f"To: digest@{DOMAIN}\r\nSubject: {subject}\r\nAuto-Submitted: auto-replied\r\n"
        "Date: Fri, 27 Nov 2026 06:00:03 +0000\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={kind};\r\n boundary="{boundary}"\r\n\r\n'
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    return (head + body).encode()


def auto_reply() -> bytes:
    return (
        f"From: Anna <anna@example.com>\r\nTo: digest@{DOMAIN}\r\n"
        "Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\n"
        "I am away until Monday.\r\n"
    ).encode()


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
    notice = parse(data, DOMAIN)
    assert notice is not None and notice.report == "dsn"
    assert (notice.kind, notice.status, notice.addresses) == (kind, status, addresses)
    assert notice.subscriber_id is None  # no returned headers in these samples


def test_worst_recipient_block_wins_and_returned_headers_identify() -> None:
    second = "\r\nFinal-Recipient: rfc822; b@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    data = dsn(
        "a@example.com",
        "4.2.2",
        extra_recipients=second,
        returned=original_headers(42, "a@example.com"),
    )
    notice = parse(data, DOMAIN)
    assert notice.kind == HARD and notice.status == "5.1.1"
    assert (notice.subscriber_id, notice.issue_key) == (42, "2026-W48")
    assert notice.addresses == ("a@example.com", "b@example.com")
    # Someone else's Message-ID (or a test send, id 0) identifies nobody.
    other = parse(
        dsn("a@example.com", "5.1.1", returned=original_headers(42, "x", domain="evil.example")),
        DOMAIN,
    )
    assert other.subscriber_id is None and other.issue_key == "2026-W48"
    test_send = parse(dsn("a@example.com", "5.1.1", returned=original_headers(0, "x")), DOMAIN)
    assert test_send.subscriber_id is None


def test_arf_reports() -> None:
    original = original_headers(7, "redacted@example.com") + "\r\nHello,\r\n"
    abuse = parse(arf("abuse", original), DOMAIN)
    assert abuse.report == "arf" and abuse.kind == COMPLAINT and abuse.status == "abuse"
    assert abuse.subscriber_id == 7 and abuse.detail == "ExampleFBL/1.0"
    with_rcpt = parse(arf("abuse", original, rcpt="Reader@Example.com"), DOMAIN)
    assert with_rcpt.addresses == ("reader@example.com", "redacted@example.com")
    assert parse(arf("not-spam", original), DOMAIN).kind == IGNORED
    assert parse(arf("auth-failure", original), DOMAIN).kind == IGNORED
    assert parse(auto_reply(), DOMAIN) is None
    assert parse(b"\x00\xff garbage without headers", DOMAIN) is None


# -- processing a Maildir -----------------------------------------------------------


def confirmed(engine, *emails: str) -> dict[str, int]:
    """Confirmed subscribers of the default newsletter: {email: subscriber id}."""
    settings = load_settings()
    return {
        e: sending.subscribe(engine, settings, e, e.split("@")[0].title()).subscriber.id
        for e in emails
    }


def statuses(engine) -> dict[str, tuple[str, int]]:
    """{email: (effective status for the default newsletter, bounce count)}."""
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, load_settings())
        return {
            m.email: (m.status, m.subscriber.bounce_count) for m in subscriptions.members(s, nl.id)
        }


def maildir_with(path: Path, *messages: bytes) -> mailbox.Maildir:
    md = mailbox.Maildir(path, create=True)
    for m in messages:
        md.add(m)
    return md


def test_maildir_run_marks_subscribers_and_is_idempotent(workdir, settings, engine) -> None:
    ids = confirmed(
        engine,
        "hard@example.com",
        "moved@example.com",
        "complains@example.com",
        "soft@example.com",
        "slow@example.com",
        "left@example.com",
    )
    with session_scope(engine) as s:
        subscriptions.unsubscribe(s, newsletters.resolve(s, settings).id, "left@example.com")
    box = workdir / "bounces"
    md = maildir_with(
        box,
        dsn("hard@example.com", "5.1.1"),  # identified by address only
        # Forwarded: the failing address is elsewhere, our Message-ID says who it was.
        dsn(
            "new-job@example.net", "5.1.1", returned=original_headers(ids["moved@example.com"], "x")
        ),
        arf("abuse", original_headers(ids["complains@example.com"], "redacted") + "\r\nHi\r\n"),
        dsn("soft@example.com", "4.2.2"),
        dsn("soft@example.com", "5.2.2"),
        dsn("slow@example.com", "4.4.1", action="delayed"),
        dsn("nobody@example.org", "5.1.1"),
        dsn("left@example.com", "5.1.1"),
        auto_reply(),
    )
    report = process(engine, settings, f"maildir:{box}")
    assert report.read == 9 and report.unrecognized == 1
    assert dict(report.kinds) == {"hard": 4, "complaint": 1, "soft": 2, "ignored": 1}
    # A hard bounce suppresses the address, also one that left this newsletter: the
    # suppression is per address and would block every other newsletter too.
    assert report.outcomes["bounced"] == 3 and report.outcomes["complained"] == 1
    assert report.outcomes["counted"] == 2 and report.outcomes["already"] == 0
    assert report.outcomes["unmatched"] == 1 and report.outcomes["ignored"] == 1
    assert statuses(engine) == {
        "hard@example.com": (SubscriberStatus.BOUNCED, 0),
        "moved@example.com": (SubscriberStatus.BOUNCED, 0),
        "complains@example.com": (SubscriberStatus.COMPLAINED, 0),
        "soft@example.com": (SubscriberStatus.CONFIRMED, 2),
        "slow@example.com": (SubscriberStatus.CONFIRMED, 0),
        "left@example.com": (SubscriberStatus.BOUNCED, 0),
    }
    with session_scope(engine) as s:  # its subscription still says it left
        left = subscriptions.find(s, newsletters.resolve(s, settings).id, "left@example.com")
        assert left.subscription.status == SubscriptionStatus.UNSUBSCRIBED
    assert "2 soft bounces counted" in report.summary()
    # Every message is now in cur/ and seen; the one that is no report is also flagged.
    assert not os.listdir(box / "new")
    flags = sorted(m.get_flags() for m in mailbox.Maildir(box, create=False))
    assert flags == ["FS"] + ["S"] * 8

    again = process(engine, settings, f"maildir:{box}")
    assert again.read == 0 and statuses(engine)["soft@example.com"] == (
        SubscriberStatus.CONFIRMED,
        2,
    )

    # The third soft bounce reaches DIGEST_SOFT_BOUNCE_THRESHOLD (3); a second hard
    # bounce of an address already suppressed changes nothing.
    md.add(dsn("soft@example.com", "4.2.2"))
    md.add(dsn("hard@example.com", "5.1.1"))
    third = process(engine, settings, f"maildir:{box}")
    assert third.read == 2 and third.outcomes["bounced"] == 1 and third.outcomes["already"] == 1
    assert statuses(engine)["soft@example.com"] == (SubscriberStatus.BOUNCED, 3)
    assert statuses(engine)["hard@example.com"] == (SubscriberStatus.BOUNCED, 0)


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_bounced_and_complained_are_never_mailed_again(workdir, settings, engine) -> None:
    ids = confirmed(engine, "ok@example.com", "gone@example.com", "angry@example.com")
    sending.add_picks(engine, settings, 1)
    box = workdir / "bounces"
    maildir_with(
        box,
        dsn("gone@example.com", "5.1.1"),
        arf("abuse", original_headers(ids["angry@example.com"], "redacted") + "\r\nHi\r\n"),
    )
    process(engine, settings, f"maildir:{box}")
    issue = campaign.prepare_send(engine, settings)

    async def go():
        transport = make_transport(settings)
        async with transport:
            return await Sender(engine, settings, issue, transport).run()

    asyncio.run(go())
    sent = [p.read_bytes() for p in (workdir / "outbox" / "new").iterdir()]
    assert len(sent) == 1 and b"Delivered-To: ok@example.com" in sent[0]


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_a_message_we_sent_comes_back_as_a_complaint(workdir, settings, engine) -> None:
    """The full original (as built for the subscriber) inside an ARF report."""
    (sid,) = confirmed(engine, "reader@example.com").values()
    template = MessageTemplate(
        render_issue(sample_content(3), settings),
        settings=settings,
        issue_key="2026-W48",
        subject="The Weekly Digest: three stories",
        date=datetime(2026, 11, 27, 6, tzinfo=UTC),
    )
    sent = template.build(Recipient(sid, "reader@example.com", "Reader", "tok"))
    redacted = sent.replace(b"reader@example.com", b"xxxxxx@example.com").decode()
    maildir_with(workdir / "fbl", arf("abuse", redacted))
    report = process(engine, settings, f"maildir:{workdir / 'fbl'}")
    assert report.outcomes["complained"] == 1
    assert statuses(engine)["reader@example.com"][0] == SubscriberStatus.COMPLAINED


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
def test_bounces_process_command(workdir, engine, monkeypatch, capsys, caplog) -> None:
    monkeypatch.setenv("DIGEST_FROM", f"News <digest@{DOMAIN}>")
    confirmed(engine, "hard@example.com")
    maildir_with(workdir / "box", dsn("hard@example.com", "5.1.1"), auto_reply())
    monkeypatch.setenv("DIGEST_BOUNCE_MAILBOX", f"maildir:{workdir / 'box'}")
    out = run_cli(capsys, "bounces", "process")
    assert out.code == 0, out.err
    assert out.out.startswith(f"2 messages read from maildir:{workdir / 'box'}: 1 hard bounces")
    assert "marked 1 bounced" in out.out and "1 not a report" in out.out
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
    ids = confirmed(engine, "hard@example.com", "angry@example.com")
    user = "bounces@news.example.com"
    client = deliver(
        imap_server,
        user,
        dsn("hard@example.com", "5.1.1"),
        arf("abuse", original_headers(ids["angry@example.com"], "redacted") + "\r\nHi\r\n"),
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
