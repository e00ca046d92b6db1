"""Signed references: proof, inside a bounce or a complaint, that we sent that message.

Every message carries a reference naming the edition (issue id) and the subscriber,
with an HMAC under DIGEST_SECRET_KEY: in the envelope sender (VERP,
`bounces+b-{ref}@news.example.com`, where DSNs are addressed) and in the Message-ID
(`<2026-W48.{ref}.{nonce}@news.example.com>`, which ARF reports and most DSNs quote).
`digest.bounces` acts on a report only when it carries a reference that verifies and
the ledger shows that edition was sent to that subscriber; anyone can write a DSN,
but nobody without the key can name a subscriber in one.

A reference is lower-case hex (mail systems may change the case of a local part) of
varint(issue id) + varint(subscriber id) + an 80-bit MAC: keyed BLAKE2s (RFC 7693) with
a key derived from the secret for this purpose only. 28 characters for a million
subscribers. Making one is on the per-recipient path: the keyed state with the issue
id already fed in is prepared once per edition and copied per recipient (about 1.4 µs;
HMAC-SHA256 in the same shape took 2 µs more, a third of a message's assembly).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache

from digest import varint

MAC_BYTES = 10
VERP_TAG = "b-"
#: A reference as it appears in text (hex, lower or upper case).
PATTERN = r"[0-9A-Fa-f]{24,48}"
_ALONE = re.compile(PATTERN)
_VERP = re.compile(r"\+" + VERP_TAG + "(" + PATTERN + ")@", re.IGNORECASE)
_KEY_LABEL = b"digest/bounce-reference/v1"
_PERSON = b"dgstref1"


@dataclass(frozen=True, slots=True)
class Reference:
    """What a verified reference names."""

    issue_id: int
    subscriber_id: int


@lru_cache(maxsize=16)
def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, head: bytes) -> hashlib.blake2s:
    return hashlib.blake2s(head, key=key, digest_size=MAC_BYTES, person=_PERSON)


class Signer:
    """Makes the references of one edition (one keyed HMAC state, copied per recipient)."""

    __slots__ = ("_head", "_mac")

    def __init__(self, secret: bytes, issue_id: int) -> None:
        if issue_id < 0:
            raise ValueError("issue id must not be negative")
        self._head = varint.encode(issue_id)
        self._mac = _mac(_key(secret), self._head)

    def __call__(self, subscriber_id: int) -> str:
        tail = varint.encode(subscriber_id)
        mac = self._mac.copy()
        mac.update(tail)
        return (self._head + tail + mac.digest()).hex()


def make(secret: bytes, issue_id: int, subscriber_id: int) -> str:
    return Signer(secret, issue_id)(subscriber_id)


def verify(secret: bytes, text: str) -> Reference | None:
    """What a reference names, or None when it is malformed or not signed with our key."""
    if not _ALONE.fullmatch(text):
        return None
    try:
        raw = bytes.fromhex(text)
        issue_id, pos = varint.decode(raw, 0)
        subscriber_id, pos = varint.decode(raw, pos)
    except ValueError:
        return None
    if len(raw) - pos != MAC_BYTES:
        return None
    expected = _mac(_key(secret), raw[:pos]).digest()
    if not hmac.compare_digest(expected, raw[pos:]):
        return None
    if make(secret, issue_id, subscriber_id) != text.lower():
        return None  # a non-canonical spelling (e.g. an over-long varint)
    return Reference(issue_id, subscriber_id)


def verp_address(bounce_address: str, ref: str) -> str:
    """`bounces@d` + ref -> `bounces+b-{ref}@d` (the mailbox must accept +subaddresses)."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{VERP_TAG}{ref}@{domain}"


def candidates(text: str) -> list[str]:
    """Every string in a header value that could be one of our references.

    From VERP addresses (`...+b-{ref}@...`) and from Message-IDs, whose local part is
    split at dots (`<2026-W48.{ref}.{nonce}@...>`). Unverified: see `verify`.
    """
    found = [m.group(1) for m in _VERP.finditer(text)]
    for msgid in re.findall(r"<([^<>@\s]+)@[^<>\s]+>", text):
        found.extend(part for part in msgid.split(".") if _ALONE.fullmatch(part))
    return found


__all__ = ["PATTERN", "Reference", "Signer", "candidates", "make", "verify", "verp_address"]
