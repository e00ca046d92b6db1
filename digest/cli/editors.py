"""`digest editors ...`: who may sign in to the desk (argon2id hashes, digest.editors)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, fail, session, settings
from digest.errors import InputError

editors_app = typer.Typer(help="Editors: who may sign in to the desk.", no_args_is_help=True)
app.add_typer(editors_app, name="editors")


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
