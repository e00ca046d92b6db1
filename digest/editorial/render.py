"""Render an issue once: Jinja → MJML → HTML, plus a plain-text part.

The output carries the slot markers of digest.slots where a message is personal (the
greeting, the unsubscribe URL); everything else is the same for every subscriber, so an
issue is rendered once and only the markers are filled in per recipient.

Templates ship with the package (digest.resources); a file of the same name in
DIGEST_TEMPLATES_DIR overrides the built-in one, so editors can change the look without touching
code. User text is scrubbed of slot markers and HTML-escaped by Jinja's autoescape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
from mjml import mjml2html

from digest.editorial import i18n, slots
from digest.editorial.plaintext import LinkRefs, tidy, underline, with_ref, wrap
from digest.errors import InputError
from digest.resources import builtin_templates
from digest.settings import Settings

#: Width and height attributes of the featured picture (16:9 at the 600 px body width);
#: CSS lets the real aspect ratio win wherever styles apply.
FEATURED_WIDTH = 600
FEATURED_HEIGHT = 338
SUPPORT_FREQUENCIES = ("once", "monthly", "annual")
_WEEK_KEY = re.compile(r"^(\d{4})-W(\d{1,2})$")


#: pick (as in the snapshot) -> the URL its links point to (digest.stats.links.story_links).
StoryLink = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class RenderedIssue:
    """One rendered email; personal parts are still slot markers."""

    html: str  # full HTML document
    text: str  # plain-text part


# -- Jinja environment -----------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    """Markup templates escape; the plain-text ones must not (no &amp; in a text part)."""
    return bool(name) and not name.endswith(".txt.j2")  # type: ignore[union-attr]


def template_dirs(settings: Settings) -> list[Path]:
    """Where templates are looked up, first match wins: the override folder, the built-ins."""
    dirs = [builtin_templates()]
    if settings.templates_dir is not None:
        dirs.insert(0, Path(settings.templates_dir).resolve())
    return dirs


def _located(settings: Settings, name: str) -> Path | None:
    """The file `name` is loaded from, first match wins; None when no folder has it."""
    for folder in template_dirs(settings):
        if (folder / name).is_file():
            return folder / name
    return None


def template_path(settings: Settings, name: str) -> str:
    """The file `name` is loaded from (for error messages)."""
    return str(_located(settings, name) or template_dirs(settings)[0] / name)


@lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> jinja2.Environment:
    """One Environment per lookup path: parsed templates are cached, and edits are picked up."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(dirs)),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=True,
    )
    env.filters["wrap"] = wrap
    env.filters["underline"] = underline
    env.filters["with_ref"] = with_ref
    env.globals["slots"] = slots
    return env


def _render_template(settings: Settings, name: str, context: dict[str, Any]) -> str:
    """Render one template; an editor's mistake becomes a one-line error naming file and line."""
    env = _environment(tuple(map(str, template_dirs(settings))))
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound:
        raise InputError(
            "template not found (check DIGEST_TEMPLATES_DIR)",
            source=template_path(settings, name),
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(
            exc.message or "syntax error", source=exc.filename, line=exc.lineno
        ) from None
    except jinja2.UndefinedError as exc:
        source, line = _template_frame(exc)
        raise InputError(
            str(exc), source=source or template_path(settings, name), line=line
        ) from None
    except Exception as exc:  # an expression in an edited template failed while rendering
        source, line = _template_frame(exc)
        raise InputError(
            f"{type(exc).__name__}: {exc}",
            source=source or template_path(settings, name),
            line=line,
        ) from None


def _template_frame(exc: BaseException) -> tuple[str | None, int | None]:
    """File and line of the innermost template frame (Jinja puts them in the traceback)."""
    found: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _to_html(mjml_source: str, template: str) -> str:
    try:
        return mjml2html(_attribute_references(mjml_source), disable_comments=True)
    except ValueError as exc:
        raise InputError(f"invalid MJML: {exc}", source=template) from None


_ATTRIBUTE_VALUE = re.compile(r'="([^"]*)"')


def _attribute_references(source: str) -> str:
    """Backslashes, controls and non-ASCII characters of attribute values as references.

    mjml-python writes attribute values through Rust's escape_debug: a backslash comes
    out doubled, and characters it deems unprintable (soft hyphen, no-break space, the
    zero-width joiner of emoji, unassigned code points...) as "\\u{ad}", so an alt
    text or URL would arrive garbled. A reference such as "&#xad;" passes through and
    means the same in HTML. Escaped user text never holds a raw '="', so only
    attribute values are touched.
    """

    def refs(match: re.Match[str]) -> str:
        value = match.group(1)
        if value.isascii() and value.isprintable() and "\\" not in value:
            return match.group(0)
        safe = (c if " " <= c <= "~" and c != "\\" else f"&#x{ord(c):x};" for c in value)
        return '="' + "".join(safe) + '"'

    return _ATTRIBUTE_VALUE.sub(refs, source)


# -- building the context ----------------------------------------------------------


def _scrub_url(url: str) -> str:
    """A URL cannot hold a slot marker: escape its underscore (same URL per RFC 3986)."""
    return url.replace(slots.MARKER_PREFIX, "%5F" + slots.MARKER_PREFIX[1:])


def _scrub(value: Any, key: str = "") -> Any:
    """Scrub every string of the snapshot, so no pick or intro can impersonate a slot."""
    if isinstance(value, str):
        return _scrub_url(value) if key.endswith("url") else slots.scrub(value)
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    return value


def with_query(url: str, **params: str) -> str:
    """Add query parameters to a URL that may already have some."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def byline_label(byline: str, language: str | None = "en") -> str:
    """'AFP' → 'By AFP'; an editor who already wrote 'By AFP' keeps it."""
    byline = byline.strip()
    by = i18n.words(language)["by"]
    prefix = by.split("{name}")[0].strip().lower()
    if not byline or (prefix and byline.lower().startswith(prefix + " ")):
        return byline
    return by.format(name=byline)


def _pick_view(
    pick: dict[str, Any], language: str | None = "en", story_link: StoryLink | None = None
) -> dict[str, Any]:
    """A pick plus the labels the templates show; `url` is the link readers follow (the
    counted one, digest.stats.links, when `story_link` is given), `story_url` the story's."""
    minutes = pick.get("read_minutes")
    view = dict(pick)
    view["story_url"] = pick.get("url", "")
    if story_link is not None and pick.get("id") is not None:
        view["url"] = story_link(pick)
    view["title"] = pick.get("title") or pick.get("url", "")
    view["summary"] = pick.get("summary") or ""
    view["image_alt"] = pick.get("image_alt") or ""
    view["image_credit"] = pick.get("image_credit") or ""
    view["tags"] = list(pick.get("tags") or [])
    view["byline_label"] = byline_label(pick.get("byline") or "", language)
    view["read_label"] = i18n.words(language)["min_read"].format(n=minutes) if minutes else ""
    view["meta"] = " · ".join(x for x in (view["byline_label"], view["read_label"]) if x)
    return view


def date_label(iso: str, language: str | None = "en") -> str:
    """'2026-11-27' → 'Friday, 27 November 2026' (in the language; never the locale)."""
    return i18n.date_label(iso, language)


def issue_label(key: str, language: str | None = "en") -> str:
    """'2026-W48' → 'Week 48' (the date beside it shows the year); other keys: 'Edition KEY'."""
    words = i18n.words(language)
    m = _WEEK_KEY.match(key)
    return words["week"].format(n=int(m.group(2))) if m else words["edition"].format(key=key)


def split_picks(
    picks: list[dict[str, Any]], sections: list[str]
) -> tuple[dict[str, Any] | None, list[tuple[str, list[dict[str, Any]]]]]:
    """The featured pick (or the first), and the others grouped in settings' section order.

    A pick whose section is no longer configured is listed after the configured ones,
    under its own name, rather than silently dropped from an issue already frozen.
    """
    if not picks:
        return None, []
    featured = next((p for p in picks if p.get("featured")), picks[0])
    groups: dict[str, list[dict[str, Any]]] = {s: [] for s in sections}
    for pick in picks:
        if pick is not featured:
            groups.setdefault(pick.get("section") or sections[0], []).append(pick)
    return featured, [(name, items) for name, items in groups.items() if items]


def _site(settings: Settings, newsletter: dict[str, Any] | None = None) -> dict[str, Any]:
    """The newsroom's own strings and links, the same in every template.

    `newsletter` is the snapshot's newsletter (digest.editorial.newsletters.View); without
    it (older snapshots, the confirmation email) the settings' defaults apply.
    """
    nl = newsletter or {}
    support = settings.effective_support_url
    slug = nl.get("slug")
    subscribe = f"{settings.base_url}/subscribe" + (f"?newsletter={slug}" if slug else "")
    return {
        "list_name": slots.scrub(nl.get("name") or settings.list_name),
        "language": nl.get("language") or "en",
        "postal_address": slots.scrub(settings.postal_address),
        "privacy_url": _scrub_url(settings.effective_privacy_url),
        "subscribe_url": _scrub_url(subscribe),
        "archive_url": _scrub_url(nl.get("archive_url") or f"{settings.base_url}/issues/"),
        "support_url": _scrub_url(support),
        "support": {f: _scrub_url(with_query(support, frequency=f)) for f in SUPPORT_FREQUENCIES},
    }


def _require(content: dict[str, Any], name: str) -> Any:
    if content.get(name) in (None, ""):
        key = content.get("key") or "?"
        raise InputError("missing from the issue snapshot", source=f"issue {key}", field=name)
    return content[name]


def issue_context(
    content: dict[str, Any], settings: Settings, story_link: StoryLink | None = None
) -> dict[str, Any]:
    """Everything the digest templates see; exposed so previews can reuse it."""
    for name in ("key", "subject", "date"):
        _require(content, name)
    clean = _scrub(content)
    language_of = (content.get("newsletter") or {}).get("language") or "en"
    featured, groups = split_picks(
        [_pick_view(p, language_of, story_link) for p in clean.get("picks") or []],
        list(settings.sections),
    )
    intro = (clean.get("intro") or "").strip()
    newsletter = content.get("newsletter") or {}
    language = newsletter.get("language") or "en"
    view_url = content.get("view_url") or f"{settings.base_url}/issues/{content['key']}"
    site = _site(settings, newsletter)
    # Disclosed in the footer whenever the links are personal (docs/stats.md).
    site["personal_links"] = story_link is not None and content.get("click_stats") == (
        "per-subscriber"
    )
    return {
        "site": site,
        "t": i18n.words(language),
        "palette": dict(newsletter.get("palette") or {}),
        "issue": {
            "key": clean["key"],
            "subject": clean["subject"],
            "preheader": clean.get("preheader") or "",
            "intro": intro,
            "intro_paragraphs": [p.strip() for p in re.split(r"\n\s*\n", intro) if p.strip()],
            "date_label": date_label(clean["date"], language),
            "issue_label": issue_label(clean["key"], language),
            "view_url": _scrub_url(view_url),
        },
        "featured": featured,
        "featured_width": FEATURED_WIDTH,
        "featured_height": FEATURED_HEIGHT,
        "groups": groups,
        "story_count": len(clean.get("picks") or []),
    }


# -- public API --------------------------------------------------------------------


def own_stem(settings: Settings, newsletter: dict[str, Any] | None, kind: str) -> str:
    """The template pair for a newsletter's `kind` of email (`confirm`, `welcome`).

    A newsletter whose template is `culture` gets `culture-welcome.mjml.j2` (with its
    `.txt.j2`) when that file exists in DIGEST_TEMPLATES_DIR or the built-ins; the shared
    `welcome` pair otherwise, so one edited pair still serves every newsletter.
    """
    template = str((newsletter or {}).get("template") or "")
    own = f"{template}-{kind}"
    return own if template and _located(settings, f"{own}.mjml.j2") else kind


def _render_pair(settings: Settings, stem: str, context: dict[str, Any]) -> RenderedIssue:
    mjml_source = _render_template(settings, f"{stem}.mjml.j2", context)
    html = _to_html(mjml_source, template_path(settings, f"{stem}.mjml.j2"))
    text = _render_template(settings, f"{stem}.txt.j2", {**context, "links": LinkRefs()})
    return RenderedIssue(html=html, text=tidy(text))


def render_issue(
    content: dict[str, Any], settings: Settings, *, story_link: StoryLink | None = None
) -> RenderedIssue:
    """Render a frozen edition snapshot into HTML and text, slots still in place.

    The newsletter's own template pair renders it (`digest` unless it names another).
    `story_link` turns each story's links into counted ones (digest.stats.links), once
    for every copy.
    """
    stem = (content.get("newsletter") or {}).get("template") or "digest"
    return _render_pair(settings, stem, issue_context(content, settings, story_link))


def render_confirmation(
    settings: Settings, confirm_url: str, name: str, newsletter: dict[str, Any] | None = None
) -> RenderedIssue:
    """The double opt-in email: one button to `confirm_url`; the unsubscribe slot stays."""
    context = {
        "site": _site(settings, newsletter),
        "t": i18n.words((newsletter or {}).get("language")),
        "palette": dict((newsletter or {}).get("palette") or {}),
        "confirm_url": _scrub_url(confirm_url),
        "name": slots.scrub(" ".join(name.split())),
        "subject": "Confirm your subscription to "
        + slots.scrub((newsletter or {}).get("name") or settings.list_name),
    }
    return _render_pair(settings, own_stem(settings, newsletter, "confirm"), context)


def render_welcome(
    settings: Settings,
    newsletter: dict[str, Any],
    *,
    latest_url: str | None = None,
    next_date: str | None = None,
) -> RenderedIssue:
    """The welcome email after a confirmation: the latest edition's web page (if one was
    sent) and the next edition's date (an ISO date, if planned). Greeting, unsubscribe
    and preferences links stay slots, filled in per recipient."""
    t = i18n.words(newsletter.get("language"))
    site = _site(settings, newsletter)
    context = {
        "site": site,
        "t": t,
        "palette": dict(newsletter.get("palette") or {}),
        "subject": t["welcome_subject"].format(name=site["list_name"]),
        "latest_url": _scrub_url(latest_url) if latest_url else "",
        "next_label": date_label(next_date, newsletter.get("language")) if next_date else "",
    }
    return _render_pair(settings, own_stem(settings, newsletter, "welcome"), context)


_UNSUBSCRIBE_ANCHOR = re.compile(
    r'(<a\b[^>]*\bhref=")' + re.escape(slots.UNSUBSCRIBE_URL) + r'("[^>]*>)\s*Unsubscribe\s*(</a>)'
)


_PERSONAL_NOTICE = re.compile(r'<span class="personal-links">[^<]*</span>')


def web_version(rendered_html: str, settings: Settings) -> str:
    """The issue as the public archive shows it: no personal parts, no slot markers.

    Readers of the archive page are not (known) subscribers, so the footer's
    "Unsubscribe" becomes "Subscribe" to the sign-up form, the greeting a plain "Hello,",
    and personal story links the edition's aggregate ones (their reader part left out).
    """
    subscribe = escape(_scrub_url(f"{settings.base_url}/subscribe"), quote=True)
    html = _UNSUBSCRIBE_ANCHOR.sub(
        lambda m: f"{m.group(1)}{subscribe}{m.group(2)}Subscribe{m.group(3)}", rendered_html
    )
    html = html.replace(slots.UNSUBSCRIBE_URL, subscribe).replace(slots.PREFERENCES_URL, subscribe)
    html = _PERSONAL_NOTICE.sub("", html)  # the web version's links are nobody's
    return html.replace(slots.GREETING, "Hello,").replace(slots.READER, "")
