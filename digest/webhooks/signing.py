"""Signatures of webhook bodies: `Digest-Signature: t=<unix time>,sha256=<hex>`.

The HMAC-SHA256, keyed with the endpoint's secret, covers `"<t>." + raw body`, so a
receiver can check that the body came from us unchanged, and refuse an old one replayed
(`t` more than a few minutes away from its clock). docs/webhooks.md has the recipe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Digest-Signature"
SECRET_PREFIX = "whsec_"
#: How far from the receiver's clock a signature's time may be (seconds).
TOLERANCE = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return mac.hexdigest()


def header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Digest-Signature header value for `body`, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},sha256={signature(secret, t, body)}"


def verify(
    secret: str, value: str, body: bytes, *, tolerance: int = TOLERANCE, now: float | None = None
) -> bool:
    """Whether a Digest-Signature header value signs `body` with `secret`, recently."""
    fields = dict(part.strip().partition("=")[::2] for part in value.split(","))
    stamp, given = fields.get("t", ""), fields.get("sha256", "")
    if not stamp.isdigit() or not given:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(stamp), body), given)
