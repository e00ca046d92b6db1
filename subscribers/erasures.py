"""The erasure list: keyed hashes of addresses erased at their owner's request.

An erased address leaves no trace but this: HMAC-SHA256 of its lower-cased form under a
key derived from DIGEST_SECRET_KEY, so the list cannot be read back into addresses, and a
later import, sign-up or API call for the same address is recognised and refused.

Each row records which secret key made it (`key_id`, a fingerprint): after a change of
DIGEST_SECRET_KEY the old rows can no longer be matched, and `stale` counts them so the
operator is told (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from digest.clock import utcnow
from digest.errors import SettingsError, StateError
from digest.store.base import Base, UTCDateTime

_LABEL = b"digest/erasure/v1"


class Erasure(Base):
    """One erased address, as a keyed hash."""

    __tablename__ = "erasures"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who asked: "cli", "api:KEY NAME" (no personal data).
    source: Mapped[str] = mapped_column(Text, default="")


class Erased(StateError):
    """The address was erased at its owner's request and may not be added again."""

    def __init__(self) -> None:
        super().__init__("this address was erased at its owner's request and cannot be added again")


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


def key_id(secret: bytes) -> str:
    return hmac.new(_key(secret), b"key-id", hashlib.sha256).hexdigest()[:16]


def hash_of(secret: bytes, email_key: str) -> str:
    """The keyed hash of a lower-cased address (subscribers.addresses.normalise_email's key)."""
    return hmac.new(_key(secret), email_key.encode("utf-8"), hashlib.sha256).hexdigest()


def record(session: Session, secret: bytes, email_key: str, source: str) -> bool:
    """Add the address to the list; False if it was there already."""
    digest = hash_of(secret, email_key)
    if session.get(Erasure, digest) is not None:
        return False
    session.add(Erasure(key_hash=digest, key_id=key_id(secret), erased_at=utcnow(), source=source))
    session.flush()
    return True


def any_(session: Session) -> bool:
    return session.scalar(select(Erasure.key_hash).limit(1)) is not None


def erased_keys(session: Session, secret: bytes | None, email_keys: Iterable[str]) -> set[str]:
    """Those of `email_keys` that were erased. Without a secret the list cannot be
    checked: that is an error once it has entries (fail closed), fine while it is empty."""
    keys = list(email_keys)
    if not keys or not any_(session):
        return set()
    if secret is None:
        raise SettingsError(
            "DIGEST_SECRET_KEY: not set; it is needed to check addresses against the erasure list"
        )
    hashes = {hash_of(secret, k): k for k in keys}
    found = session.scalars(select(Erasure.key_hash).where(Erasure.key_hash.in_(list(hashes))))
    return {hashes[h] for h in found}


def check(session: Session, secret: bytes | None, email_key: str) -> None:
    """Raise Erased for an erased address."""
    if erased_keys(session, secret, [email_key]):
        raise Erased()


def stale(session: Session, secret: bytes) -> int:
    """Entries made under another DIGEST_SECRET_KEY (they can no longer be matched)."""
    return int(
        session.scalar(
            select(func.count()).select_from(Erasure).where(Erasure.key_id != key_id(secret))
        )
        or 0
    )


def forget(session: Session, secret: bytes, email_key: str) -> bool:
    """Take an address off the list (its owner asked to be able to sign up again)."""
    row = session.get(Erasure, hash_of(secret, email_key))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
