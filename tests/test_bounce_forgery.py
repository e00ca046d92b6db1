"""Forged bounces and complaints change nobody; only reports about mail we sent do.

The attack from issue 14: anyone can mail the bounce address (it is the envelope
sender of every message). A hand-written DSN naming `Final-Recipient: victim@...`, or a
made-up Message-ID guessed from sequential subscriber ids, used to mark readers bounced.
"""

from __future__ import annotations

import mailbox

from digest.bounces import process
from digest.bounces.reports import parse
from digest.delivery import reference
from digest.store.engine import session_scope
from subscribers.model import SubscriberStatus
from tests.bouncemail import (
    DOMAIN,
    arf,
    dsn,
    gmail_dsn,
    original_headers,
    postfix_dsn,
    send_issue,
    yahoo_arf,
)
from tests.conftest import TEST_SECRET
from tests.test_bounces import maildir_with, statuses

VICTIMS = ("victim1@example.org", "victim2@example.org")


def flagged(box) -> list[str]:
    return sorted(m.get_flags() for m in mailbox.Maildir(box, create=False))


def test_forged_dsns_and_complaints_remove_nobody(workdir, settings, engine) -> None:
    issue, sent = send_issue(engine, settings, *VICTIMS)
    key = issue.key
    ids = [sent[v].subscriber_id for v in VICTIMS]
    guessed = reference.make(b"not our key, but the right shape...", issue.id, ids[1])
    forgeries = [
        # By address, from a stranger: exactly the report in the issue.
        dsn(VICTIMS[0], "5.1.1", to=f"digest@{DOMAIN}"),
        # A Message-ID in our old shape with a guessed (sequential) subscriber id.
        dsn("x@example.net", "5.1.1", returned=original_headers(ids[1], "x", key=key)),
        # Our new shape, with a reference signed by someone else's key, in every place
        # a reference is looked for.
        dsn(
            VICTIMS[1],
            "5.1.1",
            to=reference.verp_address(f"digest@{DOMAIN}", guessed),
            returned=f"Message-ID: <{key}.{guessed}.1a2b3c4d@{DOMAIN}>\r\n"
            f"Return-Path: <digest+b-{guessed}@{DOMAIN}>\r\n",
        ),
        # Complaints naming the victims by Original-Rcpt-To and To.
        arf("abuse", original_headers(ids[0], VICTIMS[0], key=key), rcpt=VICTIMS[0]),
        arf("abuse", f"To: {VICTIMS[1]}\r\nMessage-ID: <{key}.{guessed}.00@{DOMAIN}>\r\n\r\nx"),
    ]
    box = workdir / "box"
    maildir_with(box, *forgeries)
    report = process(engine, settings, f"maildir:{box}")
    assert report.outcomes["rejected"] == len(forgeries), report.summary()
    assert not (report.outcomes["bounced"] or report.outcomes["complained"])
    assert f"{len(forgeries)} rejected without a valid signed reference" in report.summary()
    assert {statuses(engine)[v] for v in VICTIMS} == {(SubscriberStatus.CONFIRMED, 0)}
    assert flagged(box) == ["FS"] * len(forgeries)  # kept for a person to look at


def test_a_subscribers_own_reference_cannot_be_turned_on_someone_else(
    workdir, settings, engine
) -> None:
    """A subscriber has valid references (their own copies): they act on them alone."""
    _, sent = send_issue(engine, settings, "mallory@example.net", *VICTIMS)
    mallory = sent["mallory@example.net"]
    box = workdir / "box"
    maildir_with(
        box,
        # Mallory's VERP address, the victim's address everywhere else.
        dsn(VICTIMS[0], "5.1.1", to=mallory.envelope, original_recipient=VICTIMS[0]),
        # Two valid references to different deliveries: refused as a whole.
        dsn(VICTIMS[1], "5.1.1", to=mallory.envelope, returned=sent[VICTIMS[1]].headers),
    )
    report = process(engine, settings, f"maildir:{box}")
    assert report.outcomes["bounced"] == 1 and report.outcomes["rejected"] == 1
    assert statuses(engine)["mallory@example.net"][0] == SubscriberStatus.BOUNCED
    assert {statuses(engine)[v] for v in VICTIMS} == {(SubscriberStatus.CONFIRMED, 0)}


def test_a_valid_signature_still_needs_a_sent_delivery(workdir, settings, engine) -> None:
    """References verify with the key, then the ledger must show that issue was sent to
    that subscriber: a test send (subscriber 0), another issue, or a skipped row do not."""
    issue, sent = send_issue(engine, settings, VICTIMS[0])
    _, later = send_issue(engine, settings, VICTIMS[1])
    secret = settings.secret()
    victim = sent[VICTIMS[0]]
    not_sent = [
        reference.make(secret, issue.id, 0),  # a test send of that issue
        reference.make(secret, issue.id, later[VICTIMS[1]].subscriber_id),  # not in issue 1
        reference.make(secret, issue.id + 100, victim.subscriber_id),  # no such issue
    ]
    box = workdir / "box"
    maildir_with(
        box,
        *(dsn(VICTIMS[0], "5.1.1", to=f"digest+b-{ref}@{DOMAIN}") for ref in not_sent),
    )
    report = process(engine, settings, f"maildir:{box}")
    assert report.outcomes["rejected"] == 3 and statuses(engine)[VICTIMS[0]] == (
        SubscriberStatus.CONFIRMED,
        0,
    )
    # The real thing, for comparison: acted on.
    maildir_with(box, yahoo_arf(victim))
    assert process(engine, settings, f"maildir:{box}").outcomes["complained"] == 1
    assert statuses(engine)[VICTIMS[0]][0] == SubscriberStatus.COMPLAINED


def test_a_report_of_a_delivery_that_failed_is_rejected(workdir, settings, engine) -> None:
    from digest.delivery.models import Delivery, DeliveryStatus

    issue, sent = send_issue(engine, settings, VICTIMS[0])
    with session_scope(engine) as s:
        s.query(Delivery).filter_by(edition_id=issue.id).update({"status": DeliveryStatus.FAILED})
    maildir_with(workdir / "box", gmail_dsn(sent[VICTIMS[0]]))
    report = process(engine, settings, f"maildir:{workdir / 'box'}")
    assert report.outcomes["rejected"] == 1 and statuses(engine)[VICTIMS[0]] == (
        SubscriberStatus.CONFIRMED,
        0,
    )


# -- the reference itself --------------------------------------------------------------


def test_references_round_trip_and_resist_tampering() -> None:
    secret = TEST_SECRET.encode()
    for issue_id, sid in [(1, 1), (7, 12345), (2**31 - 1, 2**31 - 1), (0, 0)]:
        ref = reference.make(secret, issue_id, sid)
        assert reference.verify(secret, ref) == reference.Reference(issue_id, sid)
        assert reference.verify(secret, ref.upper()) == reference.Reference(issue_id, sid)
        assert ref.isalnum() and ref == ref.lower() and 24 <= len(ref) <= 40
    ref = reference.make(secret, 3, 42)
    assert len(ref) == 24  # short enough for any local part (64 characters)
    assert len(reference.make(secret, 3, 10**6)) == 28
    assert reference.verify(b"another key, also thirty-two chars!", ref) is None
    for i in range(len(ref)):  # every single-character change is caught
        for c in "0123456789abcdef":
            if c != ref[i]:
                assert reference.verify(secret, ref[:i] + c + ref[i + 1 :]) is None
    for bad in ("", "a" * 100, ref + "a", ref[:-1], "b-" + ref, ref + "=", "0" * 24, "00" + ref):
        assert reference.verify(secret, bad) is None


def test_candidates_are_found_where_real_reports_put_them(workdir, settings, engine) -> None:
    _, sent = send_issue(engine, settings, VICTIMS[0])
    victim = sent[VICTIMS[0]]
    ref = victim.envelope.removeprefix("digest+b-").removesuffix(f"@{DOMAIN}")
    assert victim.header("Message-ID").startswith(f"<{victim.header('X-Digest-Issue')}.{ref}.")
    for data in (postfix_dsn(victim), gmail_dsn(victim), yahoo_arf(victim)):
        notice = parse(data)
        assert notice is not None and notice.refs == (ref,)
