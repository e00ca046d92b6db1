"""One SMTP connection: the handshake (TLS, AUTH) and one transaction at a time.

The pool in `digest.transports.smtp` owns many of these and never lets two tasks
use the same one at once. aiosmtplib does the connecting, the handshake and the
reply parsing; this module decides what each reply means for the message (sent,
deferred, failed) and keeps the connection clean (RSET, or drop it) for the next.

When the server advertises PIPELINING, a transaction is two round trips instead
of four (see `smtp_pipeline`); otherwise MAIL, RCPT and DATA go one reply at a
time. Both paths map replies to the same `Result`s.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from itertools import count
from typing import Literal

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse
from pydantic import SecretStr

from digest.delivery.transports.base import Outbound, Outcome, Result, SMTPReady
from digest.delivery.transports.smtp_errors import (
    ConnectFailure,
    classify_connect_error,
    error_reason,
)
from digest.delivery.transports.smtp_pipeline import ReplyStream, pipelined_transaction

log = logging.getLogger("digest.transports.smtp")

Security = Literal["none", "starttls", "tls"]

# Control characters, space and angle brackets cannot appear in a path we send.
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")
_serial = count(1)

__all__ = [
    "ConnectFailure",
    "ConnectionConfig",
    "SMTPConnection",
    "Security",
    "StaleConnection",
    "envelope_problem",
    "make_tls_context",
    "prepare_payload",
]


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Everything needed to open one connection; shared by the whole pool."""

    host: str
    port: int
    security: Security
    timeout: float
    local_hostname: str
    username: str | None = None
    password: SecretStr | None = None
    tls_context: ssl.SSLContext | None = None
    #: Use ESMTP PIPELINING when the server offers it.
    pipelining: bool = True


class StaleConnection(Exception):
    """A reused connection turned out dead before the server saw any of the message.

    Raised only where resending on a fresh connection cannot produce a duplicate.
    """


def make_tls_context(verify: bool) -> ssl.SSLContext:
    """The system's trusted CAs and hostname check; both off only when asked to."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def prepare_payload(data: bytes) -> bytes:
    """The DATA body as it goes on the wire, without the final ".\\r\\n".

    An `SMTPReady` is vouched for by its maker and returned as it is. Other bytes
    are checked (three byte counts and one substring search, no copy) and, if
    they are not SMTP-ready (bare LF or CR, a line starting with "."), repaired
    rather than sent broken.
    """
    if type(data) is SMTPReady:
        return data
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = normalize_message_line_endings(data)
    if data.startswith(b".") or b"\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
        if data.startswith(b"."):
            data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def envelope_problem(message: Outbound) -> Result | None:
    """A permanent failure for an address that cannot be put in MAIL/RCPT safely."""
    rcpt = message.recipient
    if not rcpt or _BAD_ADDRESS.search(rcpt) or "@" not in rcpt:
        return Result(Outcome.FAILED, None, "invalid recipient address", recipient_rejected=True)
    if _BAD_ADDRESS.search(message.sender):
        return Result(Outcome.FAILED, None, "invalid sender address")
    return None


class SMTPConnection:
    """A connected, greeted (and maybe TLS-wrapped, logged-in) SMTP session."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.serial = next(_serial)
        #: Transactions started on this connection (for messages-per-connection).
        self.transactions = 0
        #: Set while a transaction is open and when the connection is unusable.
        self.broken = False
        #: Set after the handshake when the server offers PIPELINING (and it is wanted).
        self._stream: ReplyStream | None = None
        self._smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            local_hostname=config.local_hostname,
            timeout=config.timeout,
            use_tls=config.security == "tls",
            start_tls=False,
            tls_context=config.tls_context,
        )

    @property
    def usable(self) -> bool:
        return not self.broken and self.connected

    @property
    def connected(self) -> bool:
        if self._stream is not None and self._stream.lost is not None:
            return False
        return self._smtp.is_connected

    @property
    def pipelining(self) -> bool:
        """Transactions on this connection are pipelined (RFC 2920)."""
        return self._stream is not None

    def supports(self, extension: str) -> bool:
        return self._smtp.supports_extension(extension)

    # -- setting up -----------------------------------------------------------

    async def connect(self) -> None:
        """Greeting, EHLO, STARTTLS, AUTH; raise ConnectFailure with a clear reason."""
        try:
            await self._handshake()
        except ConnectFailure:
            self.abort()
            raise
        except (Exception, asyncio.CancelledError) as exc:
            self.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._scrub(classify_connect_error(exc, self.config.timeout)) from None
        protocol = self._smtp.protocol
        if self.config.pipelining and self.supports("pipelining") and protocol is not None:
            transport = protocol.transport
            if isinstance(transport, asyncio.Transport):
                self._stream = ReplyStream(transport, protocol)
        log.debug(
            "smtp connection #%d to %s:%d ready%s",
            self.serial,
            self.config.host,
            self.config.port,
            " (pipelining)" if self._stream else "",
        )

    async def _handshake(self) -> None:
        cfg, smtp = self.config, self._smtp
        await smtp.connect(timeout=cfg.timeout)
        await self._hello()
        if cfg.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise ConnectFailure(
                    "server does not offer STARTTLS (DIGEST_SMTP_SECURITY=starttls); "
                    "use 'tls' for port 465, or 'none' only for a trusted local relay",
                    fatal=True,
                )
            await smtp.starttls(timeout=cfg.timeout)
            await self._hello()
        if cfg.username:
            if not smtp.supports_extension("auth"):
                raise ConnectFailure(
                    "server does not offer AUTH but DIGEST_SMTP_USERNAME is set", fatal=True
                )
            secret = cfg.password.get_secret_value() if cfg.password else ""
            await smtp.login(cfg.username, secret, timeout=cfg.timeout)

    async def _hello(self) -> None:
        try:
            await self._smtp.ehlo(timeout=self.config.timeout)
        except aiosmtplib.SMTPHeloError:
            if not self._smtp.is_connected:
                raise
            await self._smtp.helo(timeout=self.config.timeout)

    def _scrub(self, failure: ConnectFailure) -> ConnectFailure:
        """Make sure the password never travels in an error message."""
        pw = self.config.password.get_secret_value() if self.config.password else ""
        if pw and pw in failure.reason:
            return ConnectFailure(failure.reason.replace(pw, "***"), fatal=failure.fatal)
        return failure

    # -- one message --------------------------------------------------------

    async def deliver(self, message: Outbound, payload: bytes) -> Result:
        """Run one MAIL/RCPT/DATA transaction; `payload` comes from prepare_payload.

        Raises StaleConnection only when a reused connection is found dead at MAIL,
        before the server could have accepted anything.
        """
        smtp = self._smtp
        need_utf8 = message.smtputf8 or not (message.sender + message.recipient).isascii()
        options: list[bytes] = []
        if need_utf8:
            if not smtp.supports_extension("smtputf8"):
                return Result(Outcome.FAILED, None, "server does not support SMTPUTF8")
            options.append(b"SMTPUTF8")
        if not payload.isascii() and smtp.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        if smtp.supports_extension("size"):
            # A too-big message is refused at MAIL, before its bytes are sent (RFC 1870).
            options.append(b"SIZE=%d" % len(payload))
        encoding = "utf-8" if need_utf8 else "ascii"
        sender = b"FROM:<" + message.sender.encode(encoding) + b">"
        recipient = b"TO:<" + message.recipient.encode(encoding) + b">"

        reused = self.transactions > 0
        self.transactions += 1
        self.broken = True  # until the transaction ends cleanly; covers cancellation
        if self._stream is not None:
            return await self._pipelined(message, sender, recipient, options, payload, reused)
        timeout = self.config.timeout
        stage = "MAIL"
        try:
            reply = await smtp.execute_command(b"MAIL", sender, *options, timeout=timeout)
            if reply.code != 250:
                return await self._refused(reply, stage)
            stage = "RCPT"
            reply = await smtp.execute_command(b"RCPT", recipient, timeout=timeout)
            if reply.code not in (250, 251):
                return await self._refused(reply, stage)
            stage = "DATA"
            reply = await smtp.execute_command(b"DATA", timeout=timeout)
            if reply.code != 354:
                return await self._refused(reply, stage)
            stage = "END"
            reply = await self._send_body(payload)
        except (OSError, aiosmtplib.SMTPException) as exc:
            return self._lost(message, exc, stage, reused)
        return self._finished(reply)

    async def _pipelined(
        self,
        message: Outbound,
        sender: bytes,
        recipient: bytes,
        options: list[bytes],
        payload: bytes,
        reused: bool,
    ) -> Result:
        """The same transaction in two round trips (RFC 2920)."""
        assert self._stream is not None
        mail = b" ".join([b"MAIL", sender, *options])
        envelope = mail + b"\r\nRCPT " + recipient + b"\r\nDATA\r\n"
        done = await pipelined_transaction(self._stream, envelope, payload, self.config.timeout)
        if done.refused is not None:
            reply, stage = done.refused
            if done.drop:
                self.abort()
                return _result(reply, recipient_rejected=stage == "RCPT" and reply.code >= 500)
            return await self._refused(reply, stage)
        if done.error is not None:
            return self._lost(message, done.error, done.stage, reused)
        assert done.final is not None
        return self._finished(done.final)

    async def _send_body(self, payload: bytes) -> SMTPResponse:
        """Write the ready body as-is: no per-message regex pass, no dot-stuffing copy."""
        protocol = self._smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        protocol.write(payload)
        protocol.write(b".\r\n")
        # No await between the writes and read_response: the reply cannot arrive
        # before the protocol is told one is expected.
        return await protocol.read_response(timeout=self.config.timeout)

    def _lost(self, message: Outbound, exc: BaseException, stage: str, reused: bool) -> Result:
        """The connection failed mid-transaction: drop it and say what may have happened."""
        self.abort()
        reason = error_reason(exc)
        if stage == "MAIL" and reused and isinstance(exc, ConnectionError):
            raise StaleConnection(reason) from exc
        if stage == "END":
            # The final "." may have reached the server: it might have accepted
            # the message. Resending here is the one way to make a duplicate, so
            # the caller decides (it retries later, knowingly).
            reason += " after the message was sent; the server may have accepted it"
        else:
            reason += f" at {stage}"
        log.info("smtp #%d: %s -> %s: %s", self.serial, message.sender, message.recipient, reason)
        return Result(Outcome.DEFERRED, None, reason)

    def _finished(self, reply: SMTPResponse) -> Result:
        """The server's answer to the final ".": the transaction is over either way."""
        if reply.code == 421:
            self.abort()
        else:
            self.broken = False
        if 200 <= reply.code < 300:
            return Result(Outcome.SENT, reply.code, reply.message)
        return _result(reply, recipient_rejected=False)

    async def _refused(self, reply: SMTPResponse, stage: str) -> Result:
        """A non-success reply mid-transaction: RSET (or drop on 421) and map it."""
        if reply.code == 421 or not self.connected:
            self.abort()
        else:
            await self._reset()
        return _result(reply, recipient_rejected=stage == "RCPT" and reply.code >= 500)

    async def _reset(self) -> None:
        try:
            reply = await self._command(b"RSET")
        except (OSError, aiosmtplib.SMTPException):
            self.abort()
            return
        if reply.code == 250:
            self.broken = False
        else:
            self.abort()

    async def _command(self, verb: bytes) -> SMTPResponse:
        timeout = self.config.timeout
        if self._stream is not None:
            return await self._stream.command(verb + b"\r\n", timeout)
        return await self._smtp.execute_command(verb, timeout=timeout)

    # -- tearing down -------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection without a goodbye."""
        self.broken = True
        self._smtp.close()
        if self._stream is not None:
            self._stream.close()

    async def quit(self, timeout: float) -> None:
        """QUIT politely, briefly; never raises."""
        try:
            if self.connected:
                if self._stream is not None:
                    await self._stream.command(b"QUIT\r\n", timeout)
                else:
                    await asyncio.wait_for(self._smtp.quit(timeout=timeout), timeout)
        except (OSError, aiosmtplib.SMTPException) as exc:  # timeouts are OSErrors too
            log.debug("smtp #%d: QUIT failed (%s); dropping", self.serial, error_reason(exc))
        finally:
            self.abort()


def _result(reply: SMTPResponse, *, recipient_rejected: bool) -> Result:
    """4xx (or anything odd) is worth another try later; 5xx is permanent."""
    if reply.code >= 500:
        return Result(Outcome.FAILED, reply.code, reply.message, recipient_rejected)
    return Result(Outcome.DEFERRED, reply.code, reply.message)
