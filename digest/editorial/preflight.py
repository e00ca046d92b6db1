"""Preflight: the checks an editor needs before Friday, run by build, desk and send.

Errors block the automatic send; warnings do not. Each finding is one line.
`check()` looks at the rendered content; digest.delivery.preflight adds what depends on
the set-up and the built message: DKIM, and an offline SpamAssassin score of a sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from digest.editorial import darkmode, slots
from digest.editorial.spamscore import SpamScore
from digest.settings import Settings

GMAIL_CLIP = 102 * 1024
SIZE_WARNING = 90 * 1024
TEXT_WIDTH = 78
ERROR, WARNING, INFO = "error", "warning", "info"
_PLACEHOLDER = re.compile(r"\{\{|\{%|\bTK\b|\blorem\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    level: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message} [{self.code}]"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    html_bytes: int = 0
    spam: SpamScore | None = None

    def add(self, level: str, code: str, message: str) -> None:
        self.findings.append(Finding(level, code, message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        head = (
            f"preflight: {len(self.errors)} error(s), {len(self.warnings)} warning(s); "
            f"HTML {self.html_bytes / 1024:.1f} KB of Gmail's 102 KB"
        )
        return [head, *(f"  {f}" for f in self.findings)]


class _Scan(HTMLParser):
    """Collects images and links from the rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a" and a.get("href"):
            self._href, self._text = a["href"], []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href = None


def check(
    *,
    html: str,
    text: str,
    subject: str,
    preheader: str,
    key: str,
    settings: Settings,
    view_url: str | None = None,
) -> Report:
    """Run every check on a rendered edition (with slot markers still in place).

    `view_url` is the edition's web version (each newsletter has its own archive); by
    default the default newsletter's `/issues/KEY`.
    """
    r = Report(html_bytes=len(html.encode("utf-8")))
    if r.html_bytes > GMAIL_CLIP:
        r.add(ERROR, "size", f"HTML is {r.html_bytes / 1024:.1f} KB: Gmail clips above 102 KB")
    elif r.html_bytes > SIZE_WARNING:
        r.add(WARNING, "size", f"HTML is {r.html_bytes / 1024:.1f} KB, close to Gmail's 102 KB")
    if not text.strip():
        r.add(ERROR, "text-part", "there is no plain-text part")
    if slots.UNSUBSCRIBE_URL not in html or slots.UNSUBSCRIBE_URL not in text:
        r.add(ERROR, "unsubscribe", "no unsubscribe link in the HTML or the text part")
    scan = _Scan()
    scan.feed(html)
    web = view_url or f"{settings.base_url}/issues/{key}"
    if not any(href == web for href, _ in scan.links):
        r.add(WARNING, "view-in-browser", f"no 'view in browser' link to {web}")
    for img in scan.images:
        src = img.get("src") or ""
        if not (img.get("alt") or "").strip():
            r.add(WARNING, "alt-text", f"image without alt text: {src[:80]}")
        if not img.get("width") or not img.get("height"):
            r.add(WARNING, "image-size", f"image without width/height: {src[:80]}")
        _check_url(r, src, "image")
    seen: dict[str, str] = {}
    for href, label in scan.links:
        if href.startswith("mailto:") or slots.MARKER_PREFIX in href:
            continue
        _check_url(r, href, "link")
        if label and href in seen and seen[href] != label:
            r.add(WARNING, "link-text", f"{href[:80]} is linked as {seen[href]!r} and {label!r}")
        seen.setdefault(href, label) if label else None
    _check_dark_mode(r, html)
    wide = [
        line
        for line in text.splitlines()
        if len(line) > TEXT_WIDTH and max(map(len, line.split()), default=0) <= 70
    ]  # lines that wrapping would have fixed (a long URL alone cannot be wrapped)
    if wide:
        r.add(
            WARNING,
            "text-width",
            f"{len(wide)} line(s) of the text part are wider than {TEXT_WIDTH} characters, "
            f"e.g. {wide[0][:50]!r}...",
        )
    n = len(subject)
    if n < 10 or n > 78:
        r.add(WARNING, "subject", f"subject is {n} characters; keep it between 10 and 78")
    if preheader and preheader.strip().lower() == subject.strip().lower():
        r.add(WARNING, "preheader", "the preheader repeats the subject")
    alts = " ".join(img.get("alt") or "" for img in scan.images)
    for where, body in (
        ("subject", subject),
        ("preheader", preheader),
        ("text", text),
        ("image alt text", alts),
    ):
        m = _PLACEHOLDER.search(body)
        if m:
            r.add(WARNING, "placeholder", f"leftover placeholder {m.group(0)!r} in the {where}")
    return r


def _check_url(r: Report, url: str, what: str) -> None:
    parts = urlsplit(url)
    if not parts.scheme:
        r.add(WARNING, "relative-url", f"{what} URL is relative: {url[:80]}")
    elif parts.scheme != "https":
        r.add(WARNING, "insecure-url", f"{what} URL is not https: {url[:80]}")
    elif parts.hostname in ("localhost", "127.0.0.1", "::1") or (parts.hostname or "").endswith(
        ".local"
    ):
        r.add(WARNING, "local-url", f"{what} URL points to a local host: {url[:80]}")
    elif not parts.hostname or "." not in parts.hostname:
        r.add(WARNING, "broken-url", f"{what} URL has no proper host: {url[:80]}")


def _check_dark_mode(r: Report, html: str) -> None:
    dm = darkmode.scan(html)
    for v in dm.vanishing:
        r.add(
            WARNING,
            "dark-mode",
            f"text in {v.colour} has no background of its own, so it vanishes in dark mode: "
            f"{v.sample!r} (give its section a background colour)",
        )
    if not dm.scheme:
        r.add(
            WARNING,
            "color-scheme",
            'no color-scheme declared (<meta name="color-scheme" content="light dark">): '
            "dark-mode apps will recolour the email their own way",
        )
    elif "dark" in dm.scheme.lower() and not dm.dark_styles:
        r.add(
            WARNING,
            "color-scheme",
            f"color-scheme is {dm.scheme!r} but no @media (prefers-color-scheme: dark) styles",
        )
