"""The numbers of `digest stats` and the desk, on both backends: per edition (delivered,
failed, and bounces, complaints and unsubscribes in the window until the next edition),
per story, per section, and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import update

from digest.clock import utcnow
from digest.delivery import campaign
from digest.delivery.models import Delivery, DeliveryStatus
from digest.editorial import newsletters
from digest.editorial.models import Edition, EditionStatus
from digest.stats import counting, export, report
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import Subscriber, Subscription, Suppression
from tests.sending import add_picks, add_subscribers


def _sent(engine, settings, *, failed: tuple[str, ...] = ()) -> Edition:  # type: ignore[no-untyped-def]
    """Start the next edition's send and record its deliveries as done."""
    edition = campaign.prepare_send(engine, settings)
    with session_scope(engine) as s:
        s.execute(update(Delivery).values(status=DeliveryStatus.SENT))  # earlier ones too
        for email in failed:
            sid = store.get_by_email(s, email).id
            s.execute(
                update(Delivery)
                .where(Delivery.edition_id == edition.id, Delivery.subscriber_id == sid)
                .values(status=DeliveryStatus.FAILED)
            )
        s.execute(update(Edition).where(Edition.id == edition.id).values(status=EditionStatus.SENT))
    return edition


def test_editions_stories_and_sections(engine, settings) -> None:
    now = utcnow()
    emails = add_subscribers(engine, 5, settings=settings)
    with session_scope(engine) as s:  # left before anything was sent: counts for nobody
        nl = newsletters.resolve(s, settings)
        subscriptions.unsubscribe(s, nl.id, emails[4])
    add_picks(engine, settings, 3)
    first = _sent(engine, settings)
    with session_scope(engine) as s:  # during the first edition's window
        subscriptions.unsubscribe(s, nl.id, emails[0])
        store.suppress(s, store.get_by_email(s, emails[2]).id, Suppression.COMPLAINED, "arf")
    add_picks(engine, settings, 2)
    second = _sent(engine, settings, failed=(emails[3],))
    with session_scope(engine) as s:
        store.suppress(s, store.get_by_email(s, emails[1]).id, Suppression.BOUNCED, "dsn")
        ids = {e: store.get_by_email(s, e).id for e in emails}
        # When things happened (the store's clock ran for a second only).
        times = {first.id: now - timedelta(days=2), second.id: now - timedelta(days=1)}
        for edition_id, when in times.items():
            s.execute(update(Edition).where(Edition.id == edition_id).values(send_started_at=when))
        changed = {emails[4]: 3, emails[0]: 1.5}
        for email, days in changed.items():
            s.execute(
                update(Subscription)
                .where(Subscription.subscriber_id == ids[email])
                .values(status_changed_at=now - timedelta(days=days))
            )
        for email, days in {emails[2]: 1.9, emails[1]: 0.5}.items():
            s.execute(
                update(Subscriber)
                .where(Subscriber.id == ids[email])
                .values(suppressed_at=now - timedelta(days=days))
            )
        picks_1 = [p["id"] for p in s.get(Edition, first.id).content["picks"]]
        picks_2 = [p["id"] for p in s.get(Edition, second.id).content["picks"]]
        for pick, n in ((picks_1[0], 3), (picks_1[2], 1), (picks_2[1], 2)):
            for _ in range(n):
                counting.add(s, first.id if pick in picks_1 else second.id, pick, None, now)
        counting.take_back(s, first.id, [(picks_1[2], None), (picks_1[2], None)])  # never < 0

    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        rows = report.editions(s, nl)
        got = [
            (r.key, r.delivered, r.failed, r.bounced, r.complaints, r.unsubscribes, r.clicks)
            for r in rows
        ]
        assert got == [
            (second.key, 1, 1, 1, 0, 0, 2),
            (first.key, 4, 0, 0, 1, 1, 3),
        ]
        assert [r.click_through for r in rows] == [2.0, 0.75]
        assert all(r.mode == "aggregate" and r.readers is None for r in rows)

        stories = report.stories(s, s.get(Edition, first.id))
        assert [(r.position, r.clicks) for r in stories] == [(1, 3), (2, 0), (3, 0)]
        assert [round(r.share, 2) for r in stories] == [1.0, 0.0, 0.0]

        reads = report.sections(s, nl)
        assert reads.editions == [second.key, first.key] and reads.clicks == 5
        assert abs(sum(r.share for r in reads.rows) - 1) < 1e-9
        assert reads.rows[0].clicks == max(r.clicks for r in reads.rows)
        assert sum(r.stories for r in reads.rows) == 5

    table = export.edition_table(rows)
    parsed = list(csv.DictReader(io.StringIO(export.to_text(table))))
    assert [(p["edition"], p["clicks"], p["click_through"]) for p in parsed] == [
        (second.key, "2", "2.0000"),
        (first.key, "3", "0.7500"),
    ]
    assert parsed[0]["sent"].endswith("+00:00")


def test_csv_cells_cannot_become_formulas() -> None:
    row = report.StoryRow(1, 7, '=HYPERLINK("http://evil")', "News", "https://x.example/")
    text = export.to_text(export.story_table("2026-W49", [row]))
    assert "'=HYPERLINK" in text and "\n=" not in text and ",=" not in text


def test_no_editions_yet(engine, settings) -> None:
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        assert report.editions(s, nl) == []
        assert report.sections(s, nl).rows == []
