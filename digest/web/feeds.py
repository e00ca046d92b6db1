"""Atom feeds of each newsletter's published editions (RFC 4287).

/issues/feed.xml for the default newsletter (its archive keeps the plain /issues/
paths) and /newsletters/{slug}/issues/feed.xml for each one; the archive pages point
to them with <link rel="alternate">. An entry is an edition whose send has started,
linking its web version, with the intro and the story titles as its content.

Ids are tag URIs (RFC 4151) made of the base URL's host, the newsletter's creation
date, its slug and the edition's key: they survive a change of the archive's paths.
Everything is written by ElementTree, which escapes text and attributes; entry HTML is
escaped once more as Atom's type="html" asks. ETag / If-None-Match give pollers a 304.
"""

from __future__ import annotations

import hashlib
import html
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.editorial import newsletters
from digest.editorial.models import Edition, Newsletter
from digest.settings import Settings
from digest.web.archive import _newsletter, published
from digest.web.context import db, settings_of

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml"
ENTRIES = 50
ET.register_namespace("", ATOM)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _tag(settings: Settings, newsletter: Newsletter, rest: str = "") -> str:
    host = urlsplit(settings.base_url).hostname or "localhost"
    return f"tag:{host},{newsletter.created_at:%Y-%m-%d}:{newsletter.slug}{rest}"


def _add(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, f"{{{ATOM}}}{name}", attrs)
    if text is not None:
        node.text = text
    return node


def _content(edition: Edition) -> str:
    """The entry's HTML: the intro and the stories, each linked (escaped here)."""
    content = edition.content or {}
    intro = re.split(r"\n\s*\n", str(content.get("intro") or "").strip())
    parts = [f"<p>{html.escape(p.strip())}</p>" for p in intro if p.strip()]
    items = []
    for pick in content.get("picks") or []:
        title = html.escape(str(pick.get("title") or pick.get("url") or ""))
        url = html.escape(str(pick.get("url") or ""), quote=True)
        summary = html.escape(str(pick.get("summary") or ""))
        items.append(f'<li><a href="{url}">{title}</a>' + (f" {summary}" if summary else ""))
    if items:
        parts.append("<ul>" + "</li>".join(items) + "</li></ul>")
    return "".join(parts)


def build_feed(settings: Settings, newsletter: Newsletter, rows: list[Edition]) -> bytes:
    own = newsletters.settings_for(settings, newsletter)
    base = settings.base_url + newsletters.archive_path(newsletter)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", _tag(settings, newsletter))
    _add(feed, "title", own.list_name)
    _add(feed, "subtitle", f"Past editions of {own.list_name}")
    times = [e.send_started_at or e.created_at for e in rows]
    _add(feed, "updated", _time(max(times, default=newsletter.created_at)))
    _add(feed, "link", rel="self", type=MEDIA_TYPE, href=f"{base}/feed.xml")
    _add(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    author = _add(feed, "author")
    _add(author, "name", own.list_name)
    _add(feed, "generator", "digest")
    for edition, when in zip(rows, times):
        content = edition.content or {}
        entry = _add(feed, "entry")
        _add(entry, "id", _tag(settings, newsletter, f"/{edition.key}"))
        _add(entry, "title", str(content.get("subject") or edition.subject or edition.key))
        _add(entry, "link", rel="alternate", type="text/html", href=f"{base}/{edition.key}")
        _add(entry, "published", _time(when))
        _add(entry, "updated", _time(when))
        summary = str(content.get("preheader") or edition.preheader or "")
        if summary:
            _add(entry, "summary", summary)
        _add(entry, "content", _content(edition), type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


async def feed(request: Request) -> Response:
    slug = request.path_params.get("slug")
    settings = settings_of(request)

    def gather(session: Session) -> bytes:
        nl = _newsletter(session, slug)
        return build_feed(settings, nl, published(session, nl.id, ENTRIES))

    body = await db(request, gather)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"etag": etag, "cache-control": "public, max-age=300"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=f"{MEDIA_TYPE}; charset=utf-8", headers=headers)


#: Before the archive's routes: /issues/{key} would take "feed.xml" for a key.
routes = [
    Route("/issues/feed.xml", feed, methods=["GET"]),
    Route("/newsletters/{slug}/issues/feed.xml", feed, methods=["GET"]),
]
