"""Editors: who may use the desk, with argon2id password hashes (argon2-cffi).

All editor SQL lives here. Checking a password for an unknown name still runs one
argon2 verification, so the time a failed sign-in takes does not reveal which names
exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editors.models import Editor, EditorSession
from digest.errors import InputError, NotFound, StateError
from subscribers.addresses import normalise_email

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


@dataclass(frozen=True)
class EditorInfo:
    """What the desk needs to know about the signed-in editor (no hash)."""

    id: int
    name: str
    email: str


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    """argon2id with the library's RFC 9106 "low memory" defaults (64 MiB, t=3)."""
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hasher().hash("digest: no such editor, compare anyway")


def check_name(name: str) -> str:
    """1-64 characters: letters, digits and . _ @ + - (names appear in logs and URLs)."""
    name = name.strip()
    if not NAME_RE.match(name):
        raise InputError(
            "must be 1-64 letters, digits or . _ @ + -, starting with a letter or digit",
            field="NAME",
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"must be at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise InputError(f"must be at most {MAX_PASSWORD} characters", field="password")
    return password


def _email_for(name: str, email: str | None) -> str:
    """The address for "Send a test to me": given, or the name when it is an address."""
    if email:
        return normalise_email(email)[0]
    if "@" in name:
        try:
            return normalise_email(name)[0]
        except InputError:
            return ""
    return ""


def find(session: Session, name: str) -> Editor | None:
    return session.scalar(select(Editor).where(Editor.name_key == name.strip().lower()))


def add(session: Session, name: str, password: str, email: str | None = None) -> Editor:
    """Create an editor; an existing name is refused (use `set_password`)."""
    name = check_name(name)
    check_password(password)
    if find(session, name) is not None:
        raise StateError(
            f"editor {name!r} already exists; change the password with "
            f"`digest editors password {name}`"
        )
    row = Editor(
        name=name,
        name_key=name.lower(),
        email=_email_for(name, email),
        password_hash=hasher().hash(password),
    )
    session.add(row)
    session.flush()
    return row


def set_password(session: Session, name: str, password: str) -> Editor:
    """New password; every open session of that editor is signed out."""
    row = get(session, name)
    row.password_hash = hasher().hash(check_password(password))
    session.execute(delete(EditorSession).where(EditorSession.editor_id == row.id))
    session.flush()
    return row


def get(session: Session, name: str) -> Editor:
    row = find(session, name)
    if row is None:
        raise NotFound(f"no editor {name.strip()!r} (see `digest editors list`)")
    return row


def list_all(session: Session) -> list[Editor]:
    return list(session.scalars(select(Editor).order_by(Editor.name_key)))


def remove(session: Session, name: str) -> Editor:
    """Delete an editor and sign out all their sessions at once."""
    row = get(session, name)
    session.execute(delete(EditorSession).where(EditorSession.editor_id == row.id))
    session.delete(row)
    session.flush()
    return row


def authenticate(session: Session, name: str, password: str) -> EditorInfo | None:
    """The editor if name and password match; None otherwise (same cost either way)."""
    row = find(session, name) if NAME_RE.match(name.strip()) else None
    stored = row.password_hash if row is not None else _dummy_hash()
    try:
        hasher().verify(stored, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if hasher().check_needs_rehash(row.password_hash):
        row.password_hash = hasher().hash(password)
    row.last_login_at = utcnow()
    session.flush()
    return info(row)


def info(row: Editor) -> EditorInfo:
    return EditorInfo(row.id, row.name, row.email)
