"""The campaign manager: build an issue, start its send, test-send it.

Kept apart from the mailer (digest.sender) as listmonk keeps its manager apart
from its messenger. `digest build`, `digest send`, the scheduler and the desk all
go through these functions, so there is one code path from picks to the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from digest.delivery import ledger
from digest.delivery.message import Recipient
from digest.delivery.sender import template_for
from digest.delivery.transports.base import Outbound, Result, Transport
from digest.editorial import editions, slots
from digest.editorial.models import Issue, IssueStatus
from digest.errors import InputError, StateError
from digest.settings import Settings
from digest.store.engine import session_scope
from subscribers import store
from subscribers.addresses import ascii_address, needs_smtputf8
from subscribers.tokens import make_token

SAMPLE_RECIPIENT = ("reader@example.com", "Sample Reader")


def build(engine: Engine, settings: Settings, key: str | None = None) -> Issue:
    """Freeze and render this week's issue (or `key`) in one transaction."""
    with session_scope(engine) as session:
        return editions.freeze(session, settings, key)


def message_for(
    settings: Settings,
    issue: Issue,
    email: str,
    name: str,
    subscriber_id: int = 0,
    prefix: str = "",
) -> bytes:
    """One complete message as a subscriber would get it."""
    token = make_token(settings.secret(), "unsubscribe", subscriber_id, settings.effective_list_id)
    template = template_for(issue, settings, subject_prefix=prefix)
    return template.build(Recipient(subscriber_id, email, name, token))


@dataclass
class BuildOutputs:
    html: Path
    text: Path
    eml: Path


def write_outputs(settings: Settings, issue: Issue, out: Path) -> BuildOutputs:
    """issue.html (the web version), issue.txt and sample.eml into `out`."""
    from digest.editorial.render import web_version

    out.mkdir(parents=True, exist_ok=True)
    paths = BuildOutputs(out / "issue.html", out / "issue.txt", out / "sample.eml")
    paths.html.write_text(web_version(issue.html, settings), encoding="utf-8")
    text = issue.text.replace(slots.GREETING, "Hello,").replace(
        slots.UNSUBSCRIBE_URL, f"{settings.base_url}/unsubscribe"
    )
    paths.text.write_text(text, encoding="utf-8")
    email, name = SAMPLE_RECIPIENT
    paths.eml.write_bytes(message_for(settings, issue, email, name))
    return paths


def prepare_send(engine: Engine, settings: Settings, key: str | None = None) -> Issue:
    """Get an issue into SENDING with its ledger filled; resume one that was cut off.

    Without `key`: an interrupted send is resumed first; otherwise this week's
    issue is frozen (picking up the latest edits) and started. A SENT issue is
    returned as it is; the caller reports that there is nothing to do.
    """
    with session_scope(engine) as session:
        ledger.start_lock(session)  # concurrent starters: one freezes, the others wait
        issue = None
        if key is None:
            issue = editions.resumable(session)
            key = issue.key if issue else editions.current_key(settings)
        if issue is None:
            issue = editions.find_issue(session, editions.check_key(key))
            if issue is None or issue.status in (IssueStatus.DRAFT, IssueStatus.FROZEN):
                issue = editions.freeze(session, settings, key, for_send=True)
        if issue.status == IssueStatus.SENT:
            return issue
        if issue.status == IssueStatus.FROZEN:
            editions.start_sending(session, issue)
        if issue.status == IssueStatus.SENDING:
            ledger.fill(session, issue)
        return issue


async def test_send(
    settings: Settings, issue: Issue, addresses: list[str], transport: Transport
) -> list[tuple[str, Result]]:
    """Send the issue with a [TEST] subject; the ledger is not touched."""
    if issue.status == IssueStatus.DRAFT:
        raise StateError(f"issue {issue.key} is not built yet: run `digest build` first")
    results = []
    async with transport:
        for raw in addresses:
            try:
                email, _key = store.normalise_email(raw)
            except InputError as exc:
                raise InputError(str(exc).split(": ", 1)[-1], field=raw) from None
            # An IDN domain goes as its A-label; only a non-ASCII local part needs SMTPUTF8.
            utf8 = needs_smtputf8(email)
            wire = email if utf8 else ascii_address(email)
            data = message_for(settings, issue, wire, "", 0, prefix="[TEST] ")
            msg = Outbound(settings.envelope_from, wire, data, smtputf8=utf8)
            results.append((email, await transport.send(msg)))
    return results
