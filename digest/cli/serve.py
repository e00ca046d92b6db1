"""`digest serve`: the web app (the editors' commands are in digest.cli.editors)."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, err, fail, session, settings

if TYPE_CHECKING:
    from digest.settings import Settings


def _server_class():  # type: ignore[no-untyped-def]
    import uvicorn

    class Server(uvicorn.Server):
        """SIGINT/SIGTERM shut down gracefully and `digest serve` exits 0; uvicorn's own
        handler would re-raise the signal afterwards and end the process with -15."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _check_port(host: str, port: int) -> None:
    """Say plainly when the address is taken, instead of uvicorn's log and exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            fail(f"cannot listen on {host}:{port}: {why}")


def local_base_url(s: Settings, host: str, port: int) -> Settings:
    """The settings with DIGEST_BASE_URL defaulting to where this server listens."""
    if "base_url" in s.model_fields_set:
        return s
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return s.model_copy(update={"base_url": f"http://{shown}:{port}"})


@app.command("serve")
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for all (put HTTPS in front).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app: the editors' desk, sign-up, confirm and unsubscribe pages, archive.

    Without DIGEST_BASE_URL, links in pages and emails point at this host and port.
    """
    from digest.editors import store
    from digest.web.app import create_app
    from digest.web.server import server_config

    s = local_base_url(settings(), host, port)
    web = create_app(s, engine=engine())
    with session() as db:
        n_editors = len(store.list_all(db))
    _check_port(host, port)
    from digest.privatefiles import warn_exposed

    warn_exposed(s)
    console.print(f"Serving {s.list_name} on http://{host}:{port}  (public URL: {s.base_url})")
    console.print(f"  desk:      {s.base_url}/desk/")
    console.print(f"  sign-up:   {s.base_url}/subscribe      archive: {s.base_url}/issues/")
    if not n_editors:
        console.print("  No editors yet: add one with `digest editors add NAME`.")
    if host not in ("127.0.0.1", "localhost", "::1") and not s.base_url.startswith("https://"):
        err.print(
            "warning: listening beyond this machine while DIGEST_BASE_URL is not https; "
            "passwords and session cookies would cross the network in the clear"
        )
    _server_class()(server_config(web, s, host, port)).run()
    console.print("Stopped.")
