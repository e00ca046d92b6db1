"""`digest demo`: the whole pipeline on a fresh checkout with nothing configured."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

from digest.cli import common
from digest.cli.app import app
from digest.cli.common import console, engine, session


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
    """Load sample picks and ~50 sample subscribers, build the next edition and send it.

    Sends to the outbox folder (DIGEST_OUTBOX_DIR) unless DIGEST_SMTP_HOST is set.
    Safe to run again: nothing is loaded or sent twice.
    """
    import asyncio

    import yaml

    from digest.cli.send import _open_and_send
    from digest.data import DATA_DIR as DATA
    from digest.delivery import campaign, ledger
    from digest.delivery.models import DeliveryStatus
    from digest.delivery.transports import make_transport
    from digest.editorial import editions, newsletters
    from digest.editorial.pickimport import load_picks
    from digest.editorial.picks import add_pick, live_picks
    from subscribers import csvio

    _ensure_secret()
    s = common.settings()
    eng = engine()
    with session() as db:
        t = campaign.target(db, s)
        sent = [e for e in editions.list_editions(db, t.newsletter, 5) if e.status == "sent"]
    if sent:
        console.print(
            f"The demo already ran: edition {sent[0].key} was already sent. Next edition: "
            f"{t.edition.key} (`digest picks list`, `digest send --status`)."
        )
        return
    with session() as db:
        t = campaign.target(db, s)
        added = 0
        if not live_picks(db, t.edition.id, t.settings.sections):
            for pick in load_picks(str(DATA / "sample_picks.yaml"), t.settings.sections).picks:
                add_pick(db, t.edition.id, pick)
                added += 1
        report = csvio.import_csv(
            db, DATA / "sample_subscribers.csv", t.newsletter.id, confirmed=True
        )
        meta = yaml.safe_load((DATA / "sample_issue.yaml").read_text(encoding="utf-8"))
        e = t.edition
        editions.edit(
            db,
            e,
            subject=None if e.subject else meta.get("subject"),
            preheader=None if e.preheader else meta.get("preheader"),
            intro=None if e.intro else meta.get("intro"),
        )
    console.print(f"Loaded {added} sample picks; subscribers: {report.summary()}")
    console.print(f"Messages link to {s.base_url} (DIGEST_BASE_URL; `digest serve` answers there).")

    out = Path("build")
    built = campaign.build(eng, s, t.newsletter.slug, t.edition.key)
    paths = campaign.write_outputs(built.settings, built.edition, out)
    launch = campaign.plan_send(eng, s, t.newsletter.slug, t.edition.key)
    for line in launch.report.lines() if launch.report else []:
        console.print(line, markup=False)
    transport = make_transport(built.settings)
    result = asyncio.run(_open_and_send(eng, s, launch, transport))
    console.print(result.summary())
    console.print(f"Rendered files: {paths.html}  {paths.text}  {paths.eml}")
    with session() as db:
        counts = ledger.counts(db, t.edition.id)
        nxt = editions.open_edition(db, s, newsletters.get(db, t.newsletter.slug))
    where = (
        f"the SMTP server {s.smtp_host}"
        if s.uses_smtp
        else f"the outbox folder {s.outbox_dir.resolve()}/new/ (one .eml-style file per message)"
    )
    console.print(
        f"\nEdition {t.edition.key}: {counts[DeliveryStatus.SENT]} messages delivered to {where}."
    )
    console.print(
        f"The next edition, {nxt.key}, is open for picks. Next: `digest picks list`, "
        "`digest subscribers count`, `digest send --status`, `digest serve` and open "
        f"{s.base_url}/issues/{t.edition.key} in a browser."
    )
    if not counts[DeliveryStatus.SENT]:
        raise typer.Exit(1)
