"""Counted story links: `{DIGEST_BASE_URL}/r/{story token}[/{reader token}]`.

A story token is base64url of varints of the edition id and the pick id, and 9 bytes of
an HMAC-SHA256 over them under a key derived from DIGEST_SECRET_KEY. It names nothing
else: every copy of an edition carries the same link, so the HTML is rewritten once, at
render time. The redirect target is never in the link; it is the story URL of the
edition's stored snapshot, so a link cannot be turned into an open redirect.

With DIGEST_CLICK_STATS=per-subscriber each story link ends in the READER slot, filled
per recipient with "/" and a reader token: the subscriber id and an HMAC over the
edition and that id. One reader token per message serves all its story links (one HMAC
per recipient, whatever the number of stories); a story token and a reader token are
only accepted together when both verify for the same edition.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from digest import varint
from digest.editorial import slots
from digest.settings import Settings

TAG_BYTES = 9
MAX_TOKEN_CHARS = 40
_KEY_LABEL = b"digest/click-link/v1"
_STORY, _READER = b"story", b"reader"
OFF, AGGREGATE, PER_SUBSCRIBER = "off", "aggregate", "per-subscriber"


class BadLink(Exception):
    """Not a link we made (tampered, truncated, another key or another edition)."""


@dataclass(frozen=True)
class Click:
    edition_id: int
    pick_id: int
    subscriber_id: int | None = None  # only from a per-subscriber link


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@lru_cache(maxsize=16)
def _keyed(secret: bytes, purpose: bytes) -> hmac.HMAC:
    """HMAC state with a derived key and the purpose fed in (copied per token)."""
    key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, purpose + b"\0", hashlib.sha256)


def _tag(secret: bytes, purpose: bytes, data: bytes) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(data)
    return mac.digest()[:TAG_BYTES]


def story_token(secret: bytes, edition_id: int, pick_id: int) -> str:
    body = varint.encode(edition_id) + varint.encode(pick_id)
    return _b64(body + _tag(secret, _STORY, body))


def reader_token(secret: bytes, edition_id: int, subscriber_id: int) -> str:
    body = varint.encode(subscriber_id)
    return _b64(body + _tag(secret, _READER, varint.encode(edition_id) + body))


class ReaderSigner:
    """Reader tokens of one edition, the edition already fed into the HMAC state."""

    def __init__(self, secret: bytes, edition_id: int) -> None:
        self._state = _keyed(secret, _READER).copy()
        self._state.update(varint.encode(edition_id))

    def __call__(self, subscriber_id: int) -> str:
        """What fills the READER slot: "/" + token, or "" for no subscriber (test sends)."""
        if subscriber_id <= 0:
            return ""
        body = varint.encode(subscriber_id)
        mac = self._state.copy()
        mac.update(body)
        return "/" + _b64(body + mac.digest()[:TAG_BYTES])


def _decode(token: str) -> bytes:
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise BadLink()
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadLink() from None


def _ints(raw: bytes, count: int) -> tuple[list[int], bytes]:
    values, pos = [], 0
    try:
        for _ in range(count):
            value, pos = varint.decode(raw, pos)
            values.append(value)
    except ValueError:
        raise BadLink() from None
    return values, raw[pos:]


def verify(secret: bytes, token: str, reader: str | None = None) -> Click:
    """The click a link names, or BadLink. Non-canonical spellings are refused too."""
    (edition_id, pick_id), _tag_bytes = _ints(_decode(token), 2)
    if not hmac.compare_digest(story_token(secret, edition_id, pick_id), token):
        raise BadLink()
    if reader is None:
        return Click(edition_id, pick_id)
    (subscriber_id,), _ = _ints(_decode(reader), 1)
    if subscriber_id <= 0 or not hmac.compare_digest(
        reader_token(secret, edition_id, subscriber_id), reader
    ):
        raise BadLink()
    return Click(edition_id, pick_id, subscriber_id)


# -- at render time ------------------------------------------------------------------------


def mode(settings: Settings) -> str:
    """DIGEST_CLICK_STATS as it can be honoured: links cannot be signed without a key."""
    return settings.click_stats if settings.secret_key is not None else OFF


def story_links(
    settings: Settings, edition_id: int, how: str | None = None
) -> Callable[[dict[str, Any]], str] | None:
    """pick -> its counted link, for digest.editorial.render; None when links stay direct."""
    how = how or mode(settings)
    if how == OFF:
        return None
    secret, base = settings.secret(), f"{settings.base_url}/r/"
    tail = slots.READER if how == PER_SUBSCRIBER else ""

    def link(pick: dict[str, Any]) -> str:
        return base + story_token(secret, edition_id, int(pick["id"])) + tail

    return link


def find(body: str, base_url: str) -> list[tuple[str, str | None]]:
    """Every counted link in a rendered part: (story token, reader slot or None)."""
    pattern = (
        re.escape(f"{base_url}/r/")
        + r"([A-Za-z0-9_-]+?)("
        + re.escape(slots.READER)
        + r")?(?![A-Za-z0-9_-])"
    )
    return [(m.group(1), m.group(2)) for m in re.finditer(pattern, body)]
