"""RSS and Atom feeds as pick sources.

The bytes are first checked with defusedxml, which refuses entity declarations (the
billion-laughs bomb, external entities / XXE) and reports where a document is not
well-formed; only a document that passes is handed to feedparser, whose forgiving
"bozo" mode would otherwise accept broken or hostile input silently. A plain DOCTYPE
without entity declarations (old RSS 0.91 feeds have one) is allowed: nothing is fetched.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET
import feedparser

from digest.editorial.pickimport.records import Record
from digest.editorial.picks import plain_text
from digest.errors import InputError

#: A feed's description is often the whole article; the digest wants a lead.
FEED_SUMMARY_CHARS = 500
MAX_TAGS = 20
_MEDIA_NS = "{http://search.yahoo.com/mrss"
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|[?#])", re.IGNORECASE)
_POSITION = re.compile(r":\s*line \d+, column \d+$")
_FEED_ROOTS = {"rss", "feed", "RDF"}


def feed_records(
    data: bytes, source: str, sections: list[str], base_url: str | None = None
) -> list[Record]:
    """One mapped record per feed item; `base_url` resolves relative links of fetched feeds."""
    root = check_xml(data, source)
    if _local(root.tag) not in _FEED_ROOTS:
        raise InputError(
            f"is not an RSS or Atom feed (the document is <{_local(root.tag)}>)", source=source
        )
    headers = {"content-type": "application/xml"}
    if base_url:
        headers["content-location"] = base_url
    parsed = feedparser.parse(io.BytesIO(data), response_headers=headers)
    items = [el for el in root.iter() if _local(el.tag) in ("item", "entry")]
    if len(items) != len(parsed.entries):
        items = []  # shapes disagree: do without the raw media extras rather than mismatch
    records = []
    for number, entry in enumerate(parsed.entries, start=1):
        element = items[number - 1] if items else None
        where = f"{source}: item {number}"
        records.append(Record(_map_entry(entry, element, sections), where, mapped=True))
    return records


def check_xml(data: bytes, source: str) -> ET.Element:
    """Parse with defusedxml; refuse entities and name the line of any syntax error."""
    try:
        return SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.EntitiesForbidden as exc:
        if getattr(exc, "sysid", None) or getattr(exc, "pubid", None):
            msg = "refused: the feed declares an external entity (possible XXE attack)"
        else:
            msg = "refused: the feed declares entities (possible entity-expansion attack)"
        raise InputError(msg, source=source) from None
    except defusedxml.ExternalReferenceForbidden:
        msg = "refused: the feed references an external resource (possible XXE attack)"
        raise InputError(msg, source=source) from None
    except defusedxml.DefusedXmlException as exc:
        raise InputError(f"refused: {exc}", source=source) from None
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        reason = _POSITION.sub("", str(exc))
        raise InputError(f"not well-formed XML: {reason}", source=source, line=line) from None


def _map_entry(entry: Any, element: ET.Element | None, sections: list[str]) -> dict[str, Any]:
    """A feedparser entry as PickIn fields; PickIn itself strips markup and checks URLs."""
    record: dict[str, Any] = {}
    if entry.get("link"):
        record["url"] = entry["link"]
    if entry.get("title"):
        record["title"] = entry["title"]
    summary = entry.get("summary") or ""
    if not summary and entry.get("content"):
        summary = entry["content"][0].get("value", "")
    if summary:
        record["summary"] = _clip(plain_text(summary, multiline=True), FEED_SUMMARY_CHARS)
    author = (entry.get("author_detail") or {}).get("name") or entry.get("author")
    if author:
        record["byline"] = _clip(plain_text(author), 200)
    terms = [plain_text(t.get("term") or t.get("label") or "") for t in entry.get("tags", [])]
    terms = [t for t in terms if t]
    canonical = {s.lower(): s for s in sections}
    section = next((canonical[t.lower()] for t in terms if t.lower() in canonical), None)
    record["section"] = section or sections[0]
    record["tags"] = [t for t in terms if t.lower() not in canonical][:MAX_TAGS]
    image = _image_url(entry)
    if image:
        record["image_url"] = image
        alt = _media_text(element, "description") or _media_text(element, "title")
        record["image_alt"] = _clip(plain_text(alt or entry.get("title") or ""), 300)
        credit = _media_text(element, "credit") or _first_credit(entry)
        if credit:
            record["image_credit"] = _clip(plain_text(credit), 200)
    return record


def _image_url(entry: Any) -> str | None:
    """The first picture among enclosures, media:content and media:thumbnail."""
    for enc in entry.get("enclosures", []):
        href = enc.get("href") or enc.get("url") or ""
        if href and (enc.get("type", "").startswith("image/") or _IMAGE_EXT.search(href)):
            return href
    for media in entry.get("media_content", []):
        url = media.get("url") or ""
        kind = media.get("medium") or media.get("type", "").split("/")[0]
        if url and (kind == "image" or (not kind and _IMAGE_EXT.search(url))):
            return url
    for thumb in entry.get("media_thumbnail", []):
        if thumb.get("url"):
            return thumb["url"]
    return None


def _media_text(element: ET.Element | None, name: str) -> str:
    """Text of the first media:<name> in the item (media:content and media:group included)."""
    if element is None:
        return ""
    for el in element.iter():
        text = (el.text or "").strip()
        if el.tag.startswith(_MEDIA_NS) and _local(el.tag) == name and text:
            return text
    return ""


def _first_credit(entry: Any) -> str:
    credits = entry.get("media_credit") or []
    return (credits[0].get("content") or "") if credits else ""


def _clip(text: str, limit: int) -> str:
    """Shorten at a word boundary with an ellipsis, so a long feed text fits its field."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.-")
    return cut + "…"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
