"""Secret keys that are not secret, and bidirectional controls in header-bound text."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from digest.delivery.message import greeting, to_header
from digest.editorial import editions, newsletters
from digest.errors import InputError, SettingsError
from digest.settings import load_settings
from digest.store.engine import session_scope
from subscribers import csvio, subscriptions
from tests.clirun import run_cli
from tests.webtools import csrf_of, desk_client

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "moc.elgoog" shows as "google.com"


# -- the secret key ------------------------------------------------------------------

GUESSABLE = [
    "a" * 32,
    " " * 40,
    "abcdefghijklmnopqrstuvwxyz012345",
    "0123456789" * 4,
    "password" * 4,
    "abababababababababababababababab",
    "changeme-changeme-changeme-12345",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
]


@pytest.mark.parametrize("key", GUESSABLE)
def test_guessable_secret_keys_are_refused_in_one_line(workdir, key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(secret_key=key)
    message = str(info.value)
    assert message.startswith("DIGEST_SECRET_KEY: looks guessable") and "\n" not in message
    assert key.strip() not in message or not key.strip()


def test_random_keys_of_every_usual_shape_pass(workdir) -> None:
    for _ in range(200):
        for key in (secrets.token_hex(16), secrets.token_urlsafe(24), secrets.token_urlsafe(48)):
            assert load_settings(secret_key=key).secret() == key.encode()


def test_the_command_line_says_so_with_exit_2(workdir, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", "k" * 40)
    run = run_cli(capsys, "subscribers", "count")
    assert run.code == 2 and run.one_line_error().startswith("DIGEST_SECRET_KEY: looks guessable")


# -- bidirectional controls ------------------------------------------------------------


def test_bidi_controls_are_refused_in_subjects_names_and_settings(workdir, engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        with pytest.raises(InputError) as info:
            editions.edit(
                s, editions.open_edition(s, settings, nl), subject=f"Your account {RLO}moc.elgoog"
            )
        assert info.value.field == "subject" and "bidirectional" in str(info.value)
        for char in ("\u202a", "\u2066", "\u200f", "\u061c"):
            with pytest.raises(InputError):
                subscriptions.add(s, nl.id, "reader@example.com", f"Anna{char}Petrova")
    fields = {
        "DIGEST_FROM": "DIGEST_FROM",
        "list_name": "DIGEST_LIST_NAME",
        "reply_to": "DIGEST_REPLY_TO",
    }
    for field, name in fields.items():
        value = f"News{RLO} <digest@news.example.com>"
        with pytest.raises(SettingsError, match=f"^{name}: must not contain bidirectional"):
            load_settings(**{field: value})
    # Right-to-left text itself is fine: only the invisible controls are refused.
    assert load_settings(list_name="Новости · חדשות · أخبار").list_name.endswith("أخبار")
    assert settings.secret()


def test_bidi_controls_in_a_csv_name_fail_the_import_naming_the_line(workdir, engine) -> None:
    path = Path(workdir) / "people.csv"
    path.write_text(f"email,name\nok@example.com,Ok\nbad@example.com,Mal{RLO}lory\n")
    with session_scope(engine) as s:
        nl = newsletters.ensure_default(s).id
    with pytest.raises(InputError) as info, session_scope(engine) as s:
        csvio.import_csv(s, path, nl, confirmed=True)
    assert info.value.line == 3 and info.value.field == "name"
    with session_scope(engine) as s:
        assert subscriptions.members(s, nl) == []  # nothing half-written


def test_stored_names_and_story_titles_cannot_smuggle_them_into_headers(workdir) -> None:
    header = to_header("reader@example.com", f"Anna{RLO}Petrova").decode()
    assert RLO not in header and "Anna Petrova" in header
    assert RLO not in greeting(f"{RLO}Anna")
    pick = {"title": f"Exclusive{RLO}txt.exe", "featured": True}
    assert RLO not in editions.default_subject("The Weekly Digest", [pick])


def test_the_desk_and_the_sign_up_form_refuse_them(serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        csrf = csrf_of(c.get("/subscribe").text)
        data = {"csrf": csrf, "email": "olga@example.org", "name": f"Olga{RLO}", "consent": "yes"}
        r = c.post("/subscribe", data=data)
        assert r.status_code == 400 and "bidirectional" in r.text
    with desk_client(srv) as c:
        page = c.get("/desk/")
        key = re.search(r'name="key" value="([^"]+)"', page.text).group(1)
        data = {"csrf": csrf_of(page.text), "key": key, "subject": f"Weekly{RLO}", "intro": ""}
        r = c.post("/desk/issue", data=data)
        assert r.status_code == 400 and "bidirectional" in r.text
