"""Operator alerts: a short plain-text email to DIGEST_ALERT_EMAIL.

Sent through the same transport as the digest (SMTP, or the outbox folder), so an
operator sees a missed or blocked Friday send without reading logs. An alert never
raises: if it cannot be delivered, that is logged and the scheduler carries on.
Every value that reaches a header is stripped of line breaks, and the body is
quoted-printable with no line starting with a dot, as transports require.
"""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from digest.clock import utcnow
from digest.delivery import qp
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outbound, Outcome
from digest.errors import DigestError
from digest.settings import Settings
from subscribers.store import normalise_email

log = logging.getLogger("digest.alerts")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MAX_SUBJECT = 150


def header_safe(value: str, limit: int = MAX_SUBJECT) -> str:
    """One line of text: control characters (CR, LF, NUL, tabs) become single spaces."""
    value = " ".join(_CONTROL.sub(" ", value).split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def build_alert(settings: Settings, recipient: str, subject: str, body: str) -> bytes:
    """The alert as SMTP-ready bytes (CRLF, no line starting with a dot)."""
    head = EmailMessage(policy=SMTP)
    head["From"] = settings.from_
    head["To"] = recipient
    head["Subject"] = f"[{header_safe(settings.list_name, 60)}] {header_safe(subject)}"
    head["Date"] = format_datetime(utcnow())
    head["Message-ID"] = make_msgid("alert", domain=settings.sender_domain)
    head["Auto-Submitted"] = "auto-generated"
    head["X-Auto-Response-Suppress"] = "All"
    head["MIME-Version"] = "1.0"
    head["Content-Type"] = 'text/plain; charset="utf-8"'
    head["Content-Transfer-Encoding"] = "quoted-printable"
    headers = head.as_bytes(policy=SMTP).rstrip(b"\r\n") + b"\r\n\r\n"
    text = (
        body.rstrip() + "\n\n-- \nSent by `digest schedule`. This address is DIGEST_ALERT_EMAIL.\n"
    )
    return headers + qp.encode(text.encode("utf-8"))


async def send_alert(settings: Settings, subject: str, body: str) -> bool:
    """Email the operator if DIGEST_ALERT_EMAIL is set; True when it was accepted."""
    if not settings.alert_email:
        return False
    try:
        recipient, _key = normalise_email(settings.alert_email)
    except DigestError as exc:
        log.error("alert not sent: DIGEST_ALERT_EMAIL: %s", exc)
        return False
    data = build_alert(settings, recipient, subject, body)
    message = Outbound(settings.envelope_from, recipient, data, smtputf8=not recipient.isascii())
    try:
        async with make_transport(settings, concurrency=1) as transport:
            result = await transport.send(message)
    except DigestError as exc:
        log.error("alert not sent to %s: %s", recipient, exc)
        return False
    except OSError as exc:  # pragma: no cover - transports map these to TransportError
        log.error("alert not sent to %s: %s", recipient, exc)
        return False
    if result.outcome is not Outcome.SENT:
        log.error("alert not sent to %s: %s %s", recipient, result.code or "", result.reply or "")
        return False
    log.info("alert sent to %s: %s", recipient, header_safe(subject))
    return True
