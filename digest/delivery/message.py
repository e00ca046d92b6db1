"""Per-recipient messages from bytes prepared once per issue.

`MessageTemplate` encodes the whole MIME message once (headers, both parts, QP),
leaving gaps where the personal values go: the To header, the Message-ID, the
List-Unsubscribe URLs, the greeting and the unsubscribe link in both parts, and (only
with DIGEST_CLICK_STATS=per-subscriber) the reader's part of every story link.
`build()` only encodes those few values and joins bytes, which is what keeps
assembly at microseconds instead of the ~11 ms an EmailMessage costs.

Each message carries a signed reference to its edition and subscriber
(digest.delivery.reference) in its Message-ID and, from `envelope()`, in its VERP
envelope sender, so a bounce or complaint about it can be told from a forgery.

The output is SMTP-ready: CRLF line endings and no line starting with a dot.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import secrets
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.header import Header
from email.utils import format_datetime
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING

from digest.clock import utcnow
from digest.delivery import qp, reference
from digest.delivery.transports.base import (
    Outbound,
    Outcome,
    Result,
    SMTPReady,
    is_smtp_ready,
)
from digest.editorial import i18n, slots
from digest.editorial.render import RenderedIssue
from digest.headertext import BIDI_CONTROLS
from digest.settings import Settings
from digest.stats import links as click_links
from subscribers.addresses import ascii_address, needs_smtputf8
from subscribers.model import SubscriberStatus
from subscribers.tokens import EVERY_LIST, PREFERENCES, UNSUBSCRIBE, make_token

if TYPE_CHECKING:
    from digest.delivery.dkim import Signer
    from digest.delivery.outcomes import Row
    from digest.editorial.models import Edition

log = logging.getLogger("digest.sender")

_SMTP = policy.SMTP.clone(max_line_length=78)
_SMTP_UTF8 = policy.SMTPUTF8.clone(max_line_length=78)
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9 .'\-]{0,60}\Z")
_SIMPLE_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9.\-]+\Z")
# Controls, and bidi controls stored before they were refused (digest.headertext).
_CONTROL = re.compile(r"[\x00-\x1f\x7f" + BIDI_CONTROLS + "]")

# Gaps in the prepared message: header gaps, then one per slot marker and part.
TO, MSGID, UNSUB_HEADER, TEXT_GREETING, TEXT_UNSUB, HTML_GREETING, HTML_UNSUB = range(7)
TEXT_PREFS, HTML_PREFS = 7, 8
READER_GAP = 9  # the end of every personal story link, the same in both parts
_GAPS = {
    slots.GREETING: (TEXT_GREETING, HTML_GREETING),
    slots.UNSUBSCRIBE_URL: (TEXT_UNSUB, HTML_UNSUB),
    slots.PREFERENCES_URL: (TEXT_PREFS, HTML_PREFS),
    slots.READER: (READER_GAP, READER_GAP),
}


def fold_header(name: str, value: str, *, utf8: bool = False) -> bytes:
    """One header line, RFC 2047-encoded and folded by the stdlib (used once per issue)."""
    return (
        (_SMTP_UTF8 if utf8 else _SMTP)
        .header_factory(name, value)
        .fold(policy=_SMTP_UTF8 if utf8 else _SMTP)
        .encode("utf-8")
    )


def encoded_words(name: str, text: str) -> bytes:
    """`text` as RFC 2047 encoded words, folded: what text that contains "=?" needs.

    The stdlib parses a header value before folding it, decoding anything shaped like
    an encoded word on the way: a subject or name holding "=?utf-8?q?=0D=0ABcc:_x?="
    would come out as a real line break and a forged header. Encoded by us, it is
    decoded by the reader back to exactly what was typed.
    """
    return Header(text, "utf-8", maxlinelen=78, header_name=name).encode(linesep="\r\n").encode()


def fold_ascii(name: str, value: str, width: int = 78) -> bytes:
    """A header of plain printable ASCII, folded before spaces so unfolding gives `value`.

    The stdlib would start a long value on a line of its own ("Subject:" CRLF SP ...),
    which readers unfold into a leading space.
    """
    lines, line = [], f"{name}:"
    for piece in re.split(r"(?= )", " " + value):
        if len(line) + len(piece) > width and line.strip() not in ("", f"{name}:"):
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def subject_header(subject: str) -> bytes:
    # Non-ASCII too: the stdlib's folder can drop a space between encoded words.
    if "=?" in subject or not subject.isascii() or _CONTROL.search(subject):
        return b"Subject: " + encoded_words("Subject", subject) + b"\r\n"
    return fold_ascii("Subject", subject)


def to_header(email: str, name: str) -> bytes:
    """The To header for one recipient; fast for plain names, correct for any.

    Not left to the stdlib: it drops the quotes of a long display name holding
    specials when folding it (a name with "(", "<" or "@" would then re-parse as
    another address) and decodes "=?" text first (see encoded_words).
    """
    name = _CONTROL.sub(" ", name).strip()
    if _SIMPLE_ADDR.match(email) and _SIMPLE_NAME.match(name):
        if not name:
            return f"To: {email}\r\n".encode()
        return f'To: "{name}" <{email}>\r\n'.encode()
    if not name:
        return f"To: <{email}>\r\n".encode()
    if name.isascii() and "=?" not in name:  # a quoted-string; names are at most 200 chars
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'To: "{quoted}"\r\n <{email}>\r\n'.encode()
    return b"To: " + encoded_words("To", name) + f"\r\n <{email}>\r\n".encode()


def greeting(name: str, language: str = "en") -> str:
    """ "Hello Anna," (or "Hello," without a name), in the newsletter's language."""
    name = _CONTROL.sub(" ", name).strip()
    first = name.split()[0] if name else ""
    return i18n.greeting(first, language)


@dataclass(frozen=True, slots=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str
    token: str  # the unsubscribe token (this newsletter)
    preferences: str = ""  # the preferences-page token (every newsletter)


#: A made-up recipient whose message proves a template's static runs SMTP-ready.
_SAMPLE = Recipient(0, "reader@example.com", "Sample Reader", "A" * 22, "B" * 22)


class MessageTemplate:
    """The issue's message, encoded once; `build()` splices one recipient in."""

    def __init__(
        self,
        rendered: RenderedIssue,
        *,
        settings: Settings,
        issue_key: str,
        subject: str,
        date: datetime,
        issue_id: int = 0,
        nonce: str | None = None,
        extra_headers: dict[str, str] | None = None,
        signer: Signer | None = None,
        language: str = "en",
    ) -> None:
        """`signer` (digest.dkim) adds a DKIM-Signature to every built message; `language`
        is the newsletter's (the greeting, and the Content-Language header).

        `issue_id` goes into each message's signed reference; 0 (test sends, sign-up
        confirmations) names no edition, so reports about those act on nobody.
        """
        self.issue_key = issue_key
        self.issue_id = issue_id
        self.language = language
        self.signer = signer
        self.domain = settings.sender_domain
        # Without a key (a preview before set-up) references are signed with a
        # throw-away one: they verify nowhere, which is right for mail never sent.
        key = settings.secret() if settings.secret_key else secrets.token_bytes(32)
        self._ref = reference.Signer(key, issue_id)
        # Personal story links (DIGEST_CLICK_STATS=per-subscriber): one reader token per
        # message fills every story link's READER gap.
        personal = slots.READER in rendered.html or slots.READER in rendered.text
        self._reader = click_links.ReaderSigner(key, issue_id) if personal else None
        bounce = settings.envelope_from
        self._verp = settings.bounce_verp and bounce.isascii()
        self._bounce = bounce
        self._verp_head, _, verp_domain = reference.verp_address(bounce, "").rpartition("@")
        self._verp_tail = "@" + verp_domain
        self.nonce = nonce or secrets.token_hex(4)
        self.unsub_base = f"{settings.base_url}/unsubscribe/"
        self.prefs_base = f"{settings.base_url}/preferences/"
        self.mailto = settings.effective_unsubscribe_mailto
        self.msgid_prefix = f"<{issue_key}.".encode()
        self.msgid_suffix = f".{self.nonce}@{self.domain}>\r\n".encode()
        boundary = f"=_digest_{secrets.token_hex(12)}"

        head = [
            fold_header("Date", format_datetime(date)),
            fold_header("From", settings.from_),
        ]
        tail = [
            subject_header(subject),
            b"MIME-Version: 1.0\r\n",
            fold_header("List-Id", f"{settings.list_name} <{settings.effective_list_id}>"),
        ]
        post = [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"]
        if settings.reply_to:
            post.append(fold_header("Reply-To", settings.reply_to))
        post.append(b"Precedence: bulk\r\n")
        if language and language != "en":
            post.append(fold_header("Content-Language", language))
        post.append(fold_header("X-Digest-Issue", issue_key))
        for name, value in (extra_headers or {}).items():
            post.append(fold_header(name, value))
        post.append(
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode()
        )

        text_parts = _split(rendered.text)
        html_parts = _split(rendered.html)
        part_head = (
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        html_head = (
            f"\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        end = f"\r\n--{boundary}--\r\n".encode()

        # Static runs between the gaps; gap kinds tell build() what to put there.
        self._static: list[bytes] = [b"".join(head)]
        self._gaps: list[int] = [TO]
        self._static.append(b"Message-ID: " + self.msgid_prefix)
        self._gaps.append(MSGID)
        self._static.append(self.msgid_suffix + b"".join(tail))
        self._gaps.append(UNSUB_HEADER)
        pending = b"".join(post) + part_head
        for parts, side, closing in ((text_parts, 0, html_head), (html_parts, 1, end)):
            for chunk, marker in parts:
                encoded = qp.encode(chunk.encode("utf-8"))
                if marker is None:
                    pending += encoded + closing
                else:
                    pending += qp.seal(encoded)
                    self._static.append(pending)
                    self._gaps.append(_GAPS[marker][side])
                    pending = b""
        self._static.append(pending)
        self._frame: list[bytes] = [b""] * (2 * len(self._static) - 1)
        self._frame[::2] = self._static
        self._take = itemgetter(*self._gaps)  # the gaps' values, in order, in one call
        self.size_estimate = sum(map(len, self._static)) + 400
        if signer is not None:
            self.size_estimate += signer.header_size
            signer.remember(self._static)  # canonicalised once, however short
        # build() vouches for its output (SMTPReady: the transport skips its scan)
        # once a sample proves the static runs SMTP-ready; personal runs are made so.
        ready = is_smtp_ready(b"".join(self._pieces(_SAMPLE, self._ref(0))))
        self._wrap: type[bytes] = SMTPReady if ready else bytes

    def build(self, r: Recipient) -> bytes:
        """The full message for one recipient (SMTP-ready bytes)."""
        return self._message(r, self._ref(r.subscriber_id))

    def envelope(self, r: Recipient) -> tuple[str, bytes]:
        """(envelope sender, message) for one recipient; both carry its signed reference."""
        ref = self._ref(r.subscriber_id)
        sender = self._verp_head + ref + self._verp_tail if self._verp else self._bounce
        return sender, self._message(r, ref)

    def _message(self, r: Recipient, ref: str) -> bytes:
        out = self._pieces(r, ref)
        if self.signer is not None:  # static pieces are canonicalised once, then remembered
            return self._wrap(self.signer.sign_pieces(out))  # its header is SMTP-ready too
        return self._wrap(b"".join(out))

    def _pieces(self, r: Recipient, ref: str) -> list[bytes]:
        """Static runs with the recipient's values in the gaps, ready to join."""
        url = self.unsub_base + r.token
        url_run = qp.encode_run(url.encode())  # the token is URL-safe: no escaping needed
        prefs_run = qp.encode_run((self.prefs_base + r.preferences).encode())
        text_greeting, html_greeting = _greeting_runs(greeting(r.name, self.language))
        values = {
            TO: to_header(r.email, r.name),
            MSGID: ref.encode(),
            UNSUB_HEADER: (
                f"List-Unsubscribe: <{url}>,\r\n <mailto:{self.mailto}"
                f"?subject=unsubscribe-{r.token}>\r\n"
            ).encode(),
            TEXT_GREETING: text_greeting,
            HTML_GREETING: html_greeting,
            TEXT_UNSUB: url_run,
            HTML_UNSUB: url_run,
            TEXT_PREFS: prefs_run,
            HTML_PREFS: prefs_run,
        }
        if self._reader is not None:
            values[READER_GAP] = qp.encode_run(self._reader(r.subscriber_id).encode())
        out = self._frame.copy()  # static runs at even positions, gaps between them
        out[1::2] = self._take(values)
        return out


@lru_cache(maxsize=4096)
def _greeting_runs(text: str) -> tuple[bytes, bytes]:
    """The greeting QP-encoded for the text and the HTML part (first names repeat)."""
    return (
        qp.encode_run(text.encode()),
        qp.encode_run(html.escape(text, quote=False).encode()),
    )


def _split(body: str) -> list[tuple[str, str | None]]:
    """Cut a rendered part at slot markers: [(text_before, marker_or_None), ...]."""
    pattern = "(" + "|".join(re.escape(m) for m in slots.ALL) + ")"
    pieces = re.split(pattern, body)
    out: list[tuple[str, str | None]] = []
    for i in range(0, len(pieces), 2):
        marker = pieces[i + 1] if i + 1 < len(pieces) else None
        out.append((pieces[i], marker))
    return out


def template_for(
    issue: Edition, settings: Settings, *, subject_prefix: str = ""
) -> MessageTemplate:
    """The edition's message, prepared once for this run (DKIM-signed when a key is set).

    `settings` are the edition's newsletter's (digest.editorial.newsletters.settings_for).
    """
    from digest.delivery.dkim import signer_for

    subject = subject_prefix + (issue.content.get("subject") or issue.subject)
    return MessageTemplate(
        RenderedIssue(html=issue.html, text=issue.text),
        settings=settings,
        issue_key=issue.key,
        issue_id=issue.id,
        subject=subject,
        date=utcnow(),
        signer=signer_for(settings),
        language=str((issue.content.get("newsletter") or {}).get("language") or "en"),
    )


# -- from ledger rows to messages, for the Sender -----------------------------------------

Prepared = Outbound | str | Result  # a message to send, or why a row gets none
#: Signed messages per hand-over to the signing pool: enough that the event loop's
#: share of a hand-over is small per message, few enough to keep the workers fed.
SIGN_CHUNK = 16


def signing_threads() -> int:
    """One signing thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Preparer:
    """Turns claimed ledger rows into messages, in order.

    Unsigned messages cost microseconds and are built on the event loop. A DKIM
    signature costs far more (RSA-2048: ~0.3 ms of OpenSSL, which releases the GIL),
    so signed messages are built in chunks on a pool of one thread per core, a few
    chunks ahead of the workers: the event loop keeps sending while both cores sign.
    """

    def __init__(self, template: MessageTemplate, settings: Settings) -> None:
        self.template = template
        self._secret = settings.secret()
        self._list_id = settings.effective_list_id
        self._threads = signing_threads()
        self._pool = (
            ThreadPoolExecutor(self._threads, thread_name_prefix="digest-sign")
            if template.signer is not None
            else None
        )

    def prepare(self, row: Row) -> Prepared:
        """The message for one row, or why it is not sent (never raises for bad data)."""
        if row.status != SubscriberStatus.CONFIRMED:
            return f"skipped: subscriber is {row.status}"
        # An IDN domain goes as its A-label; only a non-ASCII local part needs SMTPUTF8.
        utf8 = needs_smtputf8(row.email)
        try:
            wire = row.email if utf8 else ascii_address(row.email)
            token = make_token(self._secret, UNSUBSCRIBE, row.subscriber_id, self._list_id)
            prefs = make_token(self._secret, PREFERENCES, row.subscriber_id, EVERY_LIST)
            recipient = Recipient(row.subscriber_id, wire, row.name, token, prefs)
            sender, data = self.template.envelope(recipient)
        except (ValueError, UnicodeError) as exc:  # one bad row must not stop Friday's send
            log.warning("cannot build message for subscriber %s: %s", row.subscriber_id, exc)
            return Result(Outcome.FAILED, None, f"cannot build the message: {exc}"[:300])
        return Outbound(sender, wire, data, smtputf8=utf8)

    def _prepare_all(self, rows: list[Row]) -> list[Prepared]:
        return [self.prepare(row) for row in rows]

    async def feed(
        self,
        queue: asyncio.Queue[tuple[Row, Prepared]],
        batch: list[Row],
        stop: asyncio.Event,
    ) -> None:
        """Put (row, message) for each row of `batch` on `queue`, in order, until `stop`."""
        if self._pool is None:
            for row in batch:
                if stop.is_set():
                    return
                await queue.put((row, self.prepare(row)))
            return
        loop = asyncio.get_running_loop()
        pending: deque[tuple[list[Row], asyncio.Future[list[Prepared]]]] = deque()
        try:
            for start in range(0, len(batch), SIGN_CHUNK):
                if stop.is_set():
                    break
                chunk = batch[start : start + SIGN_CHUNK]
                pending.append((chunk, loop.run_in_executor(self._pool, self._prepare_all, chunk)))
                if len(pending) > 2 * self._threads:
                    await _hand_over(queue, *pending.popleft(), stop)
            while pending:
                await _hand_over(queue, *pending.popleft(), stop)
        finally:  # stopped or failed: let the pool finish what it has (the rows stay owed)
            if pending:
                await asyncio.gather(*(built for _, built in pending), return_exceptions=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


async def _hand_over(
    queue: asyncio.Queue[tuple[Row, Prepared]],
    rows: list[Row],
    built: asyncio.Future[list[Prepared]],
    stop: asyncio.Event,
) -> None:
    for row, prepared in zip(rows, await built):
        if stop.is_set():
            return  # left owed; its claim is released when the sender ends
        await queue.put((row, prepared))
