"""The store: one SQLAlchemy engine per database URL, migrated by Alembic on open.

SQLite by default (WAL, one writer, zero set-up; the file is created 0600);
PostgreSQL by URL for scale-out.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import DigestError, MissingExtra

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
MIGRATION_LOCK = 0x64696765  # pg_advisory_xact_lock key held while migrating ("dige")
#: How long a SQLite connection waits for another writer before failing.
BUSY_TIMEOUT_MS = 30000


def normalise_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def _create_private(url: str) -> None:
    """A new SQLite file is made 0600 before SQLite opens it (its -wal and -shm files
    then get the same mode): it holds password hashes and subscribers."""
    from digest.privatefiles import ensure_file, sqlite_path

    path = sqlite_path(url)
    if path is not None and path.parent.is_dir():
        ensure_file(path)


def get_engine(url: str, *, pool_size: int = 5, migrate: bool = True) -> Engine:
    """The engine for `url`, created once per process and migrated to head."""
    url = normalise_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.split("://", 1)[0] == "postgresql+psycopg":
                _require_psycopg()
            if url.startswith("sqlite"):
                _create_private(url)
                engine = create_engine(url, connect_args={"check_same_thread": False})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(
                    url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
                )
            _engines[url] = engine
        if migrate and url not in _migrated:
            upgrade(engine)
            _migrated.add(url)
    return engine


@cache
def head_revisions() -> frozenset[str] | None:
    """The newest migration revision(s), read from the files without importing Alembic.

    None when a file does not declare its revisions as plain literals; Alembic decides then.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        values: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    values[target.id] = ast.literal_eval(value)
                except ValueError:
                    return None
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):
            parents.update(str(d) for d in down)
        elif down is not None:
            return None
    return frozenset(revisions - parents) or None


def _at_head(conn: Connection) -> bool:
    """True when the database already records the newest revision: every command start
    after the first, answered without importing Alembic (a fifth of a second)."""
    heads = head_revisions()
    if heads is None or not inspect(conn).has_table("alembic_version"):
        return False
    recorded = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
    return frozenset(recorded) == heads


def _require_psycopg() -> None:
    """The PostgreSQL driver is the [postgres] extra: say so in one line if it is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingExtra("postgres", "DIGEST_DATABASE_URL is PostgreSQL") from None


def upgrade(engine: Engine) -> None:
    """Run Alembic migrations to head on `engine` (nothing to import when already there)."""
    try:
        with engine.connect() as conn:
            if _at_head(conn):
                return
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        if engine.dialect.name == "sqlite":
            _upgrade_sqlite(engine, cfg)
            return
        from alembic import command

        with engine.begin() as conn:
            # Several processes may open a fresh database at once: one migrates,
            # the others wait here and then find it at head.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as exc:
        if isinstance(exc, DigestError):
            raise
        raise DigestError(f"DIGEST_DATABASE_URL: cannot open the database: {_short(exc)}") from exc


def _upgrade_sqlite(engine: Engine, cfg: Any) -> None:
    """Migrate SQLite with foreign keys off (batch mode rebuilds tables others refer to),
    then check every reference before committing, and turn them back on."""
    from alembic import command

    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    table, rowid, parent, _ = broken[0]
                    raise DigestError(
                        f"DIGEST_DATABASE_URL: the upgrade left {len(broken)} broken reference(s), "
                        f"e.g. {table} row {rowid} -> {parent}; nothing was changed"
                    )
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def dispose_all() -> None:
    """Close every engine (tests, forked workers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def analyze(session: Session, tables: tuple[str, ...], *, stale_only: bool = False) -> None:
    """PostgreSQL: ANALYZE these tables (with `stale_only`, those autovacuum has not
    analysed since 10 % of their rows changed). A list imported a moment ago, or a ledger
    just filled, would otherwise be planned as a few rows (a claim of a large send then
    scans every owed row). ANALYZE sees the transaction's own rows; the table names are
    ours, never user input."""
    if stale_only:
        tables = tuple(
            session.scalars(
                text(
                    "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:names) AND "
                    "(COALESCE(last_analyze, last_autoanalyze) IS NULL "
                    "OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)"
                ),
                {"names": list(tables)},
            )
        )
    for name in tables:
        session.execute(text(f'ANALYZE "{name}"'))  # our own table names only


def affected(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE touched (0 when the driver cannot say).

    Session.execute() is typed as returning a plain Result; DML gives a CursorResult.
    """
    count = cast("CursorResult[Any]", result).rowcount
    return count if count is not None and count > 0 else 0
