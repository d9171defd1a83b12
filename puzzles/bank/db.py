"""Connecting to the bank: engine, SQLite pragmas, transactions, and migrations run at connect.

SQLite (the default, one file under the data directory) runs in WAL mode with foreign keys on. Write
transactions start with BEGIN IMMEDIATE so two writers queue on the busy timeout instead of one failing
when it upgrades a read lock; read transactions stay deferred and never wait for writers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
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


def resolve_url(url: str | None = None, data_dir: Path | None = None) -> str:
    """The URL to use: explicit, else $DATABASE_URL, else sqlite:///<data_dir>/gelato.db."""
    url = url or os.environ.get("DATABASE_URL") or None
    if url:
        return url
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
        parsed = make_url(url)
    except Exception as error:
        raise ValueError(f"invalid database URL {url!r}: {error}") from error
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database in (None, "", ":memory:"):
        raise ValueError("an in-memory SQLite bank is not supported: give a file path (sqlite:///path/to/gelato.db)")
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on `engine` (programmatic `alembic upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
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
