"""Bounces and complaints that arrive by mail, after the SMTP conversation ended.

`process(engine, settings)` reads the mailbox in DIGEST_BOUNCE_MAILBOX (a Maildir or
an IMAP folder), turns each delivery status notification (RFC 3464) or abuse report
(ARF, RFC 5965) into a change of the subscriber's status, and marks the message
processed only after that change is committed, so a run can be repeated at any time
(`digest bounces process`, or hourly from the scheduler).

Only reports carrying a signed reference to a delivery we made act on anyone
(digest.bounces.apply); the others are counted as rejected and left flagged in the
mailbox, so a forged DSN cannot remove readers.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from digest.bounces.apply import apply
from digest.bounces.imap import ImapSource
from digest.bounces.maildir import MaildirSource
from digest.bounces.reports import Notice, parse
from digest.errors import SettingsError
from digest.settings import Settings
from digest.store.engine import session_scope

log = logging.getLogger("digest.bounces")

__all__ = ["BounceReport", "Notice", "open_mailbox", "parse", "process"]


@dataclass
class BounceReport:
    """Counts of one run: what the messages were, and what changed."""

    source: str
    read: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # hard / soft / complaint / ignored
    outcomes: Counter[str] = field(default_factory=Counter)  # bounced / complained / rejected
    unrecognized: int = 0

    def summary(self) -> str:
        k, o = self.kinds, self.outcomes
        return (
            f"{self.read} messages read from {self.source}: {k['hard']} hard bounces, "
            f"{k['soft']} soft bounces, {k['complaint']} complaints, {k['ignored']} ignored, "
            f"{self.unrecognized} not a report (flagged in the mailbox); "
            f"marked {o['bounced']} bounced and {o['complained']} complained, "
            f"{o['counted']} soft bounces counted, {o['already']} already blocked; "
            f"{o['rejected']} rejected without a valid signed reference (flagged in the mailbox)"
        )


def open_mailbox(url: SecretStr | str) -> MaildirSource | ImapSource:
    """The source for `maildir:/path`, `imaps://user:pass@host/INBOX` or `imap://...`."""
    secret = url if isinstance(url, SecretStr) else SecretStr(url)
    value = secret.get_secret_value().strip()
    if value.startswith("maildir:"):
        path = value.removeprefix("maildir:").removeprefix("//")
        if not path:
            raise SettingsError("DIGEST_BOUNCE_MAILBOX: maildir: needs a path")
        return MaildirSource(Path(path))
    if value.startswith(("imaps://", "imap://")):
        return ImapSource(SecretStr(value))
    raise SettingsError(
        "DIGEST_BOUNCE_MAILBOX: must be maildir:/path/to/Maildir or "
        "imaps://user:password@host/INBOX"
    )


def process(
    engine: Engine, settings: Settings, mailbox: SecretStr | str | None = None
) -> BounceReport:
    """Read every unprocessed message in the mailbox and apply it; returns the counts."""
    url = mailbox if mailbox is not None else settings.bounce_mailbox
    if url is None:
        raise SettingsError(
            "DIGEST_BOUNCE_MAILBOX: not set; set it to maildir:/path or imaps://user:pass@host/INBOX"
        )
    source = open_mailbox(url)
    secret = settings.secret()
    report = BounceReport(source.describe())
    with source:
        item: Any
        for item, data in source.items():
            report.read += 1
            notice = parse(data)
            if notice is None:
                report.unrecognized += 1
                source.done(item, flag=True)
                continue
            report.kinds[notice.kind] += 1
            with session_scope(engine) as session:
                outcome = apply(session, notice, settings.soft_bounce_threshold, secret)
            report.outcomes[outcome] += 1
            source.done(item, flag=outcome == "rejected")
    log.info("bounces: %s", report.summary())
    return report
