"""Preflight: the checks an editor needs before Friday, run by build, desk and send.

Errors block the automatic send; warnings do not. Each finding is one line.
`check()` looks at the rendered content; `check_issue()` adds what depends on the
setup: DKIM, and an offline SpamAssassin score of a sample message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from digest.editorial import darkmode, slots, spamscore
from digest.errors import DigestError, SettingsError
from digest.privatefiles import exposed
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
    spam: spamscore.SpamScore | None = None

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
    *, html: str, text: str, subject: str, preheader: str, key: str, settings: Settings
) -> Report:
    """Run every check on a rendered issue (with slot markers still in place)."""
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
    web = f"{settings.base_url}/issues/{key}"
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


def check_issue(issue: object, settings: Settings, *, spam: bool = True) -> Report:
    """Preflight an Issue row (uses its frozen content for subject and preheader).

    Adds the DKIM set-up and, unless `spam` is False, SpamAssassin's offline score of
    a sample message (remembered per content, since it takes a second or two).
    """
    content = getattr(issue, "content", None) or {}
    subject = content.get("subject") or getattr(issue, "subject", "")
    r = check(
        html=issue.html,
        text=issue.text,
        subject=subject,
        preheader=content.get("preheader") or getattr(issue, "preheader", ""),
        key=issue.key,
        settings=settings,
    )
    for line in exposed(settings):
        r.add(WARNING, "file-mode", line)
    dkim_ok = _check_dkim(r, settings)
    if spam and dkim_ok:
        _check_spam(r, issue, subject, settings)
    return r


def _check_dkim(r: Report, settings: Settings) -> bool:
    """DKIM findings; False when the configuration is broken (nothing can be signed)."""
    from digest.delivery.dkim import aligned, signer_for
    from digest.delivery.dkimkeys import MIN_RECOMMENDED_RSA_BITS

    try:
        signer = signer_for(settings)
    except SettingsError as exc:
        r.add(ERROR, "dkim", str(exc))
        return False
    if signer is None:
        r.add(
            WARNING,
            "dkim",
            "DKIM signing is off (DIGEST_DKIM_KEY_FILE not set): Gmail and Yahoo reject or "
            "bin bulk mail without it; see `digest dkim keygen`",
        )
        return True
    if not aligned(settings.sender_domain, signer.domain):
        r.add(
            WARNING,
            "dkim-alignment",
            f"DKIM signs for {signer.domain} but mail is from {settings.sender_domain}: "
            "DMARC needs the From domain to be the signing domain or under it",
        )
    bits = getattr(signer.key, "key_size", None)
    if bits is not None and bits < MIN_RECOMMENDED_RSA_BITS:
        r.add(WARNING, "dkim-key", f"the RSA key has {bits} bits; use 2048 (digest dkim keygen)")
    return True


_SPAM_CACHE: dict[str, spamscore.SpamScore] = {}
_SAMPLE = ("reader@example.com", "Sample Reader", "preflight-sample-token")


def _check_spam(r: Report, issue: object, subject: str, settings: Settings) -> None:
    exe = spamscore.find(settings.spamassassin)
    if exe is None:
        why = (
            "DIGEST_SPAMASSASSIN=off"
            if settings.spamassassin.lower() in ("", "off")
            else f"{settings.spamassassin!r} is not installed (e.g. apt install spamassassin)"
        )
        r.add(INFO, "spam", f"no offline spam score: {why}")
        return
    from digest.delivery.message import Recipient
    from digest.delivery.sender import template_for

    digest_of = hashlib.sha256(
        "\0".join((exe, issue.key, subject, issue.html, issue.text)).encode()
    ).hexdigest()
    result = _SPAM_CACHE.get(digest_of)
    if result is None:
        try:
            email, name, token = _SAMPLE
            sample = template_for(issue, settings).build(Recipient(0, email, name, token))
            result = spamscore.score(sample, exe)
        except (spamscore.SpamCheckError, DigestError) as exc:
            r.add(WARNING, "spam", f"no offline spam score: {exc}")
            return
        if len(_SPAM_CACHE) > 32:
            _SPAM_CACHE.clear()
        _SPAM_CACHE[digest_of] = result
    r.spam = result
    rules = ", ".join(
        f"{rule.name} {rule.points:+.1f}" + (f" ({rule.description})" if rule.points > 0 else "")
        for rule in result.scoring_rules()
    )
    verdict = "would be marked as spam" if result.is_spam else f"spam at {result.required:.1f}"
    r.add(
        WARNING if result.is_spam else INFO,
        "spam",
        f"SpamAssassin (local tests) scores {result.score:.1f}, {verdict}; rules: {rules or 'none'}",
    )
