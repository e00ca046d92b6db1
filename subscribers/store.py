"""All SQL about subscribers, in one place.

Works on SQLite and PostgreSQL. Adding an address is an upsert keyed on the
lower-cased address, so concurrent sign-ups and imports cannot create twins, and
its CASE on status is the single rule that keeps unsubscribed, bounced and
complained addresses blocked for good.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal_column,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.errors import InputError, NotFound, StateError
from subscribers.addresses import (
    ascii_address,
    clean_name,
    needs_smtputf8,
    normalise_email,
)
from subscribers.model import BLOCKED, STATUSES, Subscriber, SubscriberStatus

__all__ = [
    "add",
    "ascii_address",
    "clean_name",
    "count",
    "get",
    "get_by_email",
    "get_many",
    "iter_confirmed_ids",
    "list_",
    "needs_smtputf8",
    "normalise_email",
    "record_bounce",
    "remove",
    "set_status",
    "upsert_rows",
]

TABLE = typed(Table, Subscriber.__table__)


def upsert_statement(session: Session, now: datetime) -> Any:
    """INSERT ... ON CONFLICT (email_key) DO UPDATE for the session's database.

    Rules, in SQL so they hold under concurrency too:
    - a blocked row (unsubscribed/bounced/complained) is left entirely alone;
    - an incoming blocked status (e.g. an exported suppression list) always wins;
    - an incoming "confirmed" confirms a pending row and records consent;
    - otherwise the status stays; empty incoming names never wipe a stored one.
    Attributes arrive already merged with the stored ones (see csvio / `add`).
    `now` is inlined as a literal: one timestamp per batch instead of three binds per row.
    """
    dialect = session.get_bind().dialect
    stmt: postgresql.Insert | sqlite.Insert
    if dialect.name == "postgresql":
        stmt = postgresql.insert(TABLE)
    elif dialect.name == "sqlite":
        stmt = sqlite.insert(TABLE)
    else:  # pragma: no cover - the settings only allow the two
        raise StateError(f"unsupported database {dialect.name!r}")
    when = _timestamp_literal(dialect, now)
    stmt = stmt.values(
        bounce_count=literal_column("0"),
        created_at=when,
        updated_at=when,
        status_changed_at=when,
    )
    new = stmt.excluded
    old = TABLE.c
    becomes_blocked = _blocked(new.status)
    confirms = and_(
        old.status == _const(SubscriberStatus.PENDING),
        new.status == _const(SubscriberStatus.CONFIRMED),
    )
    changes = or_(becomes_blocked, confirms)
    return stmt.on_conflict_do_update(
        index_elements=[old.email_key],
        set_={
            "status": case(
                (_blocked(old.status), old.status),
                (becomes_blocked, new.status),
                (confirms, _const(SubscriberStatus.CONFIRMED)),
                else_=old.status,
            ),
            "name": case((new.name == _const(""), old.name), else_=new.name),
            "attributes": new.attributes,
            "consent_at": case((confirms, new.consent_at), else_=old.consent_at),
            "consent_source": case((confirms, new.consent_source), else_=old.consent_source),
            "status_changed_at": case((changes, new.updated_at), else_=old.status_changed_at),
            "updated_at": new.updated_at,
        },
        where=not_(_blocked(old.status)),
    )


def _timestamp_literal(dialect: Any, now: datetime) -> Any:
    """`now` as SQL text stored exactly like a bound value (SQLite keeps dates as text)."""
    impl = TABLE.c.updated_at.type.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if process is not None:  # SQLite: the same string a bound datetime becomes
        text = str(process(now)).replace("'", "''")
        return literal_column(f"'{text}'", TABLE.c.updated_at.type)
    literal = impl.literal_processor(dialect)
    assert literal is not None
    return cast(literal_column(literal(now)), TABLE.c.updated_at.type)


def _blocked(column: Any) -> Any:
    """status IN (blocked...) spelled as SQL literals, which executemany accepts."""
    return column.in_([_const(status) for status in BLOCKED])


def _const(value: str) -> Any:
    """One of our own status words inlined as a SQL literal: fewer binds per row."""
    assert value.isalpha() or not value
    return literal_column(f"'{value}'", String)


def upsert_rows(session: Session, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Upsert rows made by `row_values` in one executemany round trip, stamped `now`."""
    if rows:
        session.connection().execute(upsert_statement(session, now), list(rows))


def row_values(
    email: str,
    key: str,
    name: str,
    attributes: dict[str, str],
    status: str,
    source: str,
    now: datetime,
) -> dict[str, Any]:
    """One row for `upsert_rows`; consent is recorded only for confirmed rows."""
    return {
        "email": email,
        "email_key": key,
        "name": name,
        "attributes": attributes,
        "status": status,
        "consent_at": now if status == SubscriberStatus.CONFIRMED else None,
        "consent_source": source,
    }


def add(
    session: Session,
    email: str,
    name: str = "",
    *,
    status: str = SubscriberStatus.PENDING,
    source: str = "cli",
    attributes: dict[str, str] | None = None,
) -> Subscriber:
    """Add an address, or update an existing one within the blocking rules.

    Re-adding a blocked address changes nothing; check the returned row's status
    to tell the user. Passing status=CONFIRMED confirms a pending address.
    """
    if status not in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED):
        raise InputError(
            f"must be {SubscriberStatus.PENDING} or {SubscriberStatus.CONFIRMED}, not {status!r}",
            field="status",
        )
    address, key = normalise_email(email)
    name = clean_name(name)
    merged = dict(attributes or {})
    existing = session.execute(
        select(TABLE.c.attributes).where(TABLE.c.email_key == key)
    ).scalar_one_or_none()
    if existing:
        merged = {**existing, **merged}
    now = utcnow()
    upsert_rows(session, [row_values(address, key, name, merged, status, source, now)], now)
    row = session.execute(
        select(Subscriber)
        .where(Subscriber.email_key == key)
        .execution_options(populate_existing=True)
    ).scalar_one()
    return row


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


def get_by_email(session: Session, email: str) -> Subscriber | None:
    """Look up by address, case-insensitively; tolerant of addresses that no longer validate."""
    try:
        key = normalise_email(email)[1]
    except InputError:
        key = email.strip().lower()
    return session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()


def remove(session: Session, email: str) -> Subscriber:
    """Unsubscribe an address. The row stays, so no later import can bring it back."""
    row = get_by_email(session, email)
    if row is None:
        raise NotFound(f"no subscriber with address {email.strip()!r}")
    if row.status not in BLOCKED:
        row.status = SubscriberStatus.UNSUBSCRIBED
        row.status_changed_at = utcnow()
        session.flush()
    return row


def list_(
    session: Session, status: str | None = None, limit: int | None = None, offset: int = 0
) -> list[Subscriber]:
    """Subscribers in id order, optionally of one status."""
    query = select(Subscriber).order_by(Subscriber.id).offset(offset).limit(limit)
    if status is not None:
        _check_status(status)
        query = query.where(Subscriber.status == status)
    return list(session.scalars(query))


def count(session: Session) -> dict[SubscriberStatus, int]:
    """Number of subscribers per status; every status is present, zeros included."""
    counts = dict.fromkeys(STATUSES, 0)
    rows = session.execute(select(TABLE.c.status, func.count()).group_by(TABLE.c.status))
    for status, n in rows:
        counts[status] = n
    return counts


def iter_confirmed_ids(session: Session, after_id: int = 0, batch: int = 1000) -> Iterator[int]:
    """Confirmed subscriber ids in ascending order, fetched by keyset pagination.

    Each page is one indexed range query on (status, id), so memory stays flat and
    a resumed send can pass the last id it handled.
    """
    last = after_id
    while True:
        ids = list(
            session.scalars(
                select(TABLE.c.id)
                .where(TABLE.c.status == SubscriberStatus.CONFIRMED, TABLE.c.id > last)
                .order_by(TABLE.c.id)
                .limit(batch)
            )
        )
        yield from ids
        if len(ids) < batch:
            return
        last = ids[-1]


def set_status(
    session: Session, subscriber_id: int, status: str, source: str, *, force: bool = False
) -> Subscriber:
    """Confirm, unsubscribe, bounce or complain.

    A blocked subscriber is never made pending or confirmed again unless `force`
    (e.g. after a fresh double opt-in) - that raises StateError instead. Confirming
    records consent (now, `source`).
    """
    _check_status(status)
    row = get(session, subscriber_id)
    if row.status == status:
        return row
    if row.status in BLOCKED and status not in BLOCKED and not force:
        raise StateError(f"{row.email} is {row.status}; it is not made {status} again")
    now = utcnow()
    row.status = SubscriberStatus(status)
    row.status_changed_at = now
    if status == SubscriberStatus.CONFIRMED:
        row.consent_at = now
        row.consent_source = source
    session.flush()
    return row


def record_bounce(session: Session, subscriber_id: int, threshold: int) -> bool:
    """Count a hard bounce; mark the subscriber bounced at `threshold`. True if now bounced.

    One UPDATE, so two workers recording bounces at once both count.
    """
    now = utcnow()
    reaches = and_(TABLE.c.bounce_count + 1 >= threshold, TABLE.c.status.not_in(BLOCKED))
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.id == subscriber_id)
        .values(
            bounce_count=TABLE.c.bounce_count + 1,
            status=case((reaches, SubscriberStatus.BOUNCED), else_=TABLE.c.status),
            status_changed_at=case((reaches, now), else_=TABLE.c.status_changed_at),
            updated_at=now,
        )
        .returning(TABLE.c.status)
    ).first()
    if result is None:
        raise NotFound(f"no subscriber with id {subscriber_id}")
    cached = session.identity_map.get(session.identity_key(Subscriber, subscriber_id))
    if cached is not None:
        session.expire(cached)
    return result[0] == SubscriberStatus.BOUNCED


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InputError(f"must be one of {', '.join(STATUSES)}; got {status!r}", field="status")
