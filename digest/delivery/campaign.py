"""The campaign manager: find the edition a command means, build it, start its send,
test-send it.

Kept apart from the mailer (digest.delivery.sender) as listmonk keeps its manager apart
from its messenger. `digest build`, `digest send`, the scheduler and the desk all go
through these functions, so there is one code path from picks to the ledger.

A send starts in two steps so that nothing is consumed by a send that cannot happen:
`plan_send` checks everything that can be checked (the signing key, someone to send to,
the render, the preflight) without changing the edition's state; the caller then opens
the transport (which fails on a bad SMTP set-up), and only then `start_send` moves the
edition to `sending` and fills its ledger, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery import ledger
from digest.delivery.message import Recipient
from digest.delivery.sender import template_for
from digest.delivery.transports.base import Outbound, Result, Transport
from digest.editorial import editions, newsletters, slots
from digest.editorial.models import Edition, EditionStatus, Newsletter
from digest.editorial.preflight import Report
from digest.errors import InputError, StateError
from digest.settings import Settings
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.addresses import ascii_address, needs_smtputf8, normalise_email
from subscribers.tokens import EVERY_LIST, PREFERENCES, UNSUBSCRIBE, make_token

SAMPLE_RECIPIENT = ("reader@example.com", "Sample Reader")


class PreflightFailed(StateError):
    """The preflight found errors; the edition was not started (exit code 3)."""

    exit_code = 3

    def __init__(self, key: str, report: Report) -> None:
        first = report.errors[0].message if report.errors else "errors"
        super().__init__(
            f"edition {key} was not sent: the preflight found {len(report.errors)} error(s), "
            f"first: {first} (`digest build` shows the report; --force sends anyway)"
        )
        self.report = report


@dataclass
class Target:
    """What a command works on: a newsletter, one of its editions, its view of the settings."""

    newsletter: Newsletter
    edition: Edition
    settings: Settings


def target(
    session: Session, settings: Settings, slug: str | None = None, key: str | None = None
) -> Target:
    """The one resolver: the newsletter (--newsletter, DIGEST_NEWSLETTER or the only one)
    and its edition (--edition KEY, else its open edition)."""
    newsletter = newsletters.resolve(session, settings, slug)
    edition = editions.resolve(session, settings, newsletter, key)
    return Target(newsletter, edition, newsletters.settings_for(settings, newsletter))


def build(
    engine: Engine, settings: Settings, slug: str | None = None, key: str | None = None
) -> Target:
    """Render the open edition (or `key`, if still open) in one transaction."""
    with session_scope(engine) as session:
        t = target(session, settings, slug, key)
        editions.freeze(session, settings, t.newsletter, t.edition)
        return t


def tokens_for(settings: Settings, subscriber_id: int) -> tuple[str, str]:
    """(unsubscribe token for this newsletter, preferences token) of one subscriber."""
    secret = settings.secret()
    return (
        make_token(secret, UNSUBSCRIBE, subscriber_id, settings.effective_list_id),
        make_token(secret, PREFERENCES, subscriber_id, EVERY_LIST),
    )


def message_for(
    settings: Settings,
    edition: Edition,
    email: str,
    name: str,
    subscriber_id: int = 0,
    prefix: str = "",
) -> bytes:
    """One complete message as a subscriber would get it (`settings`: the newsletter's)."""
    unsubscribe, prefs = tokens_for(settings, subscriber_id)
    template = template_for(edition, settings, subject_prefix=prefix)
    return template.build(Recipient(subscriber_id, email, name, unsubscribe, prefs))


@dataclass
class BuildOutputs:
    html: Path
    text: Path
    eml: Path


def write_outputs(settings: Settings, edition: Edition, out: Path) -> BuildOutputs:
    """issue.html (the web version), issue.txt and sample.eml into `out`."""
    from digest.editorial.render import web_version

    out.mkdir(parents=True, exist_ok=True)
    paths = BuildOutputs(out / "issue.html", out / "issue.txt", out / "sample.eml")
    paths.html.write_text(web_version(edition.html, settings), encoding="utf-8")
    text = (
        edition.text.replace(slots.GREETING, "Hello,")
        .replace(slots.UNSUBSCRIBE_URL, f"{settings.base_url}/unsubscribe")
        .replace(slots.PREFERENCES_URL, f"{settings.base_url}/subscribe")
    )
    paths.text.write_text(text, encoding="utf-8")
    email, name = SAMPLE_RECIPIENT
    paths.eml.write_bytes(message_for(settings, edition, email, name))
    return paths


# -- starting a send -------------------------------------------------------------------------


@dataclass
class Launch:
    """What `plan_send` found: a send to resume, one already over, or one ready to start."""

    target: Target
    report: Report | None = None
    resume: bool = False  # the edition is already sending: carry on
    over: bool = False  # sent or cancelled: nothing to do
    recipients: int = 0
    #: What was checked (digest of the render): a start refuses anything else.
    fingerprint: str = ""


def plan_send(
    engine: Engine,
    settings: Settings,
    slug: str | None = None,
    key: str | None = None,
    *,
    force: bool = False,
    spam: bool = True,
) -> Launch:
    """Check that a send can happen, without starting it (see the module docstring).

    Without `key` an interrupted send of the newsletter is resumed first. Raises
    StateError (nobody to send to, a paused send) or PreflightFailed; the edition
    stays what it was.
    """
    from digest.delivery import preflight

    settings.secret()  # a missing key fails here, before anything changes
    with session_scope(engine) as session:
        newsletter = newsletters.resolve(session, settings, slug)
        own = newsletters.settings_for(settings, newsletter)
        edition = editions.resumable(session, newsletter) if key is None else None
        if edition is None:
            edition = editions.resolve(session, settings, newsletter, key)
        t = Target(newsletter, edition, own)
        if edition.status in (EditionStatus.SENT, EditionStatus.CANCELLED):
            return Launch(t, over=True)
        if edition.status == EditionStatus.SENDING:
            if edition.paused_at is not None:
                raise StateError(
                    f"the send of edition {edition.key} is paused: "
                    f"`digest send --resume --newsletter {newsletter.slug}` continues it"
                )
            return Launch(t, resume=True)
        recipients = subscriptions.mailable_count(session, newsletter.id)
        if not recipients:
            raise StateError(
                f"nobody to send edition {edition.key} of {newsletter.slug} to: no confirmed "
                "subscribers yet; it stays a draft (add some with `digest subscribers add` "
                "or import a list)"
            )
        editions.freeze(session, settings, newsletter, edition, for_send=True)
    report = preflight.check_issue(edition, own, spam=spam)
    if not report.ok and not force:
        raise PreflightFailed(edition.key, report)
    return Launch(t, report, recipients=recipients, fingerprint=fingerprint(edition))


def start_send(engine: Engine, settings: Settings, launch: Launch) -> Edition:
    """Move the planned edition to `sending` and fill its ledger, in one transaction.

    Several starters at once (schedulers, a manual send): the first starts it, the
    others find it sending and resume. An edition edited since it was checked is
    refused (plan it again), so what goes out is what the preflight saw.
    """
    t = launch.target
    with session_scope(engine) as session:
        ledger.start_lock(session)
        edition = session.get(Edition, t.edition.id)
        assert edition is not None
        if edition.status in editions.OPEN:
            if fingerprint(edition) != launch.fingerprint:
                raise StateError(
                    f"edition {edition.key} changed while its send was being checked; "
                    "run the send again"
                )
            editions.start_sending(session, settings, t.newsletter, edition)
        if edition.status == EditionStatus.SENDING:
            if (
                not ledger.fill(session, edition)
                and not launch.resume
                and not _owed(session, edition)
            ):
                raise StateError(
                    f"nobody to send edition {edition.key} to any more: every subscriber "
                    "left meanwhile; it stays a draft"
                )
        return edition


def fingerprint(edition: Edition) -> str:
    """A digest of what a send would carry: two starters that rendered the same edition at
    the same moment agree; an edit made between the check and the start does not."""
    import hashlib

    h = hashlib.sha256()
    for part in (edition.html, edition.text, str(edition.content.get("subject", ""))):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _owed(session: Session, edition: Edition) -> int:
    counts = ledger.counts(session, edition.id)
    return sum(counts.values())


def prepare_send(
    engine: Engine,
    settings: Settings,
    slug: str | None = None,
    key: str | None = None,
    *,
    force: bool = True,
) -> Edition:
    """`plan_send` then `start_send`, for scripts and tests: no transport check, no spam
    score, and preflight errors do not stop it unless `force` is False."""
    launch = plan_send(engine, settings, slug, key, force=force, spam=False)
    if launch.over:
        return launch.target.edition
    return start_send(engine, settings, launch)


async def test_send(
    settings: Settings, edition: Edition, addresses: list[str], transport: Transport
) -> list[tuple[str, Result]]:
    """Send the edition with a [TEST] subject (`settings`: the newsletter's); no ledger."""
    if not edition.is_built:
        raise StateError(f"edition {edition.key} is not built yet: run `digest build` first")
    results = []
    async with transport:
        for raw in addresses:
            try:
                email, _key = normalise_email(raw)
            except InputError as exc:
                raise InputError(str(exc).split(": ", 1)[-1], field=raw) from None
            # An IDN domain goes as its A-label; only a non-ASCII local part needs SMTPUTF8.
            utf8 = needs_smtputf8(email)
            wire = email if utf8 else ascii_address(email)
            data = message_for(settings, edition, wire, "", 0, prefix="[TEST] ")
            msg = Outbound(settings.envelope_from, wire, data, smtputf8=utf8)
            results.append((email, await transport.send(msg)))
    return results


# -- pause, resume, cancel ----------------------------------------------------------------


def _sending(session: Session, settings: Settings, slug: str | None, key: str | None) -> Target:
    """The edition a pause/resume/cancel means: `key`, else the newsletter's send in progress."""
    newsletter = newsletters.resolve(session, settings, slug)
    found = (
        editions.get(session, newsletter, key)
        if key
        else session.scalar(
            select(Edition)
            .where(Edition.newsletter_id == newsletter.id, Edition.status == EditionStatus.SENDING)
            .order_by(Edition.id)
            .limit(1)
        )
    )
    if found is None:
        raise StateError(f"no send of {newsletter.slug} is in progress")
    edition = found
    if edition.status != EditionStatus.SENDING:
        raise StateError(f"edition {edition.key} is {edition.status}, not sending")
    return Target(newsletter, edition, newsletters.settings_for(settings, newsletter))


def pause(
    engine: Engine, settings: Settings, slug: str | None = None, key: str | None = None
) -> Target:
    """Stop claiming new deliveries; messages in flight finish. `resume` continues."""
    with session_scope(engine) as session:
        t = _sending(session, settings, slug, key)
        if t.edition.paused_at is None:
            t.edition.paused_at = utcnow()
        return t


def resume(
    engine: Engine, settings: Settings, slug: str | None = None, key: str | None = None
) -> Target:
    """Let senders claim again (the caller then sends, as `digest send` does)."""
    with session_scope(engine) as session:
        t = _sending(session, settings, slug, key)
        t.edition.paused_at = None
        return t


def cancel(
    engine: Engine,
    settings: Settings,
    slug: str | None = None,
    key: str | None = None,
    *,
    reason: str = "cancelled by the operator",
) -> tuple[Target, int]:
    """End a send for good: what is still owed and not in a sender's hands is skipped
    with `reason`; rows in flight finish and are recorded, then skipped rows are all that
    is left. Returns the target and how many deliveries were skipped."""
    with session_scope(engine) as session:
        t = _sending(session, settings, slug, key)
        t.edition.status = EditionStatus.CANCELLED
        t.edition.cancelled_at = utcnow()
        t.edition.note = reason[:500]
        session.flush()
        return t, ledger.skip_owed(session, t.edition.id, f"skipped: {reason}"[:1000])
