"""Polling DIGEST_CANDIDATE_FEEDS: a conditional GET per feed, its items as candidates.

Each feed's ETag and Last-Modified are kept (candidate_feeds), so an unchanged feed costs
one 304. A feed is untrusted input: the download has a timeout, an overall deadline and
a size cap; the XML is checked by defusedxml before feedparser sees it (as for `digest
picks import`), and every item passes PickIn (markup stripped, http(s) URLs only) before
it is stored; items that do not are counted and left out. Candidates are deduplicated by
normalised URL (digest.editorial.repeats.url_key).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.candidates.models import Candidate, CandidateFeed
from digest.clock import utcnow
from digest.editorial import newsletters, repeats
from digest.editorial.picks import validate_pick
from digest.errors import DigestError, InputError, MissingExtra
from digest.settings import Settings
from digest.store.engine import affected, session_scope
from subscribers.store import insert_for

log = logging.getLogger("digest.candidates")
TIMEOUT = 10.0
MAX_BYTES = 5_000_000
MAX_ITEMS = 200
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.1"


@dataclass
class FeedResult:
    url: str
    outcome: str  # "200", "304" or why not
    items: int = 0
    added: int = 0
    rejected: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in ("200", "304")

    def summary(self) -> str:
        if self.outcome == "304":
            return f"{self.url}: not modified since the last poll"
        if self.outcome == "200":
            return (
                f"{self.url}: {self.items} items, {self.added} new candidates, "
                f"{self.rejected} left out (not a valid story)"
            )
        return f"{self.url}: {self.outcome}"


def _key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _state(session: Session, url: str) -> CandidateFeed:
    row = session.scalar(select(CandidateFeed).where(CandidateFeed.url_key == _key(url)))
    if row is None:
        row = CandidateFeed(url=url, url_key=_key(url), outcome="", items=0, added=0)
        session.add(row)
        session.flush()
    return row


def _sections(
    session: Session, settings: Settings, slug: str | None
) -> tuple[int | None, list[str]]:
    if slug is None:
        nl = newsletters.resolve(session, settings, None)
        return None, newsletters.settings_for(settings, nl).sections
    nl = newsletters.get(session, slug)
    return nl.id, newsletters.settings_for(settings, nl).sections


def store(session: Session, url: str, newsletter_id: int | None, rows: list[dict[str, Any]]) -> int:
    """Insert new candidates (known URLs are left as they are); how many were new."""
    if not rows:
        return 0
    now = utcnow()
    values = [
        {**row, "newsletter_id": newsletter_id, "feed_url": url, "seen_at": now} for row in rows
    ]
    stmt = insert_for(session, Candidate.__table__).on_conflict_do_nothing(  # type: ignore[arg-type]
        index_elements=["url_key"]
    )
    return sum(affected(session.execute(stmt.values(v))) for v in values)


def parse(
    data: bytes, url: str, base_url: str, sections: list[str]
) -> tuple[list[dict[str, Any]], int, int]:
    """(candidate rows, items left out, items read) of a feed's bytes; InputError if it is
    no feed. An item whose URL came earlier in the feed is folded into that one."""
    from digest.editorial.pickimport import feed_records

    records = feed_records(data, url, sections, base_url)[:MAX_ITEMS]
    rows, seen, rejected = [], set(), 0
    for record in records:
        try:
            pick = validate_pick(record.data, sections, source=record.where)
        except InputError:
            rejected += 1
            continue
        key = repeats.url_key(pick.url)
        if key in seen:
            continue
        seen.add(key)
        data_ = pick.model_dump(exclude={"featured", "read_minutes"})
        rows.append({**data_, "url_key": key})
    return rows, rejected, len(records)


async def _download(client: Any, url: str, headers: dict[str, str]) -> tuple[int, bytes, Any]:
    async with client.stream("GET", url, headers=headers) as resp:
        if resp.status_code != 200:
            return resp.status_code, b"", resp
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BYTES:
            raise InputError(f"too large ({int(declared):,} bytes; at most {MAX_BYTES:,})")
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > MAX_BYTES:
                raise InputError(f"too large (more than {MAX_BYTES:,} bytes)")
        return 200, bytes(body), resp


async def poll_one(
    client: Any, engine: Engine, settings: Settings, slug: str | None, url: str
) -> FeedResult:
    """One feed: conditional GET, parse, store; never raises (the outcome says why)."""
    import httpx

    def load() -> tuple[str | None, str | None, int | None, list[str]]:
        with session_scope(engine) as session:
            state = _state(session, url)
            newsletter_id, sections = _sections(session, settings, slug)
            return state.etag, state.last_modified, newsletter_id, sections

    result = FeedResult(url, "")
    try:
        etag, modified, newsletter_id, sections = await asyncio.to_thread(load)
        headers = {"Accept": _ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        code, body, resp = await asyncio.wait_for(_download(client, url, headers), TIMEOUT * 3)
        if code == 304:
            result.outcome = "304"
        elif code != 200:
            result.outcome = f"the server answered HTTP {code}"
        else:
            rows, result.rejected, result.items = await asyncio.to_thread(
                parse, body, url, str(resp.url), sections
            )
            result.outcome = "200"
            etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
    except TimeoutError:
        result.outcome = f"timed out (limit {TIMEOUT * 3:g} s)"
    except httpx.HTTPError as exc:
        result.outcome = f"download failed: {str(exc) or type(exc).__name__}"
    except DigestError as exc:
        result.outcome = str(exc)
    if not result.outcome:  # pragma: no cover - every branch sets it
        result.outcome = "unknown"

    def save() -> int:
        with session_scope(engine) as session:
            state = _state(session, url)
            state.polled_at, state.outcome = utcnow(), result.outcome[:500]
            added = 0
            if result.outcome == "200":
                added = store(session, url, newsletter_id, rows)
                state.etag, state.last_modified = etag, modified
                state.items, state.added = result.items, added
            return added

    try:
        result.added = await asyncio.to_thread(save)
    except Exception as exc:  # the database went away: say so, try again next time
        result.outcome = f"could not store: {exc}"
    if not result.ok:
        log.warning("candidates: %s", result.summary())
    return result


async def poll(engine: Engine, settings: Settings) -> list[FeedResult]:
    """Poll every feed of DIGEST_CANDIDATE_FEEDS at once."""
    sources = settings.candidate_sources
    if not sources:
        return []
    try:
        import defusedxml  # noqa: F401
        import feedparser  # noqa: F401
        import httpx
    except ImportError:
        raise MissingExtra("feeds", "DIGEST_CANDIDATE_FEEDS") from None
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(TIMEOUT),
        follow_redirects=True,
        max_redirects=5,
        headers={"User-Agent": "digest-candidates/1"},
    ) as client:
        return list(
            await asyncio.gather(
                *(poll_one(client, engine, settings, slug, url) for slug, url in sources)
            )
        )


async def scheduled_poll(engine: Engine, settings: Settings) -> None:
    """The scheduler's job: poll, log one line per feed; never raises."""
    try:
        results = await poll(engine, settings)
    except Exception as exc:  # a missing extra or a broken database must not stop sends
        log.error("candidates: polling failed: %s", exc)
        return
    for result in results:
        log.info("scheduler candidates: %s", result.summary())
