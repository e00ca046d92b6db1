"""SMTP delivery through a pool of reused connections (aiosmtplib).

Many tasks await `send` at once; each borrows a connection, runs one transaction
and gives it back. Connections are opened lazily up to the pool size, replaced
when they break, and retired after `messages_per_connection` transactions.

Duplicates, the one trade-off: a message is resent inside the transport only when
the server cannot have seen it (a reused connection found closed at MAIL). If the
connection dies after the final "." went out, the server may already have accepted
it, so `send` returns DEFERRED and the caller's retry policy decides. That retry
is the only way this transport can deliver a message twice.

An outage raises TransportError instead of returning results, so it cannot burn
through recipients' attempts: no connection at all after a few quick retries,
login rejected, certificate not trusted, STARTTLS required but not offered.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from pydantic import SecretStr

from digest.delivery.transports.base import Outbound, Outcome, Result, Transport
from digest.delivery.transports.smtp_conn import (
    ConnectFailure,
    ConnectionConfig,
    Security,
    SMTPConnection,
    StaleConnection,
    envelope_problem,
    make_tls_context,
    prepare_payload,
)
from digest.errors import TransportError
from digest.settings import Settings

log = logging.getLogger("digest.transports.smtp")

#: QUIT at shutdown or on retiring a connection never waits longer than this.
QUIT_TIMEOUT = 2.0


class SMTPTransport(Transport):
    """A pool of SMTP connections; `send` is safe to await from many tasks at once."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "starttls",
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeout: float = 30.0,
        tls_verify: bool = True,
        messages_per_connection: int = 0,
        pool_size: int = 10,
        connect_attempts: int = 3,
        connect_backoff: float = 0.25,
        local_hostname: str | None = None,
        pipelining: bool = True,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if isinstance(password, str):
            password = SecretStr(password)
        self.host, self.port, self.security = host, port, security
        self._username, self._password = username, password
        self._timeout = timeout
        self._tls_context = make_tls_context(tls_verify) if security != "none" else None
        self._local_hostname = local_hostname
        #: Pipeline MAIL/RCPT/DATA (RFC 2920) where the server offers it; read at connect.
        self.pipelining = pipelining
        self._config: ConnectionConfig | None = None
        self.messages_per_connection = messages_per_connection
        self.pool_size = pool_size
        self._connect_attempts = max(1, connect_attempts)
        self._connect_backoff = connect_backoff
        #: How many connections may exist now; lowered when the server refuses more.
        self._cap = pool_size
        self._idle: list[SMTPConnection] = []
        self._count = 0  # connections alive or being opened
        self._waiting = 0  # tasks waiting in _acquire for a connection
        self._cond = asyncio.Condition()
        self._closed = False
        #: Connections successfully opened over the transport's life.
        self.connections_opened = 0
        #: Of those, the ones that pipeline MAIL/RCPT/DATA (the server offers PIPELINING).
        self.pipelined_connections = 0

    @classmethod
    def from_settings(cls, settings: Settings, concurrency: int | None = None) -> SMTPTransport:
        """Build from DIGEST_SMTP_*; the pool has one connection per concurrent sender."""
        if not settings.smtp_host:
            raise TransportError("DIGEST_SMTP_HOST: not set")
        return cls(
            settings.smtp_host,
            settings.effective_smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout,
            tls_verify=settings.smtp_tls_verify,
            messages_per_connection=settings.smtp_messages_per_connection,
            pool_size=concurrency or settings.concurrency,
            pipelining=settings.smtp_pipelining,
        )

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port} ({self.security})"

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Connect one connection now, so a misconfiguration shows before any send."""
        conn = await self._acquire()
        await self._release(conn)

    async def close(self) -> None:
        """QUIT every idle connection (briefly); ones in use are dropped on return."""
        async with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        timeout = min(self._timeout, QUIT_TIMEOUT)
        await asyncio.gather(*(c.quit(timeout) for c in idle), return_exceptions=True)

    # -- sending --------------------------------------------------------------

    async def send(self, message: Outbound) -> Result:
        problem = envelope_problem(message)
        if problem is not None:
            return problem
        payload = prepare_payload(message.data)
        stale = 0
        while True:
            conn = await self._acquire()
            try:
                return await conn.deliver(message, payload)
            except StaleConnection as exc:
                # Safe to retry: the server saw nothing. A fresh connection never
                # raises this, so the loop ends within pool_size + 1 rounds.
                stale += 1
                log.debug("smtp #%d was stale (%s); retrying", conn.serial, exc)
                if stale > self.pool_size:
                    return Result(Outcome.DEFERRED, None, f"{exc} before the message was sent")
            finally:
                await self._release(conn)

    # -- the pool -------------------------------------------------------------

    async def _acquire(self) -> SMTPConnection:
        """An idle live connection, a new one if the pool has room, or wait for one."""
        # Fast path, without the lock: nothing here awaits, so nothing can interleave.
        while self._idle and not self._closed:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            self._count -= 1
            conn.abort()
        while True:
            async with self._cond:
                while True:
                    if self._closed:
                        raise TransportError(f"{self.describe()}: transport is closed")
                    while self._idle:
                        conn = self._idle.pop()
                        if conn.usable:
                            return conn
                        self._count -= 1
                        conn.abort()
                    if self._count < self._cap:
                        self._count += 1
                        break
                    self._waiting += 1
                    try:
                        await self._cond.wait()
                    finally:
                        self._waiting -= 1
            try:
                conn = await self._connect()
            except BaseException as exc:
                async with self._cond:
                    self._count -= 1
                    self._cond.notify()
                    others = self._count
                    if isinstance(exc, ConnectFailure) and not exc.fatal and others > 0:
                        # The server is up (others work) but wants fewer connections.
                        self._cap = max(1, others)
                        log.warning(
                            "%s: extra connection refused (%s); pool limited to %d",
                            self.describe(),
                            exc.reason,
                            self._cap,
                        )
                        continue
                if isinstance(exc, ConnectFailure):
                    raise TransportError(f"{self.describe()}: {exc.reason}") from None
                raise
            if self._closed:
                await conn.quit(min(self._timeout, QUIT_TIMEOUT))
                async with self._cond:
                    self._count -= 1
                raise TransportError(f"{self.describe()}: transport is closed")
            return conn

    async def _connect(self) -> SMTPConnection:
        """Open one connection, retrying quickly (with backoff) what may be transient."""
        config = await self._connection_config()
        delay = self._connect_backoff
        for attempt in range(1, self._connect_attempts + 1):
            conn = SMTPConnection(config)
            try:
                await conn.connect()
            except ConnectFailure as exc:
                if exc.fatal or attempt == self._connect_attempts:
                    if not exc.fatal and attempt > 1:
                        exc.reason = f"cannot connect after {attempt} attempts: {exc.reason}"
                    raise
                log.info("%s: %s; retrying in %.2fs", self.describe(), exc.reason, delay)
                await asyncio.sleep(delay)
                delay *= 2
            else:
                self.connections_opened += 1
                self.pipelined_connections += conn.pipelining
                return conn
        raise AssertionError("unreachable")

    async def _release(self, conn: SMTPConnection) -> None:
        """Back to the idle list, or retire it (broken, used up, or pool closed)."""
        limit = self.messages_per_connection
        used_up = bool(limit) and conn.transactions >= limit
        if not self._waiting and conn.usable and not used_up and not self._closed:
            self._idle.append(conn)  # nobody to wake: no need for the lock
            return
        async with self._cond:
            if conn.usable and not used_up and not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._count -= 1
            self._cond.notify()
        if conn.usable:
            await conn.quit(min(self._timeout, QUIT_TIMEOUT))
        else:
            conn.abort()

    async def _connection_config(self) -> ConnectionConfig:
        if self._config is None:
            hostname = self._local_hostname or await _local_fqdn(self._timeout)
            self._config = ConnectionConfig(
                host=self.host,
                port=self.port,
                security=self.security,
                timeout=self._timeout,
                local_hostname=hostname,
                username=self._username,
                password=self._password,
                tls_context=self._tls_context,
                pipelining=self.pipelining,
            )
        return self._config


async def _local_fqdn(timeout: float) -> str:
    """The name for EHLO; a slow or odd resolver falls back to "localhost"."""
    try:
        name = await asyncio.wait_for(asyncio.to_thread(socket.getfqdn), timeout)
    except (TimeoutError, OSError):
        return "localhost"
    if not name or not name.isascii() or any(c.isspace() or ord(c) < 33 for c in name):
        return "localhost"
    return name
