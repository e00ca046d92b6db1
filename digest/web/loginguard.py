"""Who may try a password now: sign-in throttling that strangers cannot turn on editors.

Every attempt is counted *before* its password is checked, in one transaction that
holds the store's throttle lock, so parallel guesses are all counted (digest.store.
throttle). What is counted, and what it stops:

- per name and client (5 in 15 minutes): the guesser locks out only themself;
- per client, any names (30 in 15 minutes): one address spraying many names;
- per name, from browsers the editor never signed in with (10 in 15 minutes, then one
  attempt per NAME_PACE): a guesser using many addresses gets about 120 tries an hour;
  the editor's right password is still accepted, after at most NAME_PACE;
- per device (5 in 15 minutes): a browser the editor signed in with before carries a
  signed device cookie (180 days) and skips the three limits above, so nobody
  elsewhere can keep the editor out of their own browser (OWASP's "device cookies").

A successful sign-in removes its own attempt from every count and clears its
name+client and device counts. Password checks run at most MAX_CHECKS at a time per
process (argon2id takes 64 MiB and ~0.5 s each; 40 at once used 1 GB); the others wait
their turn, already counted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editors import store as editors
from digest.store import throttle
from digest.store.throttle import Limit
from digest.web.security import sign, unsign

WINDOW = timedelta(minutes=15)
PER_PAIR = Limit("login-pair", 5, WINDOW)
PER_CLIENT = Limit("login-client", 30, WINDOW)
PER_NAME = Limit("login-name", 10, WINDOW)
PER_DEVICE = Limit("login-device", 5, WINDOW)
#: Beyond PER_NAME, one attempt per name (from unknown browsers) this often.
NAME_PACE = timedelta(seconds=30)
#: argon2id verifications running at once in one process.
MAX_CHECKS = 2
DEVICE_COOKIE = "digest_device"
DEVICE_LIFETIME = timedelta(days=180)


@dataclass(frozen=True)
class Device:
    """A browser the editor `editor_id` signed in with (from the signed cookie)."""

    editor_id: int
    nonce: str

    @classmethod
    def from_cookie(cls, secret: bytes, raw: str | None) -> Device | None:
        value = unsign(secret, "device", raw)
        editor, _, nonce = (value or "").partition(":")
        return cls(int(editor), nonce) if editor.isdigit() and nonce else None

    @classmethod
    def new(cls, editor_id: int) -> Device:
        return cls(editor_id, secrets.token_urlsafe(16))

    def cookie(self, secret: bytes) -> str:
        return sign(secret, "device", f"{self.editor_id}:{self.nonce}")


@dataclass
class Admission:
    """The outcome of `admit`: a wait (refused), or the events to forget on success."""

    wait: timedelta | None = None
    events: list[int] = field(default_factory=list)
    trusted: bool = False


def admit(
    session: Session,
    name: str,
    client: str,
    device: Device | None,
    secret: bytes,
    now: datetime | None = None,
) -> Admission:
    """Count this attempt if the limits allow it (one transaction, under the lock)."""
    throttle.lock(session)
    now = now or utcnow()
    key = name.strip().lower()
    if device is not None:
        row = editors.find(session, key)
        if row is not None and row.id == device.editor_id:
            wait = throttle.retry_after(session, PER_DEVICE, device.nonce, secret, now)
            if wait is not None:
                return Admission(wait)
            event = throttle.hit(session, PER_DEVICE, device.nonce, secret, now)
            return Admission(None, [event], trusted=True)
    pair = f"{key}\0{client}"
    wait = (
        throttle.retry_after(session, PER_PAIR, pair, secret, now)
        or throttle.retry_after(session, PER_CLIENT, client, secret, now)
        or _paced(session, key, secret, now)
    )
    if wait is not None:
        return Admission(wait)
    events = [
        throttle.hit(session, PER_PAIR, pair, secret, now),
        throttle.hit(session, PER_CLIENT, client, secret, now),
        throttle.hit(session, PER_NAME, key, secret, now),
    ]
    return Admission(None, events)


def _paced(session: Session, key: str, secret: bytes, now: datetime) -> timedelta | None:
    count, newest = throttle.latest(session, PER_NAME, key, secret, now)
    if count < PER_NAME.count or newest is None or now - newest >= NAME_PACE:
        return None
    return max(NAME_PACE - (now - newest), timedelta(seconds=1))


def succeeded(
    session: Session,
    admission: Admission,
    name: str,
    client: str,
    device: Device | None,
    secret: bytes,
) -> None:
    """The password was right: this attempt no longer counts against anyone."""
    throttle.forget(session, admission.events)
    throttle.clear(session, PER_PAIR, f"{name.strip().lower()}\0{client}", secret)
    if device is not None:
        throttle.clear(session, PER_DEVICE, device.nonce, secret)


__all__ = [
    "DEVICE_COOKIE",
    "DEVICE_LIFETIME",
    "MAX_CHECKS",
    "NAME_PACE",
    "Admission",
    "Device",
    "admit",
    "succeeded",
]
