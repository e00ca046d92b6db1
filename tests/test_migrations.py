"""An installation made by the previous release (one issue list) upgrades to newsletters,
editions and subscriptions with all its data: on a real SQLite file made by 0.1's
`digest demo`, and on PostgreSQL from the 0.1 schema filled the way 0.1 filled it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from digest.editorial import editions, newsletters
from digest.settings import load_settings
from digest.store.engine import (
    MIGRATIONS_DIR,
    dispose_all,
    get_engine,
    normalise_url,
    session_scope,
)
from subscribers import subscriptions
from subscribers.model import SubscriberStatus
from tests import pg

RELEASE = Path(__file__).parent / "fixtures" / "releases" / "v0.1-demo.sqlite"


def check_upgraded(url: str) -> None:
    """What an operator of the previous release finds after the upgrade."""
    settings = load_settings(database_url=url)
    engine = get_engine(url)
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        assert (nl.slug, nl.is_default, nl.name, nl.schedule) == ("default", True, None, None)
        sent = editions.get(s, nl, "2026-W49")  # the archive link in 50 inboxes still works
        assert sent.status == "sent" and sent.newsletter_id == nl.id
        assert len(sent.content["picks"]) == 12
        counts = subscriptions.count(s, nl.id)
        assert counts == {
            SubscriberStatus.PENDING: 1,
            SubscriberStatus.CONFIRMED: 47,
            SubscriberStatus.UNSUBSCRIBED: 1,
            SubscriberStatus.BOUNCED: 1,
            SubscriberStatus.COMPLAINED: 1,
        }
        assert subscriptions.mailable_count(s, nl.id) == 47
        ledger = s.execute(text("SELECT count(*) FROM deliveries WHERE status = 'sent'")).scalar()
        assert ledger == 50
        draft = editions.open_edition(s, settings, nl)  # next week's picks were kept
        assert draft.status == "draft" and draft.key != "2026-W49"
        titles = [p.title for p in editions.pick_rows(s, draft)]
        assert titles == ["A story for next week"]
        pending = subscriptions.find(s, nl.id, "pending.reader@example.org")
        assert pending is not None and pending.status == SubscriberStatus.PENDING
        anna = s.execute(text("SELECT count(*) FROM editors WHERE name = 'anna'")).scalar()
        assert anna == 1


def test_a_sqlite_store_of_the_previous_release_upgrades_with_all_its_data(tmp_path) -> None:
    db = tmp_path / "digest.db"
    shutil.copy(RELEASE, db)
    try:
        check_upgraded(f"sqlite:///{db}")
    finally:
        dispose_all()


OLD_ROWS = """
INSERT INTO issues (id, key, status, subject, preheader, intro, content, html, text, created_at,
  frozen_at, send_started_at, sent_at)
VALUES (1, '2026-W49', 'sent', 'S', '', '', '{"key": "2026-W49", "picks": [%s]}', '<p>x</p>', 'x',
  now(), now(), now(), now()),
 (2, '2026-W50', 'frozen', '', '', '', '{}', '', '', now(), now(), NULL, NULL);
INSERT INTO picks (url, title, summary, section, image_alt, image_credit, byline, tags, featured,
  position, issue_id, created_at)
SELECT 'https://news.example.com/' || g, 'Story ' || g, '', 'News', '', '', '', '[]', false, g,
  CASE WHEN g <= 12 THEN 1 ELSE NULL END, now() FROM generate_series(1, 13) g;
UPDATE picks SET title = 'A story for next week' WHERE issue_id IS NULL;
INSERT INTO subscribers (email, email_key, name, attributes, status, consent_at, consent_source,
  bounce_count, created_at, updated_at, status_changed_at)
SELECT 'r' || g || '@example.com', 'r' || g || '@example.com', '', '{}', 'confirmed', now(),
  'import', 0, now(), now(), now() FROM generate_series(1, 50) g;
UPDATE subscribers SET status = 'bounced', bounce_count = 2 WHERE email_key = 'r3@example.com';
UPDATE subscribers SET status = 'complained' WHERE email_key = 'r4@example.com';
UPDATE subscribers SET status = 'unsubscribed' WHERE email_key = 'r5@example.com';
INSERT INTO subscribers (email, email_key, name, attributes, status, consent_source, bounce_count,
  created_at, updated_at)
VALUES ('pending.reader@example.org', 'pending.reader@example.org', 'Pat', '{}', 'pending', 'cli',
  0, now(), now());
INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, last_reply)
SELECT 1, id, 'sent', 1, '250 OK' FROM subscribers WHERE id <= 50;
INSERT INTO editors (name, name_key, email, password_hash, created_at)
VALUES ('anna', 'anna', 'anna@news.example.com', 'x', now());
"""


@pytest.mark.usefixtures("workdir")
def test_a_postgresql_store_of_the_previous_release_upgrades_with_all_its_data() -> None:
    try:
        name = pg.create_database()
    except Exception as exc:  # psycopg.OperationalError and friends
        pg.unavailable(str(exc).splitlines()[0])
    url = pg.url_for(name)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        old = create_engine(normalise_url(url))
        with old.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")  # the schema of release 0.1
            picks = ", ".join(["{}"] * 12)
            for statement in (OLD_ROWS % picks).split(";"):
                if statement.strip():
                    conn.execute(text(statement))
        old.dispose()
        check_upgraded(url)
    finally:
        dispose_all()
        pg.drop_database(name)
