"""Read delivery status notifications (RFC 3464) and abuse reports (ARF, RFC 5965).

`parse()` turns one message into a `Notice`: what happened (hard bounce, soft bounce,
complaint, or nothing to act on), the recipient addresses the report names, and every
string in it that may be one of our signed references (digest.delivery.reference):
from the addresses the report was delivered to (our VERP envelope sender, in To,
Delivered-To, X-Original-To...), from an ARF report's Original-Mail-From, and from
the Message-ID and Return-Path of the returned message. Nothing here is trusted:
`digest.bounces.apply` verifies the references against the key and the ledger, and a
report without a valid one changes nobody (docs/deliverability.md).

Which status codes are "hard" (RFC 3463): the address or domain does not exist or is
disabled (5.0.x, 5.1.x, 5.2.0/5.2.1, 5.4.x, 5.5.x). A permanent failure that says
nothing about the address - mailbox full (5.2.2), message too big (5.2.3, 5.3.4),
content or policy blocks (5.6.x, 5.7.x), mail system trouble (5.3.x) - counts as soft,
as do 4.x.x failures. "delayed" reports are warnings, not failures, and are ignored.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from digest.delivery import reference

Kind = Literal["hard", "soft", "complaint", "ignored"]
HARD: Kind = "hard"
SOFT: Kind = "soft"
COMPLAINT: Kind = "complaint"
IGNORED: Kind = "ignored"

#: ARF feedback types that mean "the recipient did not want this" (RFC 5965 section 7.3).
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([245])\d\d\b")
#: Headers of the report itself that name the address it was delivered to (our VERP).
DELIVERY_HEADERS = (
    "To",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "X-Delivered-To",
    "X-Rcpt-To",
)
_SOFT_PERMANENT = {(2, 2), (2, 3), (2, 4)}  # mailbox full, message too long, list expansion
_POLICY = email.policy.default


@dataclass(frozen=True)
class Notice:
    """What one report says, and about whom."""

    kind: Kind
    report: Literal["dsn", "arf"]
    status: str  # enhanced status code ("5.1.1") or ARF feedback type ("abuse")
    addresses: tuple[str, ...] = ()  # recipients the report names (may be empty)
    refs: tuple[str, ...] = ()  # strings that may be our signed references (unverified)
    issue_key: str | None = None  # X-Digest-Issue of the returned message (for people)
    detail: str = ""  # diagnostic text, one line

    def describe(self) -> str:
        issue = f" about issue {self.issue_key!r}" if self.issue_key else ""
        return (
            f"{self.report} {self.kind} {self.status!r} naming {len(self.addresses)} "
            f"address(es){issue}"
        )


def parse(data: bytes) -> Notice | None:
    """The notice in one message, or None when it is neither a DSN nor an ARF report."""
    msg = email.message_from_bytes(data, policy=_POLICY)
    status_part = feedback_part = returned = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and status_part is None:
            status_part = part
        elif ctype == "message/feedback-report" and feedback_part is None:
            feedback_part = part
        elif ctype in ("message/rfc822", "text/rfc822-headers") and returned is None:
            returned = part
    original = _returned_headers(returned)
    refs = _references(msg, status_part if feedback_part is None else feedback_part, original)
    key = None
    if original is not None:
        key = _text(original.get("X-Digest-Issue")).strip()[:40] or None
    if feedback_part is not None:
        return _from_arf(feedback_part, original, refs, key)
    if status_part is not None:
        return _from_dsn(status_part, refs, key)
    return None


def _references(msg: Message, report: Message | None, original: Message | None) -> tuple[str, ...]:
    """Candidate references, in the order they are tried (unverified, duplicates removed)."""
    values = [_text(v) for name in DELIVERY_HEADERS for v in msg.get_all(name) or []]
    if report is not None:  # ARF's envelope sender; Postfix names it in a DSN too
        blocks = _blocks(report)
        for name in ("Original-Mail-From", "X-Postfix-Sender"):
            values += [_text(v) for v in (blocks[0].get_all(name) if blocks else None) or []]
    if original is not None:
        for name in ("Return-Path", "Message-ID"):
            values += [_text(v) for v in original.get_all(name) or []]
    found: list[str] = []
    for value in values:
        for ref in reference.candidates(value[:2000]):
            if ref.lower() not in found:
                found.append(ref.lower())
    return tuple(found[:20])


def _from_dsn(part: Message, refs: tuple[str, ...], key: str | None) -> Notice | None:
    blocks = _blocks(part)
    recipients = [b for b in blocks[1:] if b.get("Action") or b.get("Final-Recipient")]
    if not recipients:
        return None
    kind, status, detail = IGNORED, "", ""
    addresses: list[str] = []
    for block in recipients:
        for name in ("Original-Recipient", "Final-Recipient"):
            addr = _typed_address(block.get(name))
            if addr and addr not in addresses:
                addresses.append(addr)
        k, s, d = _classify(block)
        if not status or _RANK[k] > _RANK[kind]:
            kind, status, detail = k, s, d
    return Notice(kind, "dsn", status, tuple(addresses), refs, key, detail[:300])


_RANK = {IGNORED: 0, SOFT: 1, HARD: 2, COMPLAINT: 3}


def _classify(block: Message) -> tuple[Kind, str, str]:
    """(kind, status code, diagnostic) for one per-recipient block."""
    action = _text(block.get("Action")).strip().lower()
    diagnostic = " ".join(_text(block.get("Diagnostic-Code")).split())
    match = _STATUS.search(_text(block.get("Status"))) or _STATUS.search(diagnostic)
    if action != "failed":  # delayed, delivered, relayed, expanded: nothing failed (yet)
        return IGNORED, match.group(0) if match else action or "?", diagnostic
    if match is None:
        reply = _SMTP_REPLY.search(diagnostic)
        klass = reply.group(1) if reply else "5"
        return (SOFT if klass == "4" else HARD), f"{klass}.0.0", diagnostic
    klass, subject, detail = (int(g) for g in match.groups())
    if klass != 5 or subject in (3, 6, 7) or (subject, detail) in _SOFT_PERMANENT:
        return SOFT, match.group(0), diagnostic
    return HARD, match.group(0), diagnostic


def _from_arf(
    part: Message, original: Message | None, refs: tuple[str, ...], key: str | None
) -> Notice:
    blocks = _blocks(part)
    fields = blocks[0] if blocks else Message()
    ftype = _text(fields.get("Feedback-Type")).strip().lower() or "abuse"
    addresses: list[str] = []
    for value in fields.get_all("Original-Rcpt-To") or []:
        addr = _bare(_text(value))
        if addr and addr not in addresses:
            addresses.append(addr)
    if original is not None:
        for _, addr in getaddresses([_text(v) for v in original.get_all("To") or []]):
            addr = _bare(addr)
            if addr and addr not in addresses:
                addresses.append(addr)
    kind = COMPLAINT if ftype in COMPLAINT_TYPES else IGNORED
    agent = " ".join(_text(fields.get("User-Agent")).split())[:120]
    return Notice(kind, "arf", ftype, tuple(addresses), refs, key, agent)


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    raw = part.get_payload(decode=True) or b""
    text = (
        (raw if isinstance(raw, bytes) else str(raw).encode())
        .decode("utf-8", "replace")
        .replace("\r\n", "\n")
    )
    parser = HeaderParser(policy=_POLICY)
    return [
        parser.parsestr(chunk.strip() + "\n")
        for chunk in re.split(r"\n\s*\n", text)
        if chunk.strip()
    ]


def _returned_headers(part: Message | None) -> Message | None:
    """The headers of the message that bounced (message/rfc822 or text/rfc822-headers)."""
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return HeaderParser(policy=_POLICY).parsestr(text)


def _typed_address(value: object) -> str | None:
    """'rfc822; user@example.com' -> 'user@example.com' (other address types: None)."""
    text = _text(value)
    kind, sep, addr = text.partition(";")
    if sep and kind.strip().lower() != "rfc822":
        return None
    return _bare(addr if sep else text)


def _bare(value: str) -> str | None:
    addr = value.strip().strip("<>").strip()
    return addr.lower() if "@" in addr and " " not in addr else None


def _text(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:  # a header the email package cannot render: treat as absent
        return ""


__all__ = ["COMPLAINT", "HARD", "IGNORED", "SOFT", "Notice", "parse"]
