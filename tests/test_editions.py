"""Newsletters and their editions on the real SQLite and PostgreSQL: the one resolver, the
lifecycle, slots and keys, and the picks' order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from digest.clock import utcnow
from digest.editorial import editions, newsletters, picks
from digest.editorial.models import Edition, EditionStatus
from digest.errors import InputError, NotFound, StateError
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.samples import sample_pick


def pick(i: int, section: str = "News", featured: bool = False) -> picks.PickIn:
    raw = {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")}
    raw.update(section=section, featured=featured)
    return picks.validate_pick(raw, ["News", "Features", "Analysis", "Opinion"])


def test_a_fresh_store_has_one_newsletter_and_one_open_edition_for_next_friday(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        first = editions.open_edition(s, settings, nl)
        again = editions.open_edition(s, settings, nl)
    assert nl.slug == "default" and nl.is_default
    assert first.id == again.id and first.status == EditionStatus.DRAFT
    local = first.planned_at.astimezone(settings.tz)
    assert (local.weekday(), local.hour, local.minute) == (4, 9, 0)  # Friday 09:00 Moscow
    assert first.planned_at > utcnow()
    year, week, _ = local.isocalendar()
    assert first.key == f"{year}-W{week:02d}"


def test_the_database_allows_one_open_edition_per_newsletter(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        editions.open_edition(s, settings, nl)
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.add(Edition(newsletter_id=nl.id, key="2030-W01", status=EditionStatus.SCHEDULED))
        s.flush()


def test_sending_early_opens_the_next_draft_for_the_next_slot(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        this = editions.open_edition(s, settings, nl)
        picks.add_pick(s, this.id, pick(1))
        editions.freeze(s, settings, nl, this)
        assert editions.start_sending(s, settings, nl, this)
        assert not editions.start_sending(s, settings, nl, this)  # once only
        following = editions.open_edition(s, settings, nl)
    assert this.status == EditionStatus.SENDING
    assert following.id != this.id and following.status == EditionStatus.DRAFT
    assert following.planned_at - this.planned_at == timedelta(days=7)
    assert following.key != this.key
    with session_scope(engine) as s:  # picks added now go into the next edition
        nl = newsletters.resolve(s, settings)
        row = picks.add_pick(s, editions.open_edition(s, settings, nl).id, pick(2))
        assert row.edition_id == following.id
        with pytest.raises(StateError, match="already being sent"):
            picks.update_pick(s, picks.live_picks(s, this.id, settings.sections)[0].id, pick(3))


@pytest.mark.parametrize(
    ("schedule", "shape"),
    [
        ("0 9 * * fri", r"^\d{4}-W\d{2}$"),
        ("0 7 * * *", r"^\d{4}-\d{2}-\d{2}$"),
        ("0 7,19 * * *", r"^\d{4}-\d{2}-\d{2}-\d{4}$"),
    ],
)
def test_keys_are_readable_and_as_fine_as_the_schedule(
    engine, monkeypatch, schedule, shape
) -> None:
    import re

    monkeypatch.setenv("DIGEST_SCHEDULE", schedule)
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        edition = editions.open_edition(s, settings, nl)
    assert re.match(shape, edition.key), edition.key
    assert editions.check_key(edition.key) == edition.key


def test_a_draft_follows_a_schedule_change_but_a_scheduled_edition_keeps_its_time(
    engine, monkeypatch
) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        draft = editions.open_edition(s, settings, nl)
        friday = draft.planned_at
    monkeypatch.setenv("DIGEST_SCHEDULE", "30 7 * * mon")
    monday = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, monday)
        moved = editions.open_edition(s, monday, nl)
        assert moved.id == draft.id
        local = moved.planned_at.astimezone(monday.tz)
        assert (local.weekday(), local.hour, local.minute) == (0, 7, 30)
        chosen = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
        editions.reschedule(s, monday, nl, moved, chosen)
    with session_scope(engine) as s:  # back to Fridays: the editor's time stands
        nl = newsletters.resolve(s, settings)
        kept = editions.open_edition(s, settings, nl)
        assert (kept.status, kept.planned_at) == (EditionStatus.SCHEDULED, chosen)
    assert friday != chosen


def test_a_missed_draft_rolls_to_the_next_slot_with_its_picks(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        draft = editions.open_edition(s, settings, nl)
        picks.add_pick(s, draft.id, pick(1))
        draft.planned_at = utcnow() - timedelta(days=3)
        s.flush()
        rolled = editions.roll_to_next_slot(s, settings, nl, draft)
        assert rolled.id == draft.id and rolled.planned_at > utcnow()
        assert len(picks.live_picks(s, draft.id, settings.sections)) == 1


def test_freeze_renders_the_open_edition_only_and_needs_picks(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        draft = editions.open_edition(s, settings, nl)
        with pytest.raises(StateError, match="nothing picked"):
            editions.freeze(s, settings, nl, draft)
        picks.add_pick(s, draft.id, pick(1))
        built = editions.freeze(s, settings, nl, draft)
        assert built.is_built and built.content["newsletter"]["slug"] == "default"
        assert built.content["view_url"].endswith(f"/issues/{draft.key}")
        stamp = built.frozen_at
        assert editions.freeze(s, settings, nl, draft).frozen_at == stamp  # unchanged: no work
        editions.edit(s, draft, subject="A subject of the right length")
        assert editions.freeze(s, settings, nl, draft).frozen_at != stamp
        with pytest.raises(InputError, match="bidirectional"):
            editions.edit(s, draft, subject="Safe \u202egnp.exe")
        with pytest.raises(NotFound):
            editions.get(s, nl, "2031-W01")
        with pytest.raises(InputError):
            editions.check_key("../etc/passwd")


def test_another_newsletters_edition_links_to_its_own_archive(engine) -> None:
    from digest.delivery.preflight import check_issue

    settings = load_settings()
    with session_scope(engine) as s:
        newsletters.resolve(s, settings)
        culture = newsletters.add(s, "culture", "Culture Letter")
        draft = editions.open_edition(s, settings, culture)
        picks.add_pick(s, draft.id, pick(1))
        built = editions.freeze(s, settings, culture, draft)
        view = built.content["view_url"]
        assert view == f"{settings.base_url}/newsletters/culture/issues/{draft.key}"
        assert f'href="{view}"' in built.html
        report = check_issue(built, settings, spam=False)
        assert not [f for f in report.findings if f.code == "view-in-browser"], report.lines()


def test_the_picks_order_is_the_order_readers_see(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        draft = editions.open_edition(s, settings, nl)
        a = picks.add_pick(s, draft.id, pick(1, "Opinion"))
        b = picks.add_pick(s, draft.id, pick(2, "News"))
        c = picks.add_pick(s, draft.id, pick(3, "Features", featured=True))
        d = picks.add_pick(s, draft.id, pick(4, "News"))
        order = [p.id for p in picks.live_picks(s, draft.id, settings.sections)]
        assert order == [c.id, b.id, d.id, a.id]  # featured, News, Features(empty), Opinion
        moved, note = picks.move_pick(s, d.id, 2, settings.sections)
        assert [p.id for p in moved] == [c.id, d.id, b.id, a.id] and note == ""
        moved, note = picks.move_pick(s, d.id, 4, settings.sections)  # Opinion's place
        assert [p.id for p in moved] == [c.id, b.id, d.id, a.id]
        assert "stays in the News section (positions 2-3)" in note
        editions.freeze(s, settings, nl, draft)
        assert [p["id"] for p in draft.content["picks"]] == [c.id, b.id, d.id, a.id]
        picks.remove_pick(s, b.id)
        assert b.id not in [p.id for p in picks.live_picks(s, draft.id, settings.sections)]
        picks.restore_pick(s, b.id)  # undo
        assert b.id in [p.id for p in picks.live_picks(s, draft.id, settings.sections)]
        assert [p.id for p in picks.same_url(s, draft.id, a.url + "/")] == [a.id]


def test_newsletters_validate_their_settings_and_resolve(engine, monkeypatch) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        default = newsletters.resolve(s, settings)
        culture = newsletters.add(
            s,
            "culture",
            "The Culture Letter",
            schedule="0 18 * * wed",
            timezone="Europe/Berlin",
            from_addr="Culture <culture@news.example.com>",
            palette={"accent": "#0B5394"},
            language="ru",
        )
        for bad, field in (
            ({"schedule": "every wednesday"}, "schedule"),
            ({"timezone": "Mars/Olympus"}, "timezone"),
            ({"from_addr": "nobody"}, "from"),
            ({"palette": {"accent": "red; background: url(x)"}}, "palette"),
            ({"palette": {"font": "#000000"}}, "palette"),
            ({"language": "english!"}, "language"),
        ):
            with pytest.raises(InputError) as info:
                newsletters.add(s, "x-" + field, "X", **bad)
            assert info.value.field == field
        with pytest.raises(InputError, match="reserved"):
            newsletters.add(s, "desk", "Desk")
        with pytest.raises(InputError, match="already exists"):
            newsletters.add(s, "culture", "Again")
        own = newsletters.settings_for(settings, culture)
        assert (own.list_name, own.schedule, own.timezone) == (
            "The Culture Letter",
            "0 18 * * wed",
            "Europe/Berlin",
        )
        assert own.envelope_from == "culture@news.example.com"
        assert own.effective_list_id == f"culture.{settings.effective_list_id}"
        assert culture.palette == {"accent": "#0b5394"}
        # with two, the default is still what a command means unless told
        assert newsletters.resolve(s, settings).id == default.id
        assert newsletters.resolve(s, settings, "culture").id == culture.id
        with pytest.raises(NotFound, match="newsletters: default, culture"):
            newsletters.resolve(s, settings, "sports")
        edited = newsletters.edit(s, "culture", schedule="", name="Culture")
        assert edited.schedule is None and edited.name == "Culture"
    monkeypatch.setenv("DIGEST_NEWSLETTER", "culture")
    with session_scope(engine) as s:
        assert newsletters.resolve(s, load_settings()).slug == "culture"
