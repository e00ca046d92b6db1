"""The campaign manager: build outputs, test sends, and which issue `send` picks."""

from __future__ import annotations

import asyncio
import email
import email.policy

from digest.delivery import campaign, ledger
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outcome
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition, EditionStatus
from digest.editorial.picks import live_picks
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.sending import add_picks, subscribe


def test_test_send_uses_a_test_subject_and_leaves_the_ledger_alone(smtp_server, engine) -> None:
    settings = load_settings()
    add_picks(engine, settings)
    subscribe(engine, settings, "reader@example.com", "Reader")
    t = campaign.build(engine, settings)
    issue = t.edition
    results = asyncio.run(
        campaign.test_send(
            t.settings, issue, ["Editor@Example.com", "desk@example.org"], make_transport(settings)
        )
    )
    assert [r.outcome for _, r in results] == [Outcome.SENT, Outcome.SENT]
    assert sorted(smtp_server.handler.recipients()) == ["Editor@example.com", "desk@example.org"]
    for m in smtp_server.messages:
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        assert msg["Subject"].startswith("[TEST] ")
    with session_scope(engine) as s:
        row = s.get(Edition, issue.id)
        assert row.status == EditionStatus.DRAFT and row.is_built  # built, not sent
        assert sum(ledger.counts(s, row.id).values()) == 0


def test_build_is_idempotent_and_picks_up_edits(engine) -> None:
    settings = load_settings()
    add_picks(engine, settings, 2)
    first = campaign.build(engine, settings).edition
    again = campaign.build(engine, settings).edition
    assert first.id == again.id and first.html == again.html
    assert first.frozen_at == again.frozen_at  # nothing changed: not rendered again
    with session_scope(engine) as s:
        editions.edit(s, s.get(Edition, first.id), subject="A brand new subject line")
    edited = campaign.build(engine, settings).edition
    assert edited.id == first.id
    assert edited.content["subject"] == "A brand new subject line"
    assert edited.html != first.html or edited.content != first.content


def test_write_outputs(engine, workdir) -> None:
    settings = load_settings()
    add_picks(engine, settings, 4)
    t = campaign.build(engine, settings)
    paths = campaign.write_outputs(t.settings, t.edition, workdir / "out")
    html = paths.html.read_text()
    assert "__DIGEST_" not in html and "__DIGEST_" not in paths.text.read_text()
    msg = email.message_from_bytes(paths.eml.read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "reader@example.com"


def test_prepare_send_resumes_an_interrupted_issue_first(engine) -> None:
    settings = load_settings()
    add_picks(engine, settings, 2)
    subscribe(engine, settings, "a@example.com")
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        old = editions.open_edition(s, settings, nl)
        editions.freeze(s, settings, nl, old)
        assert editions.start_sending(s, settings, nl, old)
        ledger.fill(s, old)
        old_key = old.key
    add_picks(engine, settings, 1)  # into the next edition, opened by the send
    chosen = campaign.prepare_send(engine, settings)
    assert chosen.key == old_key and chosen.status == EditionStatus.SENDING
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        following = editions.open_edition(s, settings, nl)
        assert following.id != chosen.id and following.status == EditionStatus.DRAFT
        assert following.frozen_at is None  # not built, not started
        assert len(live_picks(s, following.id, settings.sections)) == 1
        assert sum(ledger.counts(s, following.id).values()) == 0
