"""Which requests of a counted link are a reader's click (docs/stats.md lists the rules).

Mail security gateways and link-preview bots fetch links nobody clicked, mostly the
moment a message arrives. Every request is redirected; only these are not counted:

1. any method but GET (HEAD probes, for one);
2. requests that announce a prefetch (`Purpose`/`Sec-Purpose: prefetch`, `X-Moz:
   prefetch`, `X-Purpose: preview`);
3. a missing User-Agent, or one naming a known scanner, preview bot or HTTP library
   (`SCANNER_AGENTS`);
4. bursts: one client (an IPv4 address, or an IPv6 /64) fetching links to 3 different
   stories of one edition within 10 seconds; 2 while the edition is being sent and in
   the 10 minutes after its last message (when receiving servers scan new mail). The
   clicks of the burst are taken back, and that client's requests for that edition
   are not counted until it has been quiet for 60 seconds.

Clients are told apart by a keyed hash of their address, with a key made at start and
kept in memory only, in entries that expire after 60 quiet seconds: no address is
stored or logged, and nothing survives a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: Lower-case pieces of User-Agent headers that are not a person's browser: mail
#: security scanners, link-preview bots, crawlers, headless browsers, HTTP libraries.
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "symantec",
    "messagelabs",
    "trend micro",
    "trendmicro",
    "sophos",
    "fortiguard",
    "forcepoint",
    "ironport",
    "safelinks",
    "safebrowsing",
    "google-safety",
    "googleimageproxy",
    "yahoomailproxy",
    "microsoft office",
    "ms-office",
    "bot/",
    "bot;",
    "bot)",
    "googlebot",
    "bingbot",
    "bingpreview",
    "applebot",
    "baiduspider",
    "facebookexternalhit",
    "whatsapp",
    "telegrambot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "twitterbot",
    "linkedinbot",
    "skypeuripreview",
    "embedly",
    "iframely",
    "crawler",
    "spider",
    "preview",
    "scanner",
    "headlesschrome",
    "phantomjs",
    "python-",
    "python/",
    "httpx",
    "aiohttp",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "apache-httpclient",
    "node-fetch",
    "axios/",
    "zgrab",
    "masscan",
    "nmap",
)
_SCANNER = re.compile("|".join(re.escape(a) for a in SCANNER_AGENTS))
#: Request headers (lower-case name -> lower-case value) that announce a prefetch.
PREFETCH_HEADERS = {
    "purpose": "prefetch",
    "sec-purpose": "prefetch",
    "x-moz": "prefetch",
    "x-purpose": "preview",
}

BURST_SECONDS = 10.0
BURST_STORIES = 3
#: Near the send: while it runs, and this long after its last message.
NEAR_SEND_SECONDS = 600.0
NEAR_SEND_STORIES = 2
QUIET_SECONDS = 60.0
MAX_CLIENTS = 50_000


def scanner_agent(user_agent: str | None) -> bool:
    return not user_agent or not user_agent.strip() or bool(_SCANNER.search(user_agent.lower()))


def prefetch(headers: Mapping[str, str]) -> bool:
    return any(want in (headers.get(name) or "").lower() for name, want in PREFETCH_HEADERS.items())


@dataclass
class _Client:
    seen: float
    #: (time, edition id, pick id, subscriber id or None, counted) of recent requests.
    recent: deque[tuple[float, int, int, int | None, bool]] = field(default_factory=deque)
    #: edition id -> when this client was last heard for it while flagged as a burst.
    flagged: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    count: bool
    #: (pick id, subscriber id or None) of clicks counted earlier that are taken back.
    take_back: tuple[tuple[int, int | None], ...] = ()


class BurstGuard:
    """Rule 4 of the module docstring, for one process (single-threaded: the event loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = secrets.token_bytes(32)
        self._clients: OrderedDict[bytes, _Client] = OrderedDict()
        self._clock = clock
        self._pruned = 0.0

    def client_key(self, address: str) -> bytes:
        """A keyed hash of the client's address: never the address itself."""
        return hmac.new(self._key, address.encode(), hashlib.sha256).digest()[:16]

    def __len__(self) -> int:
        return len(self._clients)

    def check(
        self,
        client: bytes,
        edition_id: int,
        pick_id: int,
        subscriber_id: int | None = None,
        *,
        near_send: bool = False,
    ) -> Verdict:
        now = self._clock()
        self._prune(now)
        entry = self._clients.pop(client, None) or _Client(now)
        self._clients[client] = entry  # most recently heard last
        entry.seen = now
        while entry.recent and now - entry.recent[0][0] > BURST_SECONDS:
            entry.recent.popleft()
        flagged = entry.flagged.get(edition_id)
        if flagged is not None and now - flagged <= QUIET_SECONDS:
            entry.flagged[edition_id] = now
            return Verdict(False)
        entry.flagged.pop(edition_id, None)
        mine = [r for r in entry.recent if r[1] == edition_id]
        stories = {r[2] for r in mine} | {pick_id}
        if len(stories) >= (NEAR_SEND_STORIES if near_send else BURST_STORIES):
            entry.flagged[edition_id] = now
            back = tuple((r[2], r[3]) for r in mine if r[4])
            entry.recent = deque(r for r in entry.recent if r[1] != edition_id)
            return Verdict(False, back)
        entry.recent.append((now, edition_id, pick_id, subscriber_id, True))
        return Verdict(True)

    def _prune(self, now: float) -> None:
        """Forget clients quiet for QUIET_SECONDS (checked at most once a second), and
        the least recently heard beyond MAX_CLIENTS."""
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        if now - self._pruned < 1.0:
            return
        self._pruned = now
        while self._clients:
            key, oldest = next(iter(self._clients.items()))
            if now - oldest.seen <= QUIET_SECONDS:
                break
            del self._clients[key]
