"""Signed, short, URL-safe tokens for confirm and unsubscribe links.

A token is base64url (no padding) of: a varint of subscriber_id*2 + has_time, the
varint issue time when present, and the first 16 bytes of an HMAC-SHA256 over
purpose, list id, subscriber id (and issue time). No database lookup is needed to
check one, and a token for another purpose or list never verifies.

Making a token is on the per-recipient send path, so the keyed HMAC state for a
(secret, purpose, list) is built once and `.copy()`-ed per call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from functools import lru_cache

from digest import varint
from digest.errors import InputError

UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
#: The preferences page: every newsletter of the installation, so no single list id.
PREFERENCES = "preferences"
EVERY_LIST = "*"
#: Purposes whose tokens carry their issue time and expire.
TIMED_PURPOSES = {CONFIRM: 7 * 24 * 3600}
MAC_BYTES = 16
MAX_TOKEN_CHARS = 64
CLOCK_SKEW = 300
_KEY_LABEL = b"digest/subscriber-token/v1"


class BadToken(InputError):
    """The link was tampered with, is for something else, or has expired."""

    def __init__(self, message: str = "invalid or expired link") -> None:
        super().__init__(message)


@lru_cache(maxsize=64)
def _keyed(secret: bytes, purpose: str, list_id: str) -> hmac.HMAC:
    """HMAC state with a derived key and the purpose and list already fed in."""
    if not purpose or "\0" in purpose or "\0" in list_id:
        raise ValueError("purpose and list id must be non-empty and free of NUL")
    key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(f"{purpose}\0{list_id}\0".encode())
    return mac


def _mac(
    secret: bytes, purpose: str, list_id: str, subscriber_id: int, issued: int | None
) -> bytes:
    mac = _keyed(secret, purpose, list_id).copy()
    text = f"{subscriber_id}" if issued is None else f"{subscriber_id}\0{issued}"
    mac.update(text.encode("ascii"))
    return mac.digest()[:MAC_BYTES]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return varint.decode(data, pos)
    except ValueError:
        raise BadToken() from None


def make_token(
    secret: bytes,
    purpose: str,
    subscriber_id: int,
    list_id: str,
    *,
    issued_at: int | None = None,
) -> str:
    """A token for `purpose`; timed purposes (confirm) get the current time if none is given."""
    if subscriber_id < 0:
        raise ValueError("subscriber_id must not be negative")
    if issued_at is None and purpose in TIMED_PURPOSES:
        issued_at = int(time.time())
    body = varint.encode(subscriber_id * 2 + (issued_at is not None))
    if issued_at is not None:
        body += varint.encode(issued_at)
    raw = body + _mac(secret, purpose, list_id, subscriber_id, issued_at)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verify_any(
    secret: bytes, purpose: str, token: str, list_ids: dict[str, int]
) -> tuple[int, int]:
    """(subscriber id, the value of the list id it verifies for) for a token that may be
    for any of `list_ids` (e.g. one unsubscribe URL shape for every newsletter), or BadToken.

    Each try is one HMAC; an installation has a handful of newsletters.
    """
    for list_id, value in list_ids.items():
        try:
            return verify_token(secret, purpose, token, list_id), value
        except BadToken:
            continue
    raise BadToken()


def verify_token(
    secret: bytes, purpose: str, token: str, list_id: str, *, max_age: int | None = None
) -> int:
    """The subscriber id in a valid token, or BadToken.

    A timed purpose defaults to its own maximum age (7 days for confirm); passing
    `max_age` for a token without an issue time fails.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise BadToken()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadToken() from None
    head, pos = _read_varint(raw, 0)
    subscriber_id, timed = divmod(head, 2)
    issued = None
    if timed:
        issued, pos = _read_varint(raw, pos)
    if len(raw) - pos != MAC_BYTES:
        raise BadToken()
    expected = _mac(secret, purpose, list_id, subscriber_id, issued)
    if not hmac.compare_digest(expected, raw[pos:]):
        raise BadToken()
    if max_age is None:
        max_age = TIMED_PURPOSES.get(purpose)
    if max_age is not None:
        now = time.time()
        if issued is None or now - issued > max_age or issued - now > CLOCK_SKEW:
            raise BadToken()
    if make_token(secret, purpose, subscriber_id, list_id, issued_at=issued) != token:
        raise BadToken()  # a non-canonical spelling of a valid token
    return subscriber_id
