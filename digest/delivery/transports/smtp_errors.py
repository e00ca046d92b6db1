"""What a failed SMTP handshake or transaction means, in one readable reason.

aiosmtplib reports failures as a chain of its own exceptions wrapping OS and TLS
errors; the pool needs one line for the operator and whether a retry can help.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl

import aiosmtplib


class ConnectFailure(Exception):
    """Opening a connection failed. `fatal`: retrying cannot help (bad login, bad TLS)."""

    def __init__(self, reason: str, *, fatal: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


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


def error_reason(exc: BaseException) -> str:
    """A failure in the middle of a transaction, as the delivery's reply text."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, ConnectionError):
        return "connection lost"
    return str(exc) or type(exc).__name__
