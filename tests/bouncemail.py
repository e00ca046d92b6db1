"""Bounce and complaint mail for tests, in the shapes real systems send.

`send_issue` delivers a real issue to the outbox and returns, per address, the envelope
sender (our VERP address) and the message as sent: reports about those carry our
signed references the way real ones do. The builders wrap them as:

- Postfix (RFC 3464): To and Delivered-To the envelope sender, `X-Postfix-Sender` in the
  per-message fields, the returned headers as text/rfc822-headers.
- Gmail (mailer-daemon@googlemail.com): "Delivery Status Notification (Failure)",
  X-Failed-Recipients, a multipart/related human part, the original as message/rfc822
  cut after its headers ("----- Message truncated -----").
- Microsoft (Outlook.com / Exchange Online NDR): delivery-status with Reporting-MTA and
  Received-From-MTA, the whole original as message/rfc822.
- Yahoo CFL (ARF, RFC 5965): Feedback-Type abuse, User-Agent Yahoo!-Mail-Feedback/2.0,
  Original-Mail-From (our envelope sender), Original-Rcpt-To, the original message.
- Microsoft JMRP (ARF since 2025): the original's headers only, body removed, the
  recipient redacted, no Original-Mail-From.

`dsn()` and `arf()` build the hand-written kind anyone can send (forgeries, or tests
of the parser alone).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.delivery import campaign
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition
from digest.editorial.picks import add_pick, validate_pick
from digest.settings import Settings
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.model import Subscriber
from tests.samples import sample_pick

DOMAIN = "news.example.com"


@dataclass(frozen=True)
class Sent:
    """One message as it left: its envelope sender and its bytes (CRLF)."""

    subscriber_id: int
    email: str
    envelope: str
    data: bytes

    @property
    def headers(self) -> str:
        """The message's header block, as DSNs return it (text/rfc822-headers)."""
        return self.data.split(b"\r\n\r\n", 1)[0].decode() + "\r\n"

    def header(self, name: str) -> str:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        return str(msg[name])


def send_issue(
    engine: Engine, settings: Settings, *emails: str, key: str | None = None
) -> tuple[Edition, dict[str, Sent]]:
    """Subscribe `emails` to the default newsletter (unless known), send its next edition
    with a new pick to the outbox, and return what was sent, by address (those no longer
    subscribed get nothing)."""
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        for e in emails:
            known = subscriptions.find(s, nl.id, e)
            if known is None or known.subscription is None:
                subscriptions.add(s, nl.id, e, e.split("@")[0].title(), status="confirmed")
        edition = editions.open_edition(s, settings, nl)
        pick = {k: v for k, v in sample_pick(len(emails)).items() if k not in ("id", "position")}
        add_pick(s, edition.id, validate_pick(pick, settings.sections))
    issue = campaign.prepare_send(engine, settings, None, key)
    outbox = Path(settings.outbox_dir) / "new"
    before = set(outbox.iterdir()) if outbox.exists() else set()

    async def go() -> None:
        async with make_transport(settings) as transport:
            await Sender(engine, settings, issue, transport).run()

    asyncio.run(go())
    with session_scope(engine) as s:
        ids = {row.email: row.id for row in s.scalars(select(Subscriber))}
    sent: dict[str, Sent] = {}
    for path in set(outbox.iterdir()) - before:
        raw = path.read_bytes().replace(b"\n", b"\r\n")
        return_path, delivered, data = raw.split(b"\r\n", 2)
        rcpt = delivered.decode().removeprefix("Delivered-To: ")
        envelope = return_path.decode().removeprefix("Return-Path: <").rstrip(">")
        sent[rcpt] = Sent(ids[rcpt], rcpt, envelope, data)
    return issue, sent


# -- what real systems send ---------------------------------------------------------


def _multipart(head: str, kind: str, boundary: str, parts: list[str]) -> bytes:
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return (
        head
        + "MIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/report; report-type={kind};\r\n boundary="{boundary}"\r\n'
        + "\r\nThis is a MIME-encapsulated message.\r\n\r\n"
        + body
    ).encode()


def postfix_dsn(sent: Sent, status: str = "5.1.1", *, action: str = "failed") -> bytes:
    head = (
        f"Return-Path: <>\r\nDelivered-To: {sent.envelope}\r\nX-Original-To: {sent.envelope}\r\n"
        "Received: by mx.example.org (Postfix) id 4Q1XYZ; Fri, 27 Nov 2026 06:00:03 +0000\r\n"
        "Date: Fri, 27 Nov 2026 06:00:03 +0000 (UTC)\r\n"
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nTo: {sent.envelope}\r\n"
        "Auto-Submitted: auto-replied\r\nMessage-Id: <20261127060003.4Q1XYZ@mx.example.org>\r\n"
    )
    fields = (
        "Reporting-MTA: dns; mx.example.org\r\nX-Postfix-Queue-ID: 4Q1XYZ\r\n"
        f"X-Postfix-Sender: rfc822; {sent.envelope}\r\n"
        "Arrival-Date: Fri, 27 Nov 2026 06:00:01 +0000 (UTC)\r\n\r\n"
        f"Final-Recipient: rfc822; {sent.email}\r\nOriginal-Recipient: rfc822;{sent.email}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mail.example.com\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{sent.email}>: Recipient address rejected\r\n"
    )
    return _multipart(
        head,
        "delivery-status",
        "4Q1XYZ.1764223203/mx.example.org",
        [
            "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            "\r\nThis is the mail system at host mx.example.org.\r\n\r\nI'm sorry to have to "
            "inform you that your message could not\r\nbe delivered to one or more recipients.\r\n",
            "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
            + fields,
            "Content-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n" + sent.headers,
        ],
    )


def gmail_dsn(sent: Sent, status: str = "5.1.1") -> bytes:
    head = (
        f"Delivered-To: {sent.envelope}\r\nReturn-Path: <>\r\n"
        "Received: from mail-sor-f69.google.com (mail-sor-f69.google.com. [209.85.220.69])\r\n"
        f" by mx.{DOMAIN} with ESMTPS; Fri, 27 Nov 2026 06:00:04 +0000\r\n"
        f"To: {sent.envelope}\r\nAuto-Submitted: auto-replied\r\n"
        "Message-ID: <6567a1f4.050a0220.58de0.183e.GMR@mx.google.com>\r\n"
        "Date: Thu, 26 Nov 2026 22:00:04 -0800 (PST)\r\n"
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        f"Subject: Delivery Status Notification (Failure)\r\nX-Failed-Recipients: {sent.email}\r\n"
    )
    human = (
        'Content-Type: multipart/related; boundary="rel"\r\n\r\n--rel\r\n'
        'Content-Type: text/plain; charset="UTF-8"\r\n\r\n** Address not found **\r\n\r\n'
        f"Your message wasn't delivered to {sent.email} because the address couldn't be "
        "found, or is unable to receive mail.\r\n\r\nThe response was:\r\n\r\n"
        f"550 {status} The email account that you tried to reach does not exist.\r\n--rel--\r\n"
    )
    fields = (
        "Reporting-MTA: dns; googlemail.com\r\n"
        "Received-From-MTA: dns; mail.news.example.com\r\n"
        "Arrival-Date: Thu, 26 Nov 2026 22:00:02 -0800 (PST)\r\n\r\n"
        f"Final-Recipient: rfc822; {sent.email}\r\nAction: failed\r\nStatus: {status}\r\n"
        "Remote-MTA: dns; gmail-smtp-in.l.google.com. (2a00:1450:400c:c0b::1a, the server "
        "for the domain gmail.com.)\r\n"
        f"Diagnostic-Code: smtp; 550-{status} The email account that you tried to reach does "
        "not exist.\r\nLast-Attempt-Date: Thu, 26 Nov 2026 22:00:04 -0800 (PST)\r\n"
    )
    original = sent.headers + "\r\n----- Message truncated -----\r\n"
    return _multipart(
        head,
        "delivery-status",
        "000000000000ca2d9205f5a5444d",
        [
            human,
            "Content-Type: message/delivery-status\r\n\r\n" + fields,
            "Content-Type: message/rfc822\r\n\r\n" + original,
        ],
    )


def outlook_dsn(sent: Sent, status: str = "5.2.2") -> bytes:
    head = (
        f"Delivered-To: {sent.envelope}\r\nReturn-Path: <>\r\n"
        "From: postmaster@outlook.com\r\n"
        f"To: {sent.envelope}\r\nDate: Fri, 27 Nov 2026 06:00:05 +0000\r\n"
        "Message-ID: <a0xtAEHLB0000d09e@AM6PR04MB5432.eurprd04.prod.outlook.com>\r\n"
        "Subject: Delivery Status Notification (Failure)\r\n"
        "X-MS-Exchange-Message-Is-Ndr:\r\n"
    )
    fields = (
        "Reporting-MTA: dns;AM6PR04MB5432.eurprd04.prod.outlook.com\r\n"
        "Received-From-MTA: dns;mail.news.example.com\r\n"
        "Arrival-Date: Fri, 27 Nov 2026 06:00:01 +0000\r\n\r\n"
        f"Final-Recipient: rfc822;{sent.email}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp;550 {status} <{sent.email}>... Mailbox Full\r\n"
    )
    return _multipart(
        head,
        "delivery-status",
        "9B095B5ADSN=_01D00052BDF896BA0006275E",
        [
            "Content-Type: text/plain; charset=us-ascii\r\n\r\nThis is an automatically "
            "generated Delivery Status Notification.\r\n\r\nDelivery to the following "
            f"recipients failed.\r\n\r\n       {sent.email}\r\n",
            "Content-Type: message/delivery-status\r\n\r\n" + fields,
            "Content-Type: message/rfc822\r\n\r\n" + sent.data.decode(),
        ],
    )


def _arf(head: str, fields: str, returned: str) -> bytes:
    return _multipart(
        head,
        "feedback-report",
        "----=_Part_4715_1352829770280",
        [
            "Content-Type: text/plain; charset=us-ascii\r\n\r\nThis is an email abuse report "
            "for an email message received from IP 192.0.2.25 on Fri, 27 Nov 2026.\r\n",
            "Content-Type: message/feedback-report\r\n\r\n" + fields,
            returned,
        ],
    )


def yahoo_arf(sent: Sent) -> bytes:
    head = (
        f"Delivered-To: fbl@{DOMAIN}\r\nFrom: Yahoo! Mail AntiSpam Feedback "
        "<feedback@arf.mail.yahoo.com>\r\n"
        f"To: fbl@{DOMAIN}\r\nSubject: FW: {sent.header('Subject')}\r\n"
        "Date: Fri, 27 Nov 2026 07:12:00 +0000\r\n"
    )
    fields = (
        "Feedback-Type: abuse\r\nUser-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 0.1\r\n"
        f"Original-Mail-From: <{sent.envelope}>\r\nOriginal-Rcpt-To: {sent.email}\r\n"
        f"Received-Date: Fri, 27 Nov 2026 06:00:02 +0000\r\nReported-Domain: {DOMAIN}\r\n"
        f"Authentication-Results: mta1126.mail.ir2.yahoo.com from={DOMAIN}; dkim=pass (ok)\r\n"
    )
    returned = "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    return _arf(head, fields, returned + sent.data.decode())


def jmrp_arf(sent: Sent) -> bytes:
    """Microsoft JMRP as ARF: headers only, recipient and envelope sender redacted."""
    head = (
        f"Delivered-To: fbl@{DOMAIN}\r\nFrom: staff@hotmail.com\r\nTo: fbl@{DOMAIN}\r\n"
        "Subject: complaint about message from 192.0.2.25\r\n"
        "Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
    )
    fields = (
        "Feedback-Type: abuse\r\nUser-Agent: Microsoft JMRP\r\nVersion: 1\r\n"
        "Source-IP: 192.0.2.25\r\nArrival-Date: Fri, 27 Nov 2026 06:00:02 +0000\r\n"
    )
    redacted = sent.headers.replace(sent.email, "redacted@hotmail.com").replace(
        sent.envelope, "redacted@redacted"
    )
    return _arf(head, fields, "Content-Type: text/rfc822-headers\r\n\r\n" + redacted)


# -- hand-written reports (anyone can send these) ------------------------------------


def original_headers(sid: int, to: str, key: str = "2026-W48", domain: str = DOMAIN) -> str:
    """Headers shaped like a digest message, with a Message-ID someone made up."""
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
    to: str = f"digest@{DOMAIN}",
) -> bytes:
    """A delivery status notification in the shape Postfix sends, addressed to `to`."""
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
    head = (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nDate: Fri, 27 Nov 2026 06:00:03 +0000\r\n"
    )
    return _multipart(head, "delivery-status", "=_delivery-status_boundary", parts)


def arf(
    feedback_type: str,
    original: str,
    rcpt: str | None = None,
    mail_from: str = f"bounces@{DOMAIN}",
) -> bytes:
    """An abuse report as mailbox providers send them (recipient often redacted)."""
    fields = (
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{mail_from}>\r\n"
        "Arrival-Date: Fri, 27 Nov 2026 06:00:02 +0000\r\nSource-IP: 192.0.2.1\r\n"
    )
    if rcpt:
        fields += f"Original-Rcpt-To: <{rcpt}>\r\n"
    head = (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        f"To: digest@{DOMAIN}\r\nSubject: Complaint about message\r\n"
        "Date: Fri, 27 Nov 2026 06:00:03 +0000\r\n"
    )
    returned = "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + original
    return _arf(head, fields, returned)


def auto_reply() -> bytes:
    return (
        f"From: Anna <anna@example.com>\r\nTo: digest@{DOMAIN}\r\n"
        "Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\n"
        "I am away until Monday.\r\n"
    ).encode()
