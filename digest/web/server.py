"""How `digest serve` (and the tests' live server) runs the app under uvicorn.

uvicorn's only timeout, `timeout_keep_alive`, starts after a response: a client that
connects and sends nothing, or trickles a request one byte at a time (slowloris), holds
its connection forever, and a few hundred such connections use up the server. So the
HTTP protocol here is uvicorn's h11 one with two deadlines:

- from the connection's first moment (or, on a kept-alive connection, from the first
  byte of the next request) until the request's headers are complete:
  DIGEST_HEADER_TIMEOUT (10 s);
- from the end of the headers until the whole body has arrived: DIGEST_BODY_TIMEOUT
  (30 s; bodies are at most 1 MB).

A request that misses one is answered 408 (if no response has started) and the
connection closed. Headers are limited to 16 KB (h11's incomplete-event limit, 400
beyond). X-Forwarded-For/-Proto are believed only from DIGEST_FORWARDED_ALLOW_IPS.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.settings import Settings

log = logging.getLogger("digest.web")

MAX_HEADER_BYTES = 16 * 1024
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 32\r\n\r\nThe request took too long. Bye.\n"
)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines for headers and body (see module doc)."""

    header_timeout = 10.0
    body_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: object = None
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()  # a pipelined request may already be half read

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None, 0.0)
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline that fits where the client is in its request."""
        if self.transport.is_closing():
            self._arm(None, 0.0)
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            idle = self.timeout_keep_alive_task is not None and not self.conn.trailing_data[0]
            if idle:  # between requests: uvicorn's keep-alive timer is in charge
                self._arm(None, 0.0)
            else:
                self._arm(h11.IDLE, self.header_timeout)
        elif state is h11.SEND_BODY:
            self._arm(h11.SEND_BODY, self.body_timeout)
        else:  # the request is read (or the connection is failing): nothing to wait for
            self._arm(None, 0.0)

    def _arm(self, phase: object, seconds: float) -> None:
        """Start a deadline for `phase` unless one runs already (None: cancel)."""
        if phase is not None and phase is self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        responding = cycle is not None and cycle.response_started and not cycle.response_complete
        if not responding:
            self.transport.write(_TIMEOUT_RESPONSE)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        what = "headers" if self._phase is h11.IDLE else "body"
        log.info("closed the connection of %s: its request %s took too long", client, what)
        self.transport.close()


def protocol_for(settings: Settings) -> type[DeadlineH11Protocol]:
    """The protocol class with this configuration's deadlines."""
    return type(
        "DeadlineH11Protocol",
        (DeadlineH11Protocol,),
        {"header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout},
    )


def server_config(
    app: Any, settings: Settings, host: str, port: int, **extra: Any
) -> uvicorn.Config:
    """The uvicorn configuration `digest serve` runs with."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": protocol_for(settings),
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "server_header": False,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": 5,
        "lifespan": "on",
        "log_level": "info",
    }
    options.update(extra)
    return uvicorn.Config(app, **options)
