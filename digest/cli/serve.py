"""`digest serve` (the web app) and `digest editors ...` (who may use the desk)."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, err, fail, session, settings
from digest.errors import InputError

editors_app = typer.Typer(help="Editors: who may sign in to the desk.", no_args_is_help=True)
app.add_typer(editors_app, name="editors")

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
    import uvicorn

    from digest.editors import store
    from digest.web.app import create_app

    s = local_base_url(settings(), host, port)
    web = create_app(s, engine=engine())
    with session() as db:
        n_editors = len(store.list_all(db))
    _check_port(host, port)
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
    config = uvicorn.Config(
        web,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=s.forwarded_allow_ips,
        server_header=False,
        log_level="info",
        lifespan="on",
    )
    _server_class()(config).run()
    console.print("Stopped.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("no password on standard input", field="password")
        return line.rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


@editors_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Sign-in name: letters, digits, . _ @ + -")],
    email: Annotated[
        str | None,
        typer.Option(help="Address for “Send a test to me” (default: NAME if it is one)."),
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an editor; asks for the password twice (hidden)."""
    from digest.editors import store

    name = store.check_name(name)
    with session() as db:
        if store.find(db, name) is not None:
            fail(f"editor {name!r} already exists; use `digest editors password {name}`")
    password = store.check_password(_read_password(password_stdin))
    with session() as db:
        row = store.add(db, name, password, email)
        where = f" (tests go to {row.email})" if row.email else ""
    console.print(f"Added editor {name}{where}. Sign in at {settings().base_url}/desk/")


@editors_app.command("password")
def password(
    name: Annotated[str, typer.Argument(help="The editor's name.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a new password; the editor's open sessions are signed out."""
    from digest.editors import store

    with session() as db:
        store.get(db, name)
    new = store.check_password(_read_password(password_stdin))
    with session() as db:
        store.set_password(db, name, new)
    console.print(f"Password changed for {name}; their open sessions are signed out.")


@editors_app.command("list")
def list_() -> None:
    """Everyone who may sign in to the desk."""
    from rich.table import Table

    from digest.editors import store

    with session() as db:
        rows = store.list_all(db)
        if not rows:
            console.print("No editors yet. Add one with `digest editors add NAME`.")
            return
        table = Table("name", "email", "added", "last sign-in")
        for r in rows:
            last = r.last_login_at
            table.add_row(
                r.name,
                r.email or "-",
                f"{r.created_at:%Y-%m-%d}",
                f"{last:%Y-%m-%d %H:%M} UTC" if last else "never",
            )
    console.print(table)


@editors_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The editor's name.")]) -> None:
    """Remove an editor; their open sessions end at once."""
    from digest.editors import store

    with session() as db:
        row = store.remove(db, name)
        console.print(f"Removed editor {row.name}.")
