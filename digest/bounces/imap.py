"""An IMAP mailbox as a source of bounce messages.

`imaps://user:password@host[:993]/INBOX` (TLS from the start) or
`imap://user:password@host[:143]/INBOX` (STARTTLS is required, never plain text).
Unseen messages are fetched with BODY.PEEK (which does not mark them), and marked
\\Seen only after they were processed; unreadable ones also get \\Flagged. The
password is never logged or shown: errors name the user and host only.
"""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator
from typing import Self
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from digest.errors import SettingsError, TransportError

TIMEOUT = 30.0


class ImapSource:
    """Reads unseen messages from one IMAP folder and flags them when processed."""

    def __init__(self, url: SecretStr, *, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url.get_secret_value())
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise SettingsError(
                "DIGEST_BOUNCE_MAILBOX: an IMAP mailbox looks like imaps://user:password@host/INBOX"
            )
        self.tls = parts.scheme == "imaps"
        self.host = parts.hostname
        try:
            self.port = parts.port or (993 if self.tls else 143)
        except ValueError:
            raise SettingsError("DIGEST_BOUNCE_MAILBOX: the port is not a number") from None
        self.user = unquote(parts.username)
        self._password = SecretStr(unquote(parts.password or ""))
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._conn: imaplib.IMAP4 | None = None

    def describe(self) -> str:
        return (
            f"{'imaps' if self.tls else 'imap'}://{self.user}@{self.host}:{self.port}/{self.folder}"
        )

    def __enter__(self) -> Self:
        try:
            if self.tls:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=self.ssl_context, timeout=TIMEOUT
                )
            else:
                conn = imaplib.IMAP4(self.host, self.port, timeout=TIMEOUT)
                conn.starttls(ssl_context=self.ssl_context)
            conn.login(self.user, self._password.get_secret_value())
            typ, _ = conn.select(_quote(self.folder))
            if typ != "OK":
                raise imaplib.IMAP4.error(f"cannot open folder {self.folder!r}")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise TransportError(f"bounce mailbox {self.describe()}: {_reason(exc)}") from None
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(uid, message bytes) for every unseen message."""
        conn = self._require()
        typ, data = conn.uid("SEARCH", None, "UNSEEN")  # type: ignore[arg-type]
        if typ != "OK":
            raise TransportError(f"bounce mailbox {self.describe()}: SEARCH failed")
        for uid in (data[0] or b"").split():
            typ, fetched = conn.uid("FETCH", uid.decode("ascii"), "(BODY.PEEK[])")
            body = next((p[1] for p in fetched if isinstance(p, tuple)), None)
            if typ == "OK" and isinstance(body, bytes):
                yield uid, body

    def done(self, uid: bytes, *, flag: bool = False) -> None:
        flags = r"(\Seen \Flagged)" if flag else r"(\Seen)"
        self._require().uid("STORE", uid.decode("ascii"), "+FLAGS.SILENT", flags)

    def _require(self) -> imaplib.IMAP4:
        if self._conn is None:
            raise RuntimeError("use the source as a context manager")
        return self._conn


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:200] or type(exc).__name__
