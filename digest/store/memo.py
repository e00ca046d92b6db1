"""Results of slow computations kept in the store, keyed by a hash of their inputs.

A result is valid for exactly the inputs it was computed from, so the key is a
digest of all of them and nothing is ever invalidated: other inputs give another
key. Any process reads what another stored (the preflight `digest build` ran is
what `digest send` and the scheduler show, without running SpamAssassin again).
Rows are tied to an owner (an edition) only so that superseded results of that
owner can be dropped when a new one is stored.

A memo is an optimisation: `put` never makes its caller fail. When the store is
busy (SQLite held by another writer, e.g. the caller's own open transaction) it
gives up after a short wait and the result is simply computed again next time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Integer, String, Table, UniqueConstraint, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, UTCDateTime
from digest.store.engine import BUSY_TIMEOUT_MS

log = logging.getLogger("digest.store")
#: How long `put` waits for a busy store before giving up (milliseconds).
PUT_WAIT_MS = 250


class Memo(Base):
    """One stored result: `kind` names the computation, `key` is the digest of its inputs."""

    __tablename__ = "memos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(64))
    #: What the result belongs to (an edition id), to drop superseded results; no
    #: foreign key, so storing one never waits on a lock held on that row.
    owner: Mapped[int | None] = mapped_column(Integer, index=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("kind", "key", name="uq_memos_kind_key"),)


TABLE = cast(Table, Memo.__table__)


def digest_of(parts: Iterable[object]) -> str:
    """A key for these inputs (SHA-256 over each part's text, length-prefixed)."""
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def get(engine: Engine, kind: str, key: str) -> dict[str, Any] | None:
    """The stored result for (kind, key), or None (also when the store cannot be read)."""
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(TABLE.c.value).where(TABLE.c.kind == kind, TABLE.c.key == key)
            ).scalar()
    except SQLAlchemyError as exc:
        log.debug("memo %s: not read: %s", kind, exc)
        return None


def put(
    engine: Engine, kind: str, key: str, value: dict[str, Any], *, owner: int | None = None
) -> bool:
    """Store a result in its own short transaction; False when the store was busy.

    With an `owner`, that owner's other results of this kind are dropped.
    """
    table = TABLE
    try:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={PUT_WAIT_MS}")
                conn.commit()
            try:
                with conn.begin():
                    if not sqlite:
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{PUT_WAIT_MS}ms'")
                    conn.execute(delete(table).where(table.c.kind == kind, table.c.key == key))
                    if owner is not None:
                        conn.execute(
                            delete(table).where(table.c.kind == kind, table.c.owner == owner)
                        )
                    conn.execute(
                        table.insert().values(
                            kind=kind, key=key, owner=owner, value=value, created_at=utcnow()
                        )
                    )
            finally:
                if sqlite:  # the pool hands this connection on
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                    conn.commit()
    except SQLAlchemyError as exc:
        log.debug("memo %s: not stored: %s", kind, exc)
        return False
    return True
