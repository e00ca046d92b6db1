"""Editors: argon2id hashes, names, and `digest editors add/list/password/remove`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from digest.cli import app, common
from digest.editors import store as editors
from digest.errors import InputError, NotFound, StateError
from digest.store.engine import session_scope
from tests.webtools import fast_password_hashing

PASSWORD = "a long enough passphrase"


@pytest.fixture
def cli(settings):  # type: ignore[no-untyped-def]
    """Run `digest ...` in-process against this test's store."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        common.settings.cache_clear()
        return runner.invoke(app, list(args), input=input)

    yield run
    common.settings.cache_clear()


def test_passwords_are_argon2id_hashes(engine) -> None:
    with session_scope(engine) as s:
        row = editors.add(s, "Anna.K", PASSWORD, "anna@example.com")
        assert row.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert PASSWORD not in row.password_hash
        assert editors.authenticate(s, "anna.k", PASSWORD).name == "Anna.K"
        assert editors.authenticate(s, "Anna.K", PASSWORD + "x") is None


def test_editor_names_and_passwords(engine, monkeypatch) -> None:
    fast_password_hashing(monkeypatch)
    with session_scope(engine) as s:
        editors.add(s, "Anna.K", PASSWORD, "anna@example.com")
        assert editors.authenticate(s, "nobody", PASSWORD) is None
        assert editors.authenticate(s, "bad name with spaces", PASSWORD) is None
        with pytest.raises(StateError, match="already exists"):
            editors.add(s, "ANNA.K", PASSWORD)
        with pytest.raises(InputError, match="at least 12"):
            editors.add(s, "boris", "short")
        with pytest.raises(InputError, match="NAME"):
            editors.add(s, "-boris", PASSWORD)
        assert editors.add(s, "olga@example.com", PASSWORD).email == "olga@example.com"
        assert editors.add(s, "ivan", PASSWORD).email == ""
        editors.remove(s, "anna.k")
        with pytest.raises(NotFound):
            editors.get(s, "anna.k")


def test_editors_commands(cli, engine, monkeypatch) -> None:
    fast_password_hashing(monkeypatch)
    r = cli(
        "editors", "add", "anna", "--email", "anna@example.com", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert r.exit_code == 0, r.output
    assert "Added editor anna (tests go to anna@example.com)" in r.output
    assert PASSWORD not in r.output  # the prompt hides what is typed

    mismatch = cli("editors", "add", "boris", input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    short = cli("editors", "add", "boris", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in str(short.exception or short.output)
    twice = cli("editors", "add", "ANNA", "--password-stdin", input=f"{PASSWORD}\n")
    assert twice.exit_code == 1 and "already exists" in twice.output
    with session_scope(engine) as s:
        assert [e.name for e in editors.list_all(s)] == ["anna"]

    listing = cli("editors", "list")
    assert (
        listing.exit_code == 0
        and "anna@example.com" in listing.output
        and "never" in listing.output
    )

    new = "another long passphrase"
    assert cli("editors", "password", "anna", "--password-stdin", input=f"{new}\n").exit_code == 0
    with session_scope(engine) as s:
        assert editors.authenticate(s, "anna", new) is not None
        assert editors.authenticate(s, "anna", PASSWORD) is None

    assert cli("editors", "remove", "anna").exit_code == 0
    gone = cli("editors", "remove", "anna")
    assert gone.exit_code == 1 and isinstance(gone.exception, NotFound)
    assert "No editors yet" in cli("editors", "list").output
