"""Preflight of a frozen issue as it will be sent: the content checks of
digest.editorial.preflight, plus what depends on the set-up and the built message:
the DKIM configuration, and SpamAssassin's offline score of a sample message.

Run by `digest build`, the desk and every send; errors block the automatic send.
"""

from __future__ import annotations

import hashlib

from digest.delivery.dkim import aligned, signer_for
from digest.delivery.dkimkeys import MIN_RECOMMENDED_RSA_BITS
from digest.delivery.message import Recipient, template_for
from digest.editorial import spamscore
from digest.editorial.models import Edition
from digest.editorial.preflight import ERROR, INFO, WARNING, Finding, Report, check
from digest.errors import DigestError, SettingsError
from digest.settings import Settings

__all__ = ["ERROR", "INFO", "WARNING", "Finding", "Report", "check", "check_issue"]


def check_issue(issue: Edition, settings: Settings, *, spam: bool = True) -> Report:
    """Preflight an Edition row (uses its frozen content for subject and preheader).

    Adds the DKIM set-up and, unless `spam` is False, SpamAssassin's offline score of
    a sample message (remembered per content, since it takes a second or two).
    """
    content = issue.content or {}
    subject = str(content.get("subject") or issue.subject)
    r = check(
        html=issue.html,
        text=issue.text,
        subject=subject,
        preheader=str(content.get("preheader") or issue.preheader),
        key=issue.key,
        settings=settings,
    )
    dkim_ok = _check_dkim(r, settings)
    if spam and dkim_ok:
        _check_spam(r, issue, subject, settings)
    return r


def _check_dkim(r: Report, settings: Settings) -> bool:
    """DKIM findings; False when the configuration is broken (nothing can be signed)."""
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
    path = settings.dkim_key_file
    if path is not None and path.expanduser().stat().st_mode & 0o077:
        r.add(WARNING, "dkim-key", f"{path} can be read by other users: chmod 600 {path}")
    return True


_SPAM_CACHE: dict[str, spamscore.SpamScore] = {}
_SAMPLE = ("reader@example.com", "Sample Reader", "preflight-sample-token")


def _check_spam(r: Report, issue: Edition, subject: str, settings: Settings) -> None:
    exe = spamscore.find(settings.spamassassin)
    if exe is None:
        why = (
            "DIGEST_SPAMASSASSIN=off"
            if settings.spamassassin.lower() in ("", "off")
            else f"{settings.spamassassin!r} is not installed (e.g. apt install spamassassin)"
        )
        r.add(INFO, "spam", f"no offline spam score: {why}")
        return
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
