"""The subscriber store on a real, migrated SQLite database."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from digest.clock import utcnow
from digest.errors import InputError, NotFound
from digest.store.engine import session_scope
from subscribers import store
from subscribers.model import Suppression

# -- addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "email", "key"),
    [
        ("Ivan.Petrov@Example.COM", "Ivan.Petrov@example.com", "ivan.petrov@example.com"),
        ("  anna@example.org \t", "anna@example.org", "anna@example.org"),
        ("user@bücher.de", "user@bücher.de", "user@bücher.de"),
        ("User@xn--bcher-kva.de", "User@bücher.de", "user@bücher.de"),
        ("иван@пример.рф", "иван@пример.рф", "иван@пример.рф"),
        ("Иван@Пример.РФ", "Иван@пример.рф", "иван@пример.рф"),
        ("o'brien+news@sub.example.co.uk", "o'brien+news@sub.example.co.uk", None),
        ("-dash@example.com", "-dash@example.com", None),
    ],
)
def test_normalise_email(raw: str, email: str, key: str | None) -> None:
    assert store.normalise_email(raw) == (email, key or email.lower())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("no-at-sign.example.com", "must have an @-sign"),
        ("two@@example.com", "@-sign"),
        ("a..b@example.com", "two periods"),
        ("user@localhost", "period"),
        ("user@example.local", "special-use"),
        ("a@b@example.com", "@-sign"),
        ("", "empty"),
        ("x@example.com\r\nBcc: victim@example.com", "line breaks"),
        ("x\0@example.com", "NUL"),
        ("a" * 250 + "@example.com", "254"),
        ("Name <a@example.com>", ""),
    ],
)
def test_invalid_addresses_raise_input_error_on_email(raw: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        store.normalise_email(raw)
    assert info.value.field == "email"
    assert str(info.value).startswith("email: ")
    assert reason in str(info.value)


def test_smtputf8_and_ascii_address() -> None:
    assert store.needs_smtputf8("иван@example.com")
    assert not store.needs_smtputf8("user@bücher.de")  # IDNA is enough for the domain
    assert store.ascii_address("user@bücher.de") == "user@xn--bcher-kva.de"
    assert store.ascii_address("plain@example.com") == "plain@example.com"


_LOCAL = st.text(alphabet="abcXYZ09.+-_'=!#~/{}|", min_size=1, max_size=70)
_LABEL = st.text(alphabet="abXY09-", min_size=1, max_size=66)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_TLD = st.sampled_from(["com", "ru", "Test", "local", "c0m", "x", "onion", "co", "-ru", ""])


@hsettings(max_examples=400, deadline=None)
@given(local=_LOCAL, domain=_DOMAIN, tld=_TLD)
def test_fast_path_agrees_with_email_validator(local: str, domain: str, tld: str) -> None:
    """The regex shortcut must never accept what email-validator rejects (or vice versa)."""
    raw = f"{local}@{domain}.{tld}" if tld else f"{local}@{domain}"
    try:
        expected = validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got = store.normalise_email(raw)[0]
    except InputError:
        got = None
    assert got == expected


# -- addresses and suppression ----------------------------------------------------


def test_address_upsert_keeps_names_and_merges_nothing_into_a_suppressed_one(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with session_scope(engine) as s:
        store.upsert_addresses(
            s, [store.address_row("A@example.com", "a@example.com", "Anna", {"x": "1"})], now
        )
        store.upsert_addresses(
            s, [store.address_row("a@example.com", "a@example.com", "", {"y": "2"})], now
        )
        row = store.get_by_email(s, "A@EXAMPLE.com")
        assert (row.email, row.name, row.attributes) == ("A@example.com", "Anna", {"y": "2"})
        assert store.suppress(s, row.id, Suppression.BOUNCED, "dsn 5.1.1")
        assert not store.suppress(s, row.id, Suppression.BOUNCED, "again")
        store.upsert_addresses(
            s, [store.address_row("a@example.com", "a@example.com", "New", {})], now
        )
        s.refresh(row)
        assert (row.name, row.suppression) == ("Anna", Suppression.BOUNCED)
        # a complaint outranks a bounce; nothing outranks a complaint
        assert store.suppress(s, row.id, Suppression.COMPLAINED, "arf")
        assert not store.suppress(s, row.id, Suppression.BOUNCED, "dsn")
        assert store.get(s, row.id).suppression == Suppression.COMPLAINED


def test_an_incoming_suppression_wins_over_a_clean_address(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with session_scope(engine) as s:
        store.upsert_addresses(
            s, [store.address_row("b@example.com", "b@example.com", "B", {})], now
        )
        store.upsert_addresses(
            s,
            [
                store.address_row(
                    "b@example.com", "b@example.com", "", {}, Suppression.COMPLAINED, "csv"
                )
            ],
            now,
        )
        row = store.get_by_email(s, "b@example.com")
        assert (row.suppression, row.suppression_source) == (Suppression.COMPLAINED, "csv")
        assert row.suppressed_at is not None


def test_record_bounce_reaches_threshold(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with session_scope(engine) as s:
        store.upsert_addresses(
            s, [store.address_row("b@example.com", "b@example.com", "", {})], now
        )
        row = store.get_by_email(s, "b@example.com")
        assert store.record_bounce(s, row.id, threshold=2) is False
        assert store.get(s, row.id).bounce_count == 1
        assert store.record_bounce(s, row.id, threshold=2) is True
        row = store.get(s, row.id)
        assert (row.suppression, row.bounce_count) == (Suppression.BOUNCED, 2)
        assert store.record_bounce(s, row.id, threshold=1) is True  # stays bounced, counts on
        assert store.get(s, row.id).bounce_count == 3
        with pytest.raises(NotFound):
            store.record_bounce(s, 424242, threshold=1)
        assert [r.id for r in store.get_many(s, [row.id, 10**6])] == [row.id]
        with pytest.raises(NotFound):
            store.require(s, "nobody@example.com")
