"""The campaign manager: build outputs, test sends, and which issue `send` picks."""

from __future__ import annotations

import asyncio
import email
import email.policy

from digest.delivery import campaign, ledger
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outcome
from digest.editorial import editions
from digest.editorial.models import Issue, IssueStatus
from digest.editorial.picks import add_pick, validate_pick
from digest.settings import load_settings
from digest.store.engine import session_scope
from subscribers import store
from subscribers.model import SubscriberStatus
from tests.samples import sample_pick


def add_picks(engine, settings, n: int = 3) -> None:
    with session_scope(engine) as s:
        for i in range(n):
            raw = {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")}
            add_pick(s, validate_pick(raw, settings.sections))


def test_test_send_uses_a_test_subject_and_leaves_the_ledger_alone(smtp_server, engine) -> None:
    settings = load_settings()
    add_picks(engine, settings)
    with session_scope(engine) as s:
        store.add(s, "reader@example.com", "Reader", status=SubscriberStatus.CONFIRMED)
    issue = campaign.build(engine, settings)
    results = asyncio.run(
        campaign.test_send(
            settings, issue, ["Editor@Example.com", "desk@example.org"], make_transport(settings)
        )
    )
    assert [r.outcome for _, r in results] == [Outcome.SENT, Outcome.SENT]
    assert sorted(smtp_server.handler.recipients()) == ["Editor@example.com", "desk@example.org"]
    for m in smtp_server.messages:
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        assert msg["Subject"].startswith("[TEST] ")
    with session_scope(engine) as s:
        row = s.get(Issue, issue.id)
        assert row.status == IssueStatus.FROZEN
        assert sum(ledger.counts(s, row.id).values()) == 0


def test_build_is_idempotent_and_picks_up_edits(engine) -> None:
    settings = load_settings()
    add_picks(engine, settings, 2)
    first = campaign.build(engine, settings)
    again = campaign.build(engine, settings)
    assert first.id == again.id and first.html == again.html
    with session_scope(engine) as s:
        editions.edit(s, first.key, subject="A brand new subject line")
    edited = campaign.build(engine, settings)
    assert edited.content["subject"] == "A brand new subject line"
    assert edited.html != first.html or edited.content != first.content


def test_write_outputs(engine, workdir) -> None:
    settings = load_settings()
    add_picks(engine, settings, 4)
    issue = campaign.build(engine, settings)
    paths = campaign.write_outputs(settings, issue, workdir / "out")
    html = paths.html.read_text()
    assert "__DIGEST_" not in html and "__DIGEST_" not in paths.text.read_text()
    msg = email.message_from_bytes(paths.eml.read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "reader@example.com"


def test_prepare_send_resumes_an_interrupted_issue_first(engine) -> None:
    settings = load_settings()
    add_picks(engine, settings, 2)
    with session_scope(engine) as s:
        store.add(s, "a@example.com", status=SubscriberStatus.CONFIRMED)
        old = editions.freeze(s, settings, "2026-W40")
        editions.start_sending(s, old)
        ledger.fill(s, old)
    add_picks(engine, settings, 1)
    chosen = campaign.prepare_send(engine, settings)
    assert chosen.key == "2026-W40" and chosen.status == IssueStatus.SENDING
    with session_scope(engine) as s:
        this_week = editions.find_issue(s, editions.current_key(settings))
        assert this_week is None or this_week.status == IssueStatus.DRAFT
