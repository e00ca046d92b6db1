"""`digest demo`: the whole pipeline on a fresh checkout with nothing configured."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

from digest.cli import common
from digest.cli.app import app
from digest.cli.common import console, engine, session
from digest.cli.send import _run


def _ensure_secret() -> None:
    """The demo may run unconfigured: make a secret key once and keep it in .env."""
    if os.environ.get("DIGEST_SECRET_KEY"):
        return
    env = Path(".env")
    text = env.read_text(encoding="utf-8") if env.exists() else ""
    if "DIGEST_SECRET_KEY=" in text:
        return
    from digest.privatefiles import open_private

    key = secrets.token_urlsafe(48)
    with open_private(env, "a", encoding="utf-8") as fh:
        fh.write(("" if text.endswith("\n") or not text else "\n") + f"DIGEST_SECRET_KEY={key}\n")
    env.chmod(0o600)  # it holds the secret now, even if it existed before
    console.print("Created a random DIGEST_SECRET_KEY in ./.env (keep it secret, keep it stable).")
    common.settings.cache_clear()


@app.command("demo")
def demo() -> None:
    """Load sample picks and ~50 sample subscribers, build this week's issue and send it.

    Sends to the outbox folder (DIGEST_OUTBOX_DIR) unless DIGEST_SMTP_HOST is set.
    Safe to run again: nothing is loaded twice and nobody gets the issue twice.
    """
    import asyncio

    import yaml

    from digest.data import DATA_DIR as DATA
    from digest.delivery import campaign, ledger, preflight
    from digest.delivery.models import DeliveryStatus
    from digest.delivery.transports import make_transport
    from digest.editorial import editions
    from digest.editorial.models import IssueStatus
    from digest.editorial.pickimport import load_picks
    from digest.editorial.picks import add_pick, unfrozen
    from subscribers import csvio

    _ensure_secret()
    s = common.settings()
    eng = engine()
    key = editions.current_key(s)
    with session() as db:
        row = editions.find_issue(db, key)
        already_sent = row is not None and row.status == IssueStatus.SENT
        added = 0
        if not already_sent and not unfrozen(db):
            for pick in load_picks(str(DATA / "sample_picks.yaml"), s.sections).picks:
                add_pick(db, pick)
                added += 1
        report = csvio.import_csv(db, DATA / "sample_subscribers.csv", confirmed=True)
        if not already_sent:
            meta = yaml.safe_load((DATA / "sample_issue.yaml").read_text(encoding="utf-8"))
            draft = editions.draft(db, key)
            editions.edit(
                db,
                key,
                subject=None if draft.subject else meta.get("subject"),
                preheader=None if draft.preheader else meta.get("preheader"),
                intro=None if draft.intro else meta.get("intro"),
            )
    console.print(f"Loaded {added} sample picks; subscribers: {report.summary()}")

    if already_sent:
        console.print(f"Issue {key} was already sent by an earlier demo run.")
    else:
        out = Path("build")
        built = campaign.build(eng, s, key)
        paths = campaign.write_outputs(s, built, out)
        for line in preflight.check_issue(built, s).lines():
            console.print(line, markup=False)
        row = campaign.prepare_send(eng, s, key)
        transport = make_transport(s)
        result = asyncio.run(_run(eng, s, row, transport))
        console.print(result.summary())
        console.print(f"Rendered files: {paths.html}  {paths.text}  {paths.eml}")
    with session() as db:
        counts = ledger.counts(db, editions.get_issue(db, key).id)
    where = (
        f"the SMTP server {s.smtp_host}"
        if s.uses_smtp
        else f"the outbox folder {s.outbox_dir.resolve()}/new/ (one .eml-style file per message)"
    )
    console.print(f"\nIssue {key}: {counts[DeliveryStatus.SENT]} messages delivered to {where}.")
    console.print(
        "Next: `digest picks list`, `digest subscribers count`, `digest send --status`, "
        "`digest build --out build` and open build/issue.html in a browser."
    )
    if not counts[DeliveryStatus.SENT]:
        raise typer.Exit(1)
