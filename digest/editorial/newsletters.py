"""Newsletters: several per installation, each with its own sender, schedule and readers.

`resolve` is how every command, page and job finds the newsletter it works on: the
slug it was given, else DIGEST_NEWSLETTER, else the only one there is (or the default
one). `settings_for` gives that newsletter's view of the settings: its name, sender,
List-Id, schedule, zone and sections in place of the operator's defaults, so the
render, message and send code needs nothing newsletter-specific.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.editorial.models import Newsletter
from digest.errors import InputError, NotFound, SettingsError
from digest.settings import Settings, load_settings

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
#: Slugs that would shadow a path of the web app or read badly in commands.
RESERVED = frozenset({"api", "desk", "issues", "static", "newsletters", "all", "none", "new"})
DEFAULT_SLUG = "default"
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
#: Palette entries an editor may override (see templates/_palette.j2).
PALETTE_KEYS = frozenset(
    {"page", "paper", "ink", "muted", "accent", "on_accent", "rule", "support"}
    | {"dark_page", "dark_paper", "dark_ink", "dark_muted", "dark_accent", "dark_rule"}
    | {"dark_support"}
)
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?$")
TEMPLATE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,59}$")


def check_slug(slug: str) -> str:
    slug = slug.strip().lower()
    if not SLUG_RE.match(slug):
        raise InputError(
            "must be 1-40 lower-case letters, digits or '-' (e.g. culture)", field="slug"
        )
    if slug in RESERVED:
        raise InputError(f"{slug!r} is reserved; choose another", field="slug")
    return slug


def check_palette(palette: dict[str, Any]) -> dict[str, str]:
    """Only known colour names, only #rrggbb values: nothing else reaches the CSS."""
    out = {}
    for key, value in palette.items():
        if key not in PALETTE_KEYS:
            allowed = ", ".join(sorted(PALETTE_KEYS))
            raise InputError(f"unknown colour {key!r}; known: {allowed}", field="palette")
        if not isinstance(value, str) or not COLOUR_RE.match(value):
            raise InputError(f"{key} must be a colour like #0b5394", field="palette")
        out[key] = value.lower()
    return out


def check_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Validate newsletter settings with the same rules as the DIGEST_* settings."""
    mapping = {
        "name": "list_name",
        "from_addr": "DIGEST_FROM",
        "reply_to": "reply_to",
        "list_id": "list_id",
        "schedule": "schedule",
        "timezone": "timezone",
        "sections": "sections",
    }
    trial = {mapping[k]: v for k, v in values.items() if k in mapping and v is not None}
    if trial:
        try:
            load_settings(**trial)
        except SettingsError as exc:  # "DIGEST_SCHEDULE: ..." -> "schedule: ..."
            setting, _, why = str(exc).partition(": ")
            option = next(
                (k for k, v in mapping.items() if f"DIGEST_{v.upper()}" == setting or v == setting),
                setting,
            )
            raise InputError(why, field=option.replace("from_addr", "from")) from None
    if "language" in values and not LANGUAGE_RE.match(values["language"] or ""):
        raise InputError("must be a language tag such as en, ru or pt-BR", field="language")
    if "template" in values and not TEMPLATE_RE.match(values["template"] or ""):
        raise InputError("must be a template name such as digest or culture", field="template")
    if values.get("palette") is not None:
        values["palette"] = check_palette(values["palette"])
    return values


@dataclass(frozen=True)
class View:
    """What the render needs to know about a newsletter (goes into each edition's snapshot)."""

    slug: str
    name: str
    language: str
    template: str
    palette: dict[str, str]
    archive_url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "language": self.language,
            "template": self.template,
            "palette": dict(self.palette),
            "archive_url": self.archive_url,
        }


def archive_path(newsletter: Newsletter) -> str:
    """Where its editions are published: /issues for the default, /newsletters/SLUG/issues."""
    return "/issues" if newsletter.is_default else f"/newsletters/{newsletter.slug}/issues"


def settings_for(settings: Settings, newsletter: Newsletter) -> Settings:
    """The settings as this newsletter sees them (its overrides in place of the defaults)."""
    update: dict[str, Any] = {}
    if newsletter.name:
        update["list_name"] = newsletter.name
    if newsletter.from_addr:
        update["from_"] = newsletter.from_addr
    if newsletter.reply_to:
        update["reply_to"] = newsletter.reply_to
    if newsletter.list_id:
        update["list_id"] = newsletter.list_id
    elif not newsletter.is_default:
        update["list_id"] = f"{newsletter.slug}.{settings.effective_list_id}"
    if newsletter.schedule:
        update["schedule"] = newsletter.schedule
    if newsletter.timezone:
        update["timezone"] = newsletter.timezone
    if newsletter.sections:
        update["sections"] = list(newsletter.sections)
    return settings.model_copy(update=update) if update else settings


def view(settings: Settings, newsletter: Newsletter) -> View:
    own = settings_for(settings, newsletter)
    return View(
        slug=newsletter.slug,
        name=own.list_name,
        language=newsletter.language or "en",
        template=newsletter.template or "digest",
        palette=dict(newsletter.palette or {}),
        archive_url=settings.base_url + archive_path(newsletter) + "/",
    )


# -- the store ---------------------------------------------------------------------------


def all_(session: Session) -> list[Newsletter]:
    return list(session.scalars(select(Newsletter).order_by(Newsletter.id)))


def get(session: Session, slug: str) -> Newsletter:
    row = session.scalar(select(Newsletter).where(Newsletter.slug == slug.strip().lower()))
    if row is None:
        known = ", ".join(n.slug for n in all_(session)) or "none yet"
        raise NotFound(f"no newsletter {slug.strip()[:40]!r} (newsletters: {known})")
    return row


def get_by_id(session: Session, newsletter_id: int) -> Newsletter:
    row = session.get(Newsletter, newsletter_id)
    if row is None:
        raise NotFound(f"no newsletter with id {newsletter_id}")
    return row


def ensure_default(session: Session) -> Newsletter:
    """The default newsletter, created on first use (a fresh installation has one)."""
    row = session.scalar(select(Newsletter).where(Newsletter.is_default.is_(True)))
    if row is None:
        row = session.scalar(select(Newsletter).order_by(Newsletter.id).limit(1))
    if row is None:
        row = Newsletter(slug=DEFAULT_SLUG, is_default=True, template="digest", palette={})
        session.add(row)
        session.flush()
    return row


def resolve(session: Session, settings: Settings, slug: str | None = None) -> Newsletter:
    """The newsletter a command or page works on (see the module docstring)."""
    wanted = slug or settings.newsletter
    if wanted:
        return get(session, wanted)
    count = session.scalar(select(func.count()).select_from(Newsletter)) or 0
    if count > 1:
        default = session.scalar(select(Newsletter).where(Newsletter.is_default.is_(True)))
        if default is not None:
            return default
        known = ", ".join(n.slug for n in all_(session))
        raise InputError(f"several newsletters ({known}): say which with --newsletter SLUG")
    return ensure_default(session)


def add(session: Session, slug: str, name: str, **values: Any) -> Newsletter:
    slug = check_slug(slug)
    if session.scalar(select(Newsletter.id).where(Newsletter.slug == slug)) is not None:
        raise InputError(f"newsletter {slug!r} already exists", field="slug")
    name = " ".join(name.split())
    if not name:
        raise InputError("is empty", field="name")
    values = check_overrides({"name": name, **values})
    first = session.scalar(select(func.count()).select_from(Newsletter)) == 0
    row = Newsletter(
        slug=slug,
        is_default=first,
        template=values.pop("template", None) or "digest",
        palette=values.pop("palette", None) or {},
        language=values.pop("language", None) or "en",
        **values,
    )
    session.add(row)
    session.flush()
    return row


def edit(session: Session, slug: str, **values: Any) -> Newsletter:
    """Change a newsletter; a value of "" clears an override (back to the setting)."""
    row = get(session, slug)
    new_slug = values.pop("slug", None)
    cleared = {k: None for k, v in values.items() if v == ""}
    given = {k: v for k, v in values.items() if v not in (None, "")}
    check_overrides(dict(given))
    if "palette" in given:
        given["palette"] = check_palette(given["palette"])
    for key, value in {**cleared, **given}.items():
        if key in ("template", "language") and value is None:
            value = "digest" if key == "template" else "en"
        if key == "palette" and value is None:
            value = {}
        setattr(row, key, value)
    if new_slug:
        new_slug = check_slug(new_slug)
        if new_slug != row.slug and session.scalar(
            select(Newsletter.id).where(Newsletter.slug == new_slug)
        ):
            raise InputError(f"newsletter {new_slug!r} already exists", field="slug")
        row.slug = new_slug
    session.flush()
    return row


def list_ids(session: Session, settings: Settings) -> dict[str, int]:
    """Every newsletter's List-Id and its id: what a one-click or confirm token is bound to.

    A token does not say which newsletter it is for; trying each List-Id finds out (one
    HMAC each), and tokens issued before there were several newsletters still verify for
    the default one, whose List-Id has not changed.
    """
    return {settings_for(settings, nl).effective_list_id: nl.id for nl in all_(session)}


def host_of(settings: Settings) -> str:
    return urlsplit(settings.base_url).hostname or settings.sender_domain
