"""The subscriber store on a real, migrated SQLite database."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from digest.errors import InputError, NotFound, StateError
from digest.store.engine import session_scope
from subscribers import store
from subscribers.model import STATUSES, SubscriberStatus

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


# -- add / remove / status -------------------------------------------------------


def test_add_new_pending_and_confirmed(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        a = store.add(s, "Anna@Example.com", "Anna  K.")
        b = store.add(
            s,
            "boris@example.com",
            status=SubscriberStatus.CONFIRMED,
            source="web",
            attributes={"x": "1"},
        )
    assert (a.email, a.email_key, a.name, a.status) == (
        "Anna@example.com",
        "anna@example.com",
        "Anna K.",
        SubscriberStatus.PENDING,
    )
    assert a.consent_at is None and a.consent_source == "cli"
    assert (
        b.status == SubscriberStatus.CONFIRMED
        and b.consent_at is not None
        and b.consent_source == "web"
    )
    assert b.attributes == {"x": "1"}


def test_re_adding_confirms_pending_merges_attributes_keeps_name(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        store.add(s, "anna@example.com", "Anna", attributes={"city": "Riga"})
    with session_scope(engine) as s:
        row = store.add(
            s,
            "ANNA@example.com",
            "",
            status=SubscriberStatus.CONFIRMED,
            source="form",
            attributes={"lang": "ru"},
        )
        assert row.status == SubscriberStatus.CONFIRMED and row.consent_source == "form"
        assert row.name == "Anna"
        assert row.attributes == {"city": "Riga", "lang": "ru"}
        assert row.status_changed_at is not None
        again = store.add(s, "anna@example.com", "Anna B.")  # pending request: stays confirmed
        assert again.status == SubscriberStatus.CONFIRMED and again.name == "Anna B."
        assert store.count(s)[SubscriberStatus.CONFIRMED] == 1


@pytest.mark.parametrize(
    "blocked",
    [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED],
)
def test_re_adding_never_revives_blocked(engine, blocked: str) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        row = store.add(s, "gone@example.com", "Gone", status=SubscriberStatus.CONFIRMED)
        store.set_status(s, row.id, blocked, "test")
    with session_scope(engine) as s:
        row = store.add(
            s,
            "Gone@Example.com",
            "New Name",
            status=SubscriberStatus.CONFIRMED,
            attributes={"a": "b"},
        )
        assert row.status == blocked
        assert row.name == "Gone" and row.attributes == {}


def test_add_rejects_bad_input(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        with pytest.raises(InputError, match="email"):
            store.add(s, "not-an-address")
        with pytest.raises(InputError, match="status"):
            store.add(s, "a@example.com", status=SubscriberStatus.UNSUBSCRIBED)
        with pytest.raises(InputError, match="name"):
            store.add(s, "a@example.com", "x" * 201)
        row = store.add(s, "a@example.com", "Evil\r\nBcc: x@example.com")
        assert row.name == "Evil Bcc: x@example.com"


def test_remove_keeps_the_row_blocked(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        store.add(s, "leaver@example.com", status=SubscriberStatus.CONFIRMED)
    with session_scope(engine) as s:
        row = store.remove(s, "LEAVER@example.com")
        assert row.status == SubscriberStatus.UNSUBSCRIBED and row.status_changed_at is not None
    with session_scope(engine) as s:
        assert store.get_by_email(s, "leaver@example.com").status == SubscriberStatus.UNSUBSCRIBED
        with pytest.raises(NotFound):
            store.remove(s, "nobody@example.com")


def test_set_status_rules(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        row = store.add(s, "p@example.com")
        confirmed = store.set_status(s, row.id, SubscriberStatus.CONFIRMED, "confirm-link")
        assert confirmed.consent_source == "confirm-link" and confirmed.consent_at is not None
        store.set_status(s, row.id, SubscriberStatus.COMPLAINED, "fbl")
        with pytest.raises(StateError, match="complained"):
            store.set_status(s, row.id, SubscriberStatus.CONFIRMED, "import")
        assert store.get(s, row.id).status == SubscriberStatus.COMPLAINED
        assert store.set_status(
            s, row.id, SubscriberStatus.CONFIRMED, "double opt-in", force=True
        ).status == (SubscriberStatus.CONFIRMED)
        with pytest.raises(InputError):
            store.set_status(s, row.id, "active", "x")
        with pytest.raises(NotFound):
            store.set_status(s, 99999, SubscriberStatus.CONFIRMED, "x")


def test_record_bounce_reaches_threshold(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        row = store.add(s, "b@example.com", status=SubscriberStatus.CONFIRMED)
        assert store.record_bounce(s, row.id, threshold=2) is False
        assert store.get(s, row.id).bounce_count == 1
        assert store.record_bounce(s, row.id, threshold=2) is True
        row = store.get(s, row.id)
        assert (row.status, row.bounce_count) == (SubscriberStatus.BOUNCED, 2)
        other = store.add(s, "u@example.com", status=SubscriberStatus.CONFIRMED)
        store.remove(s, "u@example.com")
        assert store.record_bounce(s, other.id, threshold=1) is False
        assert store.get(s, other.id).status == SubscriberStatus.UNSUBSCRIBED
        with pytest.raises(NotFound):
            store.record_bounce(s, 424242, threshold=1)


def test_list_count_and_keyset_iteration(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        ids = []
        for i in range(25):
            row = store.add(
                s,
                f"u{i}@example.com",
                status=SubscriberStatus.CONFIRMED if i % 3 else SubscriberStatus.PENDING,
            )
            ids.append(row.id)
        store.remove(s, "u1@example.com")
    with session_scope(engine) as s:
        counts = store.count(s)
        assert set(counts) == set(STATUSES)
        assert counts == {
            SubscriberStatus.PENDING: 9,
            SubscriberStatus.CONFIRMED: 15,
            SubscriberStatus.UNSUBSCRIBED: 1,
            SubscriberStatus.BOUNCED: 0,
            SubscriberStatus.COMPLAINED: 0,
        }
        confirmed = [r.id for r in store.list_(s, status=SubscriberStatus.CONFIRMED)]
        assert list(store.iter_confirmed_ids(s, batch=4)) == confirmed
        assert list(store.iter_confirmed_ids(s, after_id=confirmed[6], batch=4)) == confirmed[7:]
        page = store.list_(s, limit=5, offset=5)
        assert [r.id for r in page] == ids[5:10]
        assert [r.id for r in store.get_many(s, [ids[3], ids[1], 10**6])] == [ids[1], ids[3]]
        with pytest.raises(InputError):
            store.list_(s, status="active")
