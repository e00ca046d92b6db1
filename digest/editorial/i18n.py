"""The fixed words of every email, in the newsletter's language.

Editors write the stories, subjects and section names in whatever language they like;
what the templates add around them (the greeting, "Top story", the footer links, dates,
reading times) comes from here, chosen by the newsletter's language (`digest newsletters
edit SLUG --language ru`). An unknown language falls back to its base ("pt-BR" -> "pt"),
then to English. Templates see the words as `t` (e.g. `{{ t.unsubscribe }}`).
"""

from __future__ import annotations

from datetime import date
from functools import cache

from digest.errors import InputError

EN = {
    "hello": "Hello {first},",
    "hello_anonymous": "Hello,",
    "top_story": "Top story",
    "read_more": "Read more about",
    "picture": "Picture",
    "by": "By {name}",
    "min_read": "{n} min read",
    "week": "Week {n}",
    "edition": "Edition {key}",
    "also": "Also this week",
    "message_from": "A message from {name}",
    "dear_readers": "Dear readers,",
    "appeal": (
        "Independent journalism is under pressure as never before. Every story in this "
        "newsletter was chosen by our editors, and every one of them took reporters' time and "
        "courage to write."
    ),
    "appeal_ask": (
        "Your support, no matter how small, makes a world of difference. If you can, please "
        "support us, once or every month. It is quick to set up, and every contribution "
        "counts. Thank you for standing with us."
    ),
    "appeal_short": (
        "Independent journalism is under pressure as never before. Your support, no matter "
        "how small, makes a world of difference. If you can, please support us:"
    ),
    "once": "Once",
    "monthly": "Monthly",
    "annual": "Annual",
    "reason": "You receive this because you subscribed to {name}.",
    "view_in_browser": "View in browser",
    "manage": "Manage subscriptions",
    "manage_long": "Manage your subscriptions",
    "unsubscribe": "Unsubscribe",
    "privacy": "Privacy policy",
    "links": "Links",
    "weekdays": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
    "months": (
        "January February March April May June July August September October November December"
    ),
    "date": "{weekday}, {day} {month} {year}",
}

RU = {
    "hello": "Здравствуйте, {first}!",
    "hello_anonymous": "Здравствуйте!",
    "top_story": "Главное",
    "read_more": "Читайте также",
    "picture": "Фото",
    "by": "{name}",
    "min_read": "{n} мин чтения",
    "week": "Неделя {n}",
    "edition": "Выпуск {key}",
    "also": "Также на этой неделе",
    "message_from": "{name}: обращение к читателям",
    "dear_readers": "Дорогие читатели!",
    "appeal": (
        "Независимая журналистика сегодня под давлением как никогда. Каждый материал этой "
        "рассылки отобран нашими редакторами, и за каждым стоят время и смелость журналистов."
    ),
    "appeal_ask": (
        "Ваша поддержка, даже самая небольшая, очень важна. Если можете, поддержите нас — "
        "разово или ежемесячно. Это займёт минуту, и каждый вклад имеет значение. Спасибо, "
        "что вы с нами."
    ),
    "appeal_short": (
        "Независимая журналистика сегодня под давлением как никогда. Ваша поддержка, даже "
        "самая небольшая, очень важна. Если можете, поддержите нас:"
    ),
    "once": "Разово",
    "monthly": "Ежемесячно",
    "annual": "Раз в год",
    "reason": "Вы получаете это письмо, потому что подписались на рассылку «{name}».",
    "view_in_browser": "Открыть в браузере",
    "manage": "Управление подписками",
    "manage_long": "Управление подписками",
    "unsubscribe": "Отписаться",
    "privacy": "Политика конфиденциальности",
    "links": "Ссылки",
    "weekdays": "понедельник вторник среда четверг пятница суббота воскресенье",
    "months": "января февраля марта апреля мая июня июля августа сентября октября ноября декабря",
    "date": "{weekday}, {day} {month} {year} г.",
}

DE = {
    "hello": "Hallo {first},",
    "hello_anonymous": "Hallo,",
    "top_story": "Top-Thema",
    "read_more": "Mehr zum Thema",
    "picture": "Bild",
    "by": "Von {name}",
    "min_read": "{n} Min. Lesezeit",
    "week": "Woche {n}",
    "edition": "Ausgabe {key}",
    "also": "Außerdem diese Woche",
    "message_from": "Eine Nachricht von {name}",
    "dear_readers": "Liebe Leserinnen und Leser,",
    "appeal": (
        "Unabhängiger Journalismus steht unter Druck wie nie zuvor. Jede Geschichte in diesem "
        "Newsletter haben unsere Redakteurinnen und Redakteure ausgewählt, und jede hat Zeit "
        "und Mut gekostet."
    ),
    "appeal_ask": (
        "Ihre Unterstützung, so klein sie auch ist, macht einen großen Unterschied. Wenn Sie "
        "können, unterstützen Sie uns einmalig oder monatlich. Das geht schnell, und jeder "
        "Beitrag zählt. Danke, dass Sie an unserer Seite stehen."
    ),
    "appeal_short": (
        "Unabhängiger Journalismus steht unter Druck wie nie zuvor. Ihre Unterstützung, so "
        "klein sie auch ist, macht einen großen Unterschied. Wenn Sie können, unterstützen Sie "
        "uns:"
    ),
    "once": "Einmalig",
    "monthly": "Monatlich",
    "annual": "Jährlich",
    "reason": "Sie erhalten diese E-Mail, weil Sie {name} abonniert haben.",
    "view_in_browser": "Im Browser ansehen",
    "manage": "Abos verwalten",
    "manage_long": "Ihre Abonnements verwalten",
    "unsubscribe": "Abbestellen",
    "privacy": "Datenschutz",
    "links": "Links",
    "weekdays": "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag",
    "months": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "date": "{weekday}, {day}. {month} {year}",
}

CATALOGS = {"en": EN, "ru": RU, "de": DE}
LANGUAGES = tuple(CATALOGS)


@cache
def words(language: str | None) -> dict[str, str]:
    """The catalog for a language tag: exact, then its base ("pt-BR" -> "pt"), then English."""
    tag = (language or "en").lower()
    return CATALOGS.get(tag) or CATALOGS.get(tag.split("-")[0]) or EN


def date_label(iso: str, language: str | None = "en") -> str:
    """'2026-11-27' -> 'Friday, 27 November 2026' (or its translation), locale-independent."""
    try:
        d = date.fromisoformat(iso)
    except (TypeError, ValueError):
        raise InputError(f"not an ISO date: {iso!r}", source="issue", field="date") from None
    w = words(language)
    return w["date"].format(
        weekday=w["weekdays"].split()[d.weekday()],
        day=d.day,
        month=w["months"].split()[d.month - 1],
        year=d.year,
    )


def greeting(first: str, language: str | None = "en") -> str:
    w = words(language)
    return w["hello"].format(first=first) if first else w["hello_anonymous"]
