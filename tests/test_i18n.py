"""A newsletter's language: the fixed words of its emails, its dates and its greeting."""

from __future__ import annotations

import email
import email.policy

from digest.delivery import campaign
from digest.editorial import editions, i18n, newsletters, picks
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.samples import sample_pick


def test_every_catalog_has_every_word() -> None:
    for language, words in i18n.CATALOGS.items():
        assert set(words) == set(i18n.EN), language
        assert len(words["weekdays"].split()) == 7 and len(words["months"].split()) == 12


def test_unknown_languages_fall_back_to_their_base_then_english() -> None:
    assert i18n.words("ru-RU") is i18n.RU
    assert i18n.words("pt-BR") is i18n.EN
    assert i18n.date_label("2026-12-04", "ru") == "пятница, 4 декабря 2026 г."
    assert i18n.date_label("2026-12-04", "de") == "Freitag, 4. Dezember 2026"
    assert i18n.greeting("Анна", "ru") == "Здравствуйте, Анна!"


def test_a_russian_newsletter_speaks_russian(engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        newsletters.ensure_default(s)
        nl = newsletters.add(s, "ru", "Дайджест", language="ru")
        edition = editions.open_edition(s, settings, nl)
        raw = {
            k: v for k, v in sample_pick(1, featured=True).items() if k not in ("id", "position")
        }
        raw["read_minutes"], raw["byline"] = 4, "AFP"
        picks.add_pick(s, edition.id, picks.validate_pick(raw, settings.sections))
        editions.freeze(s, settings, nl, edition)
        own = newsletters.settings_for(settings, nl)
        data = campaign.message_for(own, edition, "anna@example.com", "Анна Петрова", 7)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Content-Language"] == "ru"
    text, html = (p.get_content() for p in msg.get_payload())
    assert "Здравствуйте, Анна!" in text and "Здравствуйте, Анна!" in html
    assert "Отписаться" in html and "Управление подписками" in html and "Unsubscribe" not in html
    assert "4 мин чтения" in text and 'lang="ru"' in html
