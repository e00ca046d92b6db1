"""Subscriptions on the real SQLite and PostgreSQL: one address, several newsletters."""

from __future__ import annotations

import pytest

from digest.editorial import newsletters
from digest.errors import InputError, NotFound, StateError
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import STATUSES, SubscriberStatus, SubscriptionStatus, Suppression


@pytest.fixture
def two(engine):  # type: ignore[no-untyped-def]
    """Two newsletters: (weekly id, culture id)."""
    with session_scope(engine) as s:
        weekly = newsletters.add(s, "weekly", "The Weekly Digest")
        culture = newsletters.add(s, "culture", "The Culture Letter")
        return weekly.id, culture.id


def test_add_new_pending_and_confirmed(engine, two) -> None:  # type: ignore[no-untyped-def]
    weekly, _ = two
    with session_scope(engine) as s:
        a = subscriptions.add(s, weekly, "Anna@Example.com", "Anna  K.")
        b = subscriptions.add(
            s, weekly, "boris@example.com", status="confirmed", source="web", attributes={"x": "1"}
        )
    assert (a.email, a.subscriber.email_key, a.subscriber.name, a.status) == (
        "Anna@example.com",
        "anna@example.com",
        "Anna K.",
        SubscriberStatus.PENDING,
    )
    assert a.subscription.consent_at is None and a.subscription.source == "cli"
    assert b.status == SubscriberStatus.CONFIRMED and b.subscription.consent_at is not None
    assert b.subscription.consent_source == "web" and b.subscriber.attributes == {"x": "1"}


def test_one_address_two_newsletters_each_with_its_own_status(engine, two) -> None:  # type: ignore[no-untyped-def]
    weekly, culture = two
    with session_scope(engine) as s:
        subscriptions.add(s, weekly, "reader@example.com", "Reader", status="confirmed")
        subscriptions.add(s, culture, "READER@example.com", status="confirmed")
    with session_scope(engine) as s:
        member = subscriptions.unsubscribe(s, weekly, "reader@example.com", "one-click")
        assert member.status == SubscriberStatus.UNSUBSCRIBED
        assert subscriptions.find(s, culture, "reader@example.com").status == "confirmed"
        assert subscriptions.mailable_count(s, weekly) == 0
        assert subscriptions.mailable_count(s, culture) == 1
        assert len(list(s.scalars(__import__("sqlalchemy").select(store.Subscriber)))) == 1


def test_re_adding_confirms_pending_merges_attributes_keeps_name(engine, two) -> None:  # type: ignore[no-untyped-def]
    weekly, _ = two
    with session_scope(engine) as s:
        subscriptions.add(s, weekly, "anna@example.com", "Anna", attributes={"city": "Riga"})
    with session_scope(engine) as s:
        m = subscriptions.add(
            s,
            weekly,
            "ANNA@example.com",
            "",
            status="confirmed",
            source="form",
            attributes={"lang": "ru"},
        )
        assert m.status == SubscriberStatus.CONFIRMED and m.subscription.consent_source == "form"
        assert m.subscriber.name == "Anna"
        assert m.subscriber.attributes == {"city": "Riga", "lang": "ru"}
        assert m.subscription.status_changed_at is not None
        again = subscriptions.add(s, weekly, "anna@example.com", "Anna B.")
        assert again.status == SubscriberStatus.CONFIRMED and again.subscriber.name == "Anna B."
        assert subscriptions.count(s, weekly)[SubscriberStatus.CONFIRMED] == 1


@pytest.mark.parametrize("how", ["unsubscribed", "bounced", "complained"])
def test_re_adding_never_revives_a_blocked_address(engine, two, how: str) -> None:  # type: ignore[no-untyped-def]
    weekly, culture = two
    with session_scope(engine) as s:
        m = subscriptions.add(s, weekly, "gone@example.com", "Gone", status="confirmed")
        if how == "unsubscribed":
            subscriptions.unsubscribe(s, weekly, "gone@example.com")
        else:
            store.suppress(s, m.subscriber.id, Suppression(how), "test")
    with session_scope(engine) as s:
        again = subscriptions.add(s, weekly, "Gone@Example.com", "New Name", status="confirmed")
        assert again.status == how
        if how != "unsubscribed":  # suppression is per address: no newsletter gets through
            other = subscriptions.add(s, culture, "gone@example.com", status="confirmed")
            assert other.status == how
            assert subscriptions.mailable_count(s, culture) == 0
            assert again.subscriber.name == "Gone"


def test_add_rejects_bad_input(engine, two) -> None:  # type: ignore[no-untyped-def]
    weekly, _ = two
    with session_scope(engine) as s:
        with pytest.raises(InputError, match="email"):
            subscriptions.add(s, weekly, "not-an-address")
        with pytest.raises(InputError, match="status"):
            subscriptions.add(s, weekly, "a@example.com", status="unsubscribed")
        with pytest.raises(InputError, match="name"):
            subscriptions.add(s, weekly, "a@example.com", "x" * 201)
        row = subscriptions.add(s, weekly, "a@example.com", "Evil\r\nBcc: x@example.com")
        assert row.subscriber.name == "Evil Bcc: x@example.com"


def test_set_status_rules(engine, two) -> None:  # type: ignore[no-untyped-def]
    weekly, culture = two
    with session_scope(engine) as s:
        sid = subscriptions.add(s, weekly, "p@example.com").subscriber.id
        sub = subscriptions.set_status(s, weekly, sid, "confirmed", "confirm-link")
        assert sub.consent_source == "confirm-link" and sub.consent_at is not None
        subscriptions.set_status(s, weekly, sid, "unsubscribed", "one-click")
        with pytest.raises(StateError, match="unsubscribed"):
            subscriptions.set_status(s, weekly, sid, "confirmed", "import")
        fresh = subscriptions.set_status(s, weekly, sid, "confirmed", "double opt-in", force=True)
        assert fresh.status == SubscriptionStatus.CONFIRMED
        # a newsletter the address never had: the subscription is made
        made = subscriptions.set_status(s, culture, sid, "confirmed", "preferences page")
        assert made.newsletter_id == culture
        assert subscriptions.unsubscribe_all(s, sid, "leave all") == 2
        assert {x.status for x in subscriptions.of_subscriber(s, sid)} == {"unsubscribed"}
        with pytest.raises(NotFound):
            subscriptions.unsubscribe(s, weekly, "nobody@example.com")


def test_members_count_and_pages(engine, two) -> None:  # type: ignore[no-untyped-def]
    weekly, culture = two
    with session_scope(engine) as s:
        ids = []
        for i in range(25):
            m = subscriptions.add(
                s, weekly, f"u{i}@example.com", status="confirmed" if i % 3 else "pending"
            )
            ids.append(m.subscriber.id)
        subscriptions.add(s, culture, "u0@example.com", status="confirmed")
        subscriptions.unsubscribe(s, weekly, "u1@example.com")
        store.suppress(s, ids[2], Suppression.BOUNCED, "dsn")
    with session_scope(engine) as s:
        counts = subscriptions.count(s, weekly)
        assert set(counts) == set(STATUSES)
        assert counts == {
            SubscriberStatus.PENDING: 9,
            SubscriberStatus.CONFIRMED: 14,
            SubscriberStatus.UNSUBSCRIBED: 1,
            SubscriberStatus.BOUNCED: 1,
            SubscriberStatus.COMPLAINED: 0,
        }
        assert subscriptions.count(s, culture)[SubscriberStatus.CONFIRMED] == 1
        confirmed = subscriptions.members(s, weekly, status="confirmed")
        assert len(confirmed) == 14 and ids[2] not in {m.subscriber.id for m in confirmed}
        page = subscriptions.members(s, weekly, limit=5, offset=5)
        assert [m.subscriber.id for m in page] == ids[5:10]
        with pytest.raises(InputError):
            subscriptions.members(s, weekly, status="active")
