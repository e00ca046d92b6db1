"""Preflight of a frozen issue as it will be sent: the content checks of
digest.editorial.preflight, plus what depends on the set-up and the built message:
the DKIM configuration, that counted story links lead to this edition's stories (and
those stories' URLs), and SpamAssassin's offline score of a sample message; and
files with secrets or personal data that other users can read (digest.privatefiles).

Run by `digest build`, the desk and every send; errors block the automatic send.
A report with a spam score is stored with the edition (digest.store.memo), keyed by
a digest of everything it looked at: the content, the settings the message is built
from, the DKIM set-up (the key file's size and time too) and the SpamAssassin
command; file modes are checked afresh every time. `digest send` and the scheduler
find the report `digest build` made and do not run SpamAssassin again; any change to
what was scored gives another key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from digest import __version__
from digest.delivery.dkim import aligned, signer_for
from digest.delivery.dkimkeys import MIN_RECOMMENDED_RSA_BITS
from digest.delivery.message import Recipient, template_for
from digest.editorial import spamscore
from digest.editorial.models import Edition
from digest.editorial.preflight import ERROR, INFO, WARNING, Finding, Report, check, check_url
from digest.errors import DigestError, SettingsError
from digest.privatefiles import exposed
from digest.settings import Settings
from digest.stats import links as click_links
from digest.store import memo

__all__ = ["ERROR", "INFO", "WARNING", "Finding", "Report", "check", "check_issue"]

#: The memo kind; bump FORMAT when a check or the stored shape changes.
KIND, FORMAT = "preflight", "1"
#: Reports made by this process, by key (also for editions that are in no store).
_RECENT: dict[str, dict[str, Any]] = {}


def check_issue(
    issue: Edition,
    settings: Settings,
    *,
    spam: bool = True,
    engine: Engine | None = None,
) -> Report:
    """Preflight an Edition row (uses its frozen content for subject and preheader).

    Adds the DKIM set-up and, unless `spam` is False, SpamAssassin's offline score of
    a sample message. A report with a score is stored in the edition's store
    (`engine`, by default DIGEST_DATABASE_URL's) and reused for the same inputs.
    """
    content = issue.content or {}
    subject = str(content.get("subject") or issue.subject)
    preheader = str(content.get("preheader") or issue.preheader)
    # File modes, and whether the counted links verify under the current secret key, change
    # without anything else changing: checked afresh each time (cheap), never stored.
    modes = [Finding(WARNING, "file-mode", line) for line in exposed(settings)]
    links = Report()
    _check_counted_links(links, issue, settings)
    modes = links.findings + modes
    exe = spamscore.find(settings.spamassassin) if spam else None
    key = _key(issue, subject, preheader, settings, exe) if exe else ""
    store = _store(issue, settings, engine) if key else None
    known = _RECENT.get(key) or (memo.get(store, KIND, key) if store is not None else None)
    if known is not None:
        try:
            r = _loads(known)
            r.findings.extend(modes)
            return r
        except (KeyError, TypeError, ValueError):  # not what this version stores
            pass
    r = check(
        html=issue.html,
        text=issue.text,
        subject=subject,
        preheader=preheader,
        key=issue.key,
        settings=settings,
        view_url=content.get("view_url"),
    )
    dkim_ok = _check_dkim(r, settings)
    if spam and dkim_ok:
        _check_spam(r, issue, settings)
    if key and r.spam is not None:  # only a scored report is worth keeping
        stored = _dumps(r)
        if len(_RECENT) > 32:
            _RECENT.clear()
        _RECENT[key] = stored
        if store is not None:
            memo.put(store, KIND, key, stored, owner=getattr(issue, "id", None))
    r.findings.extend(modes)
    return r


def _check_counted_links(r: Report, issue: Edition, settings: Settings) -> None:
    """Every counted story link (digest.stats.links) must lead to a story of this edition
    under the current key; the stories' own URLs get the checks other links get."""
    found = set(click_links.find(issue.html, settings.base_url))
    found |= set(click_links.find(issue.text, settings.base_url))
    if not found:
        return
    stories = {p.get("id"): str(p.get("url") or "") for p in issue.content.get("picks") or []}
    bad, targets = 0, set()
    for token, _reader in found:
        try:
            click = click_links.verify(settings.secret(), token)
        except (click_links.BadLink, SettingsError):
            bad += 1
            continue
        if click.edition_id != issue.id or click.pick_id not in stories:
            bad += 1
        else:
            targets.add(stories[click.pick_id])
    if bad:
        r.add(
            ERROR,
            "counted-link",
            f"{bad} counted story link(s) lead to no story of edition {issue.key} (made with "
            "another DIGEST_SECRET_KEY, or for another edition): build the edition again",
        )
    for url in sorted(targets):
        check_url(r, url, "link")


def _store(issue: Edition, settings: Settings, engine: Engine | None) -> Engine | None:
    """The store the edition lives in (None for one that is in none, as in some tests)."""
    if engine is not None or getattr(issue, "id", None) is None:
        return engine
    from digest.store.engine import get_engine

    try:
        return get_engine(settings.database_url)
    except DigestError:
        return None


def _key(issue: Edition, subject: str, preheader: str, settings: Settings, exe: str) -> str:
    """A digest of everything the report depends on."""
    path = settings.dkim_key_file
    try:
        st = path.expanduser().stat() if path is not None else None
        key_file = f"{st.st_size}:{st.st_mtime_ns}" if st else "-"  # another key
    except OSError as exc:
        key_file = f"unreadable: {exc.strerror}"
    return memo.digest_of(
        [
            FORMAT,
            __version__,
            issue.key,
            subject,
            preheader,
            str((issue.content or {}).get("view_url") or ""),
            issue.html,
            issue.text,
            settings.base_url,
            settings.from_,
            settings.reply_to or "",
            settings.list_name,
            settings.effective_list_id,
            settings.effective_unsubscribe_mailto,
            path or "",
            key_file,
            settings.dkim_selector or "",
            settings.dkim_domain or "",
            settings.spamassassin,
            exe,
        ]
    )


def _dumps(r: Report) -> dict[str, Any]:
    spam = r.spam
    return {
        "findings": [[f.level, f.code, f.message] for f in r.findings],
        "html_bytes": r.html_bytes,
        "spam": None
        if spam is None
        else {
            "score": spam.score,
            "required": spam.required,
            "rules": [[x.name, x.points, x.description] for x in spam.rules],
        },
    }


def _loads(data: dict[str, Any]) -> Report:
    spam = data["spam"]
    return Report(
        findings=[Finding(str(a), str(b), str(c)) for a, b, c in data["findings"]],
        html_bytes=int(data["html_bytes"]),
        spam=None
        if spam is None
        else spamscore.SpamScore(
            float(spam["score"]),
            float(spam["required"]),
            tuple(spamscore.Rule(str(n), float(p), str(d)) for n, p, d in spam["rules"]),
        ),
    )


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
    return True


_SAMPLE = ("reader@example.com", "Sample Reader", "preflight-sample-token")


def _check_spam(r: Report, issue: Edition, settings: Settings) -> None:
    exe = spamscore.find(settings.spamassassin)
    if exe is None:
        why = (
            "DIGEST_SPAMASSASSIN=off"
            if settings.spamassassin.lower() in ("", "off")
            else f"{settings.spamassassin!r} is not installed (e.g. apt install spamassassin)"
        )
        r.add(INFO, "spam", f"no offline spam score: {why}")
        return
    try:
        email, name, token = _SAMPLE
        sample = template_for(issue, settings).build(Recipient(0, email, name, token))
        result = spamscore.score(sample, settings.spamassassin)
    except (spamscore.SpamCheckError, DigestError) as exc:
        r.add(WARNING, "spam", f"no offline spam score: {exc}")
        return
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
