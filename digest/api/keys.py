"""API keys: created once, shown once, stored as a SHA-256 hash, revoked by name.

A key is `dgk_` followed by 43 characters of `secrets.token_urlsafe(32)` (256 random bits),
so a plain SHA-256 cannot be reversed or guessed, and needs no key of ours (rotating
DIGEST_SECRET_KEY leaves API keys working). A request's key is looked up by its hash and
the stored hash compared in constant time. A key carries scopes (picks, subscribers,
stats) and optionally one newsletter it is limited to.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from digest.clock import utcnow
from digest.editorial.models import Newsletter  # noqa: F401 - keys may refer to a newsletter
from digest.errors import InputError, NotFound
from digest.store.base import Base, UTCDateTime

PREFIX = "dgk_"
SCOPES = ("picks", "subscribers", "stats")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$")
_KEY = re.compile(r"^dgk_[A-Za-z0-9_-]{43}$")
#: last_used_at is written at most this often per key (it costs a write).
USED_EVERY = timedelta(minutes=1)


class ApiKey(Base):
    """One API key (its hash); revoked keys stay listed with the time of revocation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    #: The first characters of the key, so an operator can tell keys apart in `list`.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    newsletter_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # A name names one live key; a revoked key's name may be used again.
        Index(
            "uq_api_keys_live_name",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
        ),
    )


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id, name, scopes and newsletter (None: every one)."""

    key_id: int
    name: str
    scopes: frozenset[str]
    newsletter_id: int | None


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode("ascii", "replace")).hexdigest()


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise InputError(
            "must be 1-80 letters, digits, spaces or . _ - (e.g. cms or crm-sync)", field="NAME"
        )
    return name


def check_scopes(scopes: list[str] | None) -> list[str]:
    """The scopes asked for (every scope when none are named), each checked."""
    wanted = [s.strip().lower() for s in (scopes or SCOPES)]
    for scope in wanted:
        if scope not in SCOPES:
            raise InputError(f"unknown scope {scope!r}; scopes: {', '.join(SCOPES)}", field="scope")
    return sorted(set(wanted), key=SCOPES.index)


def create(
    session: Session, name: str, scopes: list[str] | None = None, newsletter_id: int | None = None
) -> tuple[ApiKey, str]:
    """A new key: (its row, the key itself - shown once, never stored)."""
    name = check_name(name)
    if live(session, name) is not None:
        raise InputError(f"a key named {name!r} exists; revoke it first or choose another name")
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=key[:12],
        key_hash=digest_of(key),
        scopes=check_scopes(scopes),
        newsletter_id=newsletter_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, key


def live(session: Session, name: str) -> ApiKey | None:
    return session.scalar(
        select(ApiKey).where(ApiKey.name == name.strip(), ApiKey.revoked_at.is_(None))
    )


def all_(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.id)))


def revoke(session: Session, name: str) -> ApiKey:
    row = live(session, name)
    if row is None:
        raise NotFound(f"no live API key named {name.strip()[:80]!r} (see `digest api-keys list`)")
    row.revoked_at = utcnow()
    session.flush()
    return row


def authenticate(session: Session, key: str) -> Caller | None:
    """The caller a presented key belongs to, or None (unknown, malformed or revoked)."""
    if not _KEY.match(key):
        return None
    wanted = digest_of(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == wanted))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, wanted):  # pragma: no cover - found by it
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= USED_EVERY:
        row.last_used_at = now
    return Caller(row.id, row.name, frozenset(row.scopes or ()), row.newsletter_id)
