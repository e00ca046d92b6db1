"""One SMTP connection: the handshake (TLS, AUTH) and one transaction at a time.

The pool in `digest.transports.smtp` owns many of these and never lets two tasks
use the same one at once. aiosmtplib does the socket and reply parsing; this
module decides what each reply means for the message (sent, deferred, failed)
and keeps the connection clean (RSET, or drop it) for the next message.

A transaction runs MAIL, RCPT and DATA one reply at a time. A pipelined fast path
(RFC 2920) would replace `SMTPConnection.deliver` only: it has the same inputs and
must return the same `Result`s.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass
from itertools import count
from typing import Literal

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse
from pydantic import SecretStr

from digest.transports.base import Outbound, Outcome, Result

log = logging.getLogger("digest.transports.smtp")

Security = Literal["none", "starttls", "tls"]

# Control characters, space and angle brackets cannot appear in a path we send.
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")
_serial = count(1)


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


class ConnectFailure(Exception):
    """Opening a connection failed. `fatal`: retrying cannot help (bad login, bad TLS)."""

    def __init__(self, reason: str, *, fatal: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


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

    `Outbound.data` is promised SMTP-ready, so normally this only checks: three
    byte counts and one substring search, no copy. Anything else (bare LF or CR,
    a line starting with ".") is repaired rather than sent broken.
    """
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


def _find(exc: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in the cause/context chain, aiosmtplib's own skipped."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind) and not isinstance(exc, aiosmtplib.SMTPException):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc.strerror})"
    if exc.errno and exc.errno in errno.errorcode:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def classify_connect_error(exc: BaseException, timeout: float) -> ConnectFailure:
    """One readable reason for a failed handshake, and whether a retry could help."""
    cert = _find(exc, ssl.SSLCertVerificationError)
    if isinstance(cert, ssl.SSLCertVerificationError):
        detail = cert.verify_message or cert.reason or "verification failed"
        return ConnectFailure(
            f"TLS certificate not trusted ({detail}); install the CA or, for testing only, "
            "set DIGEST_SMTP_TLS_VERIFY=false",
            fatal=True,
        )
    tls = _find(exc, ssl.SSLError)
    if isinstance(tls, ssl.SSLError):
        return ConnectFailure(f"TLS handshake failed ({tls.reason or tls})", fatal=True)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ConnectFailure(
            f"login rejected: {exc.code} {exc.message}".strip(), fatal=exc.code >= 500
        )
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return ConnectFailure(
            f"server refused the session: {exc.code} {exc.message}".strip(),
            fatal=exc.code >= 500,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return ConnectFailure(f"{exc.code} {exc.message}".strip(), fatal=exc.code >= 500)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ConnectFailure(f"timed out after {timeout:g}s", fatal=False)
    oserr = _find(exc, OSError)
    if isinstance(oserr, OSError):
        return ConnectFailure(_os_reason(oserr), fatal=False)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return ConnectFailure("server closed the connection during the handshake", fatal=False)
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return ConnectFailure(str(exc), fatal=False)
    if isinstance(exc, aiosmtplib.SMTPException):
        return ConnectFailure(str(exc), fatal=True)
    return ConnectFailure(f"{type(exc).__name__}: {exc}", fatal=False)


def _error_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, ConnectionError):
        return "connection lost"
    return str(exc) or type(exc).__name__


class SMTPConnection:
    """A connected, greeted (and maybe TLS-wrapped, logged-in) SMTP session."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.serial = next(_serial)
        #: Transactions started on this connection (for messages-per-connection).
        self.transactions = 0
        #: Set while a transaction is open and when the connection is unusable.
        self.broken = False
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
        return not self.broken and self._smtp.is_connected

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
        log.debug(
            "smtp connection #%d to %s:%d ready", self.serial, self.config.host, self.config.port
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
        smtp, timeout = self._smtp, self.config.timeout
        reused = self.transactions > 0
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

        self.transactions += 1
        self.broken = True  # until the transaction ends cleanly; covers cancellation
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
            self.abort()
            reason = _error_reason(exc)
            if stage == "MAIL" and reused and isinstance(exc, ConnectionError):
                raise StaleConnection(reason) from exc
            if stage == "END":
                # The final "." may have reached the server: it might have accepted
                # the message. Resending here is the one way to make a duplicate, so
                # the caller decides (it retries later, knowingly).
                reason += " after the message was sent; the server may have accepted it"
            else:
                reason += f" at {stage}"
            log.info(
                "smtp #%d: %s -> %s: %s", self.serial, message.sender, message.recipient, reason
            )
            return Result(Outcome.DEFERRED, None, reason)
        return self._finished(reply)

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
        if reply.code == 421 or not self._smtp.is_connected:
            self.abort()
        else:
            await self._reset()
        return _result(reply, recipient_rejected=stage == "RCPT" and reply.code >= 500)

    async def _reset(self) -> None:
        try:
            reply = await self._smtp.execute_command(b"RSET", timeout=self.config.timeout)
        except (OSError, aiosmtplib.SMTPException):
            self.abort()
            return
        if reply.code == 250:
            self.broken = False
        else:
            self.abort()

    # -- tearing down -------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection without a goodbye."""
        self.broken = True
        self._smtp.close()

    async def quit(self, timeout: float) -> None:
        """QUIT politely, briefly; never raises."""
        try:
            if self._smtp.is_connected:
                await asyncio.wait_for(self._smtp.quit(timeout=timeout), timeout)
        except (OSError, aiosmtplib.SMTPException) as exc:  # timeouts are OSErrors too
            log.debug("smtp #%d: QUIT failed (%s); dropping", self.serial, _error_reason(exc))
        finally:
            self.abort()


def _result(reply: SMTPResponse, *, recipient_rejected: bool) -> Result:
    """4xx (or anything odd) is worth another try later; 5xx is permanent."""
    if reply.code >= 500:
        return Result(Outcome.FAILED, reply.code, reply.message, recipient_rejected)
    return Result(Outcome.DEFERRED, reply.code, reply.message)
