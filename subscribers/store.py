"""Addresses: all SQL on the subscribers table (one row per address).

What an address carries is its name, its attributes and its suppression (bounced or
complained: no newsletter at all, ever again). Which newsletters it gets is in
`subscribers.subscriptions`. The rules, kept in SQL so they hold under concurrency:

- a suppressed address is left entirely alone by upserts (name, attributes, all);
- an incoming suppression (an exported suppression list) always wins;
- an empty incoming name never wipes a stored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    String,
    Table,
    and_,
    case,
    cast,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.errors import NotFound, StateError
from digest.webhooks import events
from subscribers.addresses import ascii_address, clean_name, needs_smtputf8, normalise_email
from subscribers.model import Subscriber, Suppression

TABLE = typed(Table, Subscriber.__table__)

__all__ = [
    "TABLE",
    "address_row",
    "ascii_address",
    "clean_name",
    "get",
    "get_by_email",
    "get_many",
    "ids_for",
    "needs_smtputf8",
    "normalise_email",
    "record_bounce",
    "require",
    "suppress",
    "upsert_addresses",
]


def insert_for(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    """INSERT with ON CONFLICT support for the session's database."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise StateError(f"unsupported database {name!r}")  # pragma: no cover - settings allow two


def timestamp_literal(session: Session, column: Any, now: datetime) -> Any:
    """`now` as SQL text stored exactly like a bound value: one timestamp per batch
    instead of a bind per row (SQLite keeps dates as text)."""
    dialect = session.get_bind().dialect
    impl = column.type.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if process is not None:  # SQLite: the same string a bound datetime becomes
        text = str(process(now)).replace("'", "''")
        return literal_column(f"'{text}'", column.type)
    literal = impl.literal_processor(dialect)
    assert literal is not None
    return cast(literal_column(literal(now)), column.type)


def const(value: str) -> Any:
    """One of our own enum words inlined as a SQL literal: fewer binds per row."""
    assert value.isalpha() or not value
    return literal_column(f"'{value}'", String)


def upsert_statement(session: Session, now: datetime) -> Any:
    """INSERT ... ON CONFLICT (email_key) DO UPDATE, by the rules in the module docstring.

    Attributes arrive already merged with the stored ones (see csvio and subscriptions.add).
    """
    when = timestamp_literal(session, TABLE.c.updated_at, now)
    stmt = insert_for(session, TABLE).values(
        bounce_count=literal_column("0"), created_at=when, updated_at=when
    )
    new, old = stmt.excluded, TABLE.c
    return stmt.on_conflict_do_update(
        index_elements=[old.email_key],
        set_={
            "name": case((new.name == const(""), old.name), else_=new.name),
            "attributes": new.attributes,
            "suppression": new.suppression,
            "suppressed_at": case((new.suppression.is_(None), None), else_=new.updated_at),
            "suppression_source": new.suppression_source,
            "updated_at": new.updated_at,
        },
        where=old.suppression.is_(None),
    )


def address_row(
    email: str,
    key: str,
    name: str,
    attributes: dict[str, str],
    suppression: Suppression | None = None,
    source: str = "",
) -> dict[str, Any]:
    """One row for `upsert_addresses`."""
    return {
        "email": email,
        "email_key": key,
        "name": name,
        "attributes": attributes,
        "suppression": suppression,
        "suppressed_at": None,
        "suppression_source": source if suppression else "",
    }


def upsert_addresses(session: Session, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Upsert rows made by `address_row` in one executemany round trip, stamped `now`."""
    if rows:
        session.connection().execute(upsert_statement(session, now), list(rows))


def ids_for(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """Subscriber ids by lower-cased address."""
    if not keys:
        return {}
    rows = session.execute(
        select(TABLE.c.email_key, TABLE.c.id).where(TABLE.c.email_key.in_(list(keys)))
    )
    return {key: sid for key, sid in rows}


def get(session: Session, subscriber_id: int) -> Subscriber:
    """The subscriber with this id, or NotFound."""
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        raise NotFound(f"no subscriber with id {subscriber_id}")
    return row


def get_many(session: Session, ids: Sequence[int]) -> list[Subscriber]:
    """Subscribers by id, in id order (missing ids are skipped)."""
    if not ids:
        return []
    return list(
        session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)).order_by(Subscriber.id))
    )


def key_of(email: str) -> str:
    """The lookup key of an address; tolerant of addresses that no longer validate."""
    try:
        return normalise_email(email)[1]
    except Exception:  # InputError: an address stored before the rules tightened
        return email.strip().lower()


def get_by_email(session: Session, email: str) -> Subscriber | None:
    """Look up by address, case-insensitively."""
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key_of(email))).first()


def require(session: Session, email: str) -> Subscriber:
    row = get_by_email(session, email)
    if row is None:
        raise NotFound(f"no subscriber with address {email.strip()!r}")
    return row


def suppress(session: Session, subscriber_id: int, kind: Suppression, source: str) -> bool:
    """Stop all mail to an address (bounced or complained); True if that changed anything.

    A complaint outranks a bounce: a bounced address that complains becomes complained.
    """
    row = get(session, subscriber_id)
    if row.suppression == kind or row.suppression == Suppression.COMPLAINED:
        return False
    row.suppression = kind
    row.suppressed_at = utcnow()
    row.suppression_source = source[:500]
    session.flush()
    events.suppressed(session, subscriber_id, kind)
    return True


def record_bounce(session: Session, subscriber_id: int, threshold: int) -> bool:
    """Count a bounce; suppress the address as bounced at `threshold`. True if now bounced.

    One UPDATE, so two senders recording bounces at once both count.
    """
    now = utcnow()
    reaches = and_(TABLE.c.bounce_count + 1 >= threshold, TABLE.c.suppression.is_(None))
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.id == subscriber_id)
        .values(
            bounce_count=TABLE.c.bounce_count + 1,
            suppression=case((reaches, Suppression.BOUNCED.value), else_=TABLE.c.suppression),
            suppressed_at=case((reaches, now), else_=TABLE.c.suppressed_at),
            suppression_source=case(
                (reaches, "bounced at delivery"), else_=TABLE.c.suppression_source
            ),
            updated_at=now,
        )
        .returning(TABLE.c.suppression, TABLE.c.suppressed_at)
    ).first()
    if result is None:
        raise NotFound(f"no subscriber with id {subscriber_id}")
    cached = session.identity_map.get(session.identity_key(Subscriber, subscriber_id))
    if cached is not None:
        session.expire(cached)
    if result[0] == Suppression.BOUNCED and result[1] == now:  # reached by this very bounce
        events.suppressed(session, subscriber_id, Suppression.BOUNCED)
    return result[0] == Suppression.BOUNCED
