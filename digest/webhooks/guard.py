"""Webhook URLs may not reach this machine or its private networks (SSRF).

An operator adds endpoints, but a URL is easy to get wrong or to be talked into, and a
POST from the server to http://127.0.0.1:5432/ or a cloud metadata address is a classic
server-side request forgery. So every address a URL's host resolves to must be public
(`ipaddress.is_global`), checked when the endpoint is added and again at each connection:
the dispatcher's HTTP client connects through `GuardedBackend`, which resolves the name
itself, checks every address, and connects to the checked address (TLS still verifies
the certificate against the host name), so a DNS answer that changes in between
(rebinding) cannot slip through. DIGEST_WEBHOOK_ALLOW_PRIVATE turns the check off (a
receiver on the same network; the tests' local receiver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore


def public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


def refused(addresses: Iterable[str]) -> str | None:
    """The first address that is not public, if any."""
    return next((a for a in addresses if not public(a)), None)


def resolve(host: str, port: int) -> list[str]:
    """Every address of `host` (blocking; for the command line's check)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to public addresses (see module doc)."""

    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        bad = None if self.allow_private else refused(addresses)
        if bad is not None:
            raise httpcore.ConnectError(
                f"{host} resolves to {bad}, a loopback or private address "
                "(refused; DIGEST_WEBHOOK_ALLOW_PRIVATE=true allows it)"
            )
        last: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def client(timeout: float, allow_private: bool) -> Any:
    """An httpx.AsyncClient for webhooks: guarded connections, no redirects followed, no
    proxies or .netrc from the environment, a timeout on every step."""
    import httpx

    transport = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
    # httpx builds its httpcore pool without a way to pass a network backend: replace it
    # with the same pool on the guarded backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(allow_private),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "digest-webhooks/1"},
    )
