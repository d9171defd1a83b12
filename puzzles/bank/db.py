"""Connecting to the bank: engine, SQLite pragmas, transactions, and migrations run at connect.

SQLite (the default, one file under the data directory) runs in WAL mode with foreign keys on. Write
transactions start with BEGIN IMMEDIATE so two writers queue on the busy timeout instead of one failing
when it upgrades a read lock; read transactions stay deferred and never wait for writers.

PostgreSQL (`postgresql+psycopg://user:password@host/db`, for several app replicas) runs at READ COMMITTED;
writes that race use INSERT .. ON CONFLICT or SELECT .. FOR UPDATE. Replicas starting together migrate one
at a time under an advisory lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
DATABASE_FILE = "gelato.db"

# Settings declared once: (name, default, environment variable, help). The CLI reads these.
SETTINGS: tuple[tuple[str, str | None, str, str], ...] = (
    ("database_url", None, "DATABASE_URL", "SQLAlchemy URL of the bank (default: SQLite file in the data directory)"),
    ("data_dir", "data", "GELATO_DATA_DIR", "directory holding gelato.db when no database URL is given"),
)
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000")
_WRITE_OPTION = "gelato_write"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
# Any constant works: replicas only have to agree on it. ("gelato" in ASCII.)
MIGRATION_LOCK_ID = 0x67656C61746F
# Per replica: POOL_SIZE + POOL_OVERFLOW connections at most; size PostgreSQL's max_connections for N replicas.
POOL_SIZE = int(os.environ.get("GELATO_DB_POOL_SIZE", "5"))
POOL_OVERFLOW = int(os.environ.get("GELATO_DB_POOL_OVERFLOW", "5"))
POOL_RECYCLE_SECONDS = 1800  # under the idle timeouts of most proxies and managed databases


@dataclass
class Bank:
    """An open bank: the engine plus one session factory for reads and one for writes."""

    url: str
    engine: Engine
    reader: sessionmaker[Session]
    writer: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Bank:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def default_data_dir() -> Path:
    return Path(os.environ.get("GELATO_DATA_DIR") or "data")


def normalise_url(url: str) -> str:
    """`postgres://` and `postgresql://` (as hosting providers hand them out) use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def resolve_url(url: str | None = None, data_dir: Path | None = None) -> str:
    """The URL to use: explicit, else $DATABASE_URL, else sqlite:///<data_dir>/gelato.db."""
    url = url or os.environ.get("DATABASE_URL") or None
    if url:
        return normalise_url(url)
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(directory / DATABASE_FILE).resolve()}"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off: _on_sqlite_begin issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_sqlite_begin(connection: Any) -> None:
    mode = "IMMEDIATE" if connection.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite engines get the pragmas and explicit BEGIN handling."""
    try:
        parsed = make_url(normalise_url(url))
    except Exception as error:
        raise ValueError(f"invalid database URL {url!r}: {error}") from error
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"unsupported database {backend!r} in DATABASE_URL; use SQLite or PostgreSQL")
    if backend == "postgresql":
        return _postgresql_engine(parsed)
    if parsed.database in (None, "", ":memory:"):
        raise ValueError("an in-memory SQLite bank is not supported: give a file path (sqlite:///path/to/gelato.db)")
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _postgresql_engine(parsed: URL) -> Engine:
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError(f"PostgreSQL banks use the psycopg 3 driver (postgresql+psycopg://), not {parsed.drivername}")
    try:
        import psycopg  # noqa: F401 - a clear message instead of SQLAlchemy's when it is missing
    except ImportError as error:
        raise ValueError("the bank is on PostgreSQL but psycopg is missing: pip install 'psycopg[binary]'") from error
    return create_engine(
        parsed,
        pool_pre_ping=True,  # a replica survives database restarts and failovers
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={"application_name": "gelato", "connect_timeout": 10},
    )


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on `engine` (programmatic `alembic upgrade head`).

    Migrations run in one transaction that first takes a lock, so replicas starting at once migrate in turn
    (the later ones find the schema current): an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite.
    """
    from alembic import command

    _run_alembic(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to `revision` ("base": an empty schema). Takes the same lock as migrate."""
    from alembic import command

    _run_alembic(engine, command.downgrade, revision)


def _run_alembic(engine: Engine, alembic_command: Any, revision: str) -> None:
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    with engine.connect().execution_options(**{_WRITE_OPTION: True}) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        alembic_command(config, revision)
        connection.commit()


def connect(url: str | None = None, data_dir: Path | None = None, *, run_migrations: bool = True) -> Bank:
    """Open the bank at `url` (see `resolve_url`) and bring its schema to the latest migration."""
    resolved = resolve_url(url, data_dir)
    engine = make_engine(resolved)
    if run_migrations:
        migrate(engine)
    log.info("bank open at %s", engine.url.render_as_string(hide_password=True))
    return Bank(
        url=resolved,
        engine=engine,
        reader=sessionmaker(bind=engine, expire_on_commit=False),
        writer=sessionmaker(bind=engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False),
    )


@contextmanager
def read_session(bank: Bank) -> Iterator[Session]:
    """A short read-only transaction."""
    with bank.reader() as session, session.begin():
        yield session


@contextmanager
def write_session(bank: Bank) -> Iterator[Session]:
    """A short write transaction: committed when the block ends, rolled back on any error."""
    with bank.writer() as session, session.begin():
        yield session
