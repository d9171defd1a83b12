"""Online, consistent backups of the bank, and restoring them.

Two formats:
- a SQLite database file (`OUT` not ending in .zip; SQLite banks only): SQLite's backup API copies the
  live database page by page, consistent even while the app writes;
- a `.zip` archive (either back end, restorable into either): every table read in one snapshot
  transaction (REPEATABLE READ on PostgreSQL; a WAL read transaction on SQLite), written as
    backup.json               format, version, schema revision, source database, row counts
    pack.json + images/*.png  a puzzle pack of every puzzle (any status): `python -m puzzles import` reads it
    tables/<table>.json       {"columns": [...], "rows": [[...], ...]} for every table; images' PNG bytes
                              live in images/<sha256>.png, not in tables/images.json

Restoring replaces the whole bank in one transaction: a failed restore leaves the bank as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Table, delete, func, insert, select, text
from sqlalchemy.engine import make_url

from puzzles.bank.db import Bank, connect, write_session
from puzzles.bank.models import Base, Image
from puzzles.pack import IMAGES_DIR, PACK_JSON, pack_json_bytes, replacing

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "gelato-bank-backup"
ARCHIVE_VERSION = 1
MANIFEST = "backup.json"
TABLES_DIR = "tables"
INSERT_CHUNK = 500  # rows per executemany batch on restore
_IMAGE_MEMBER = re.compile(rf"^{IMAGES_DIR}/([0-9a-f]{{64}})\.png$")
_TABLE_MEMBER = re.compile(rf"^{TABLES_DIR}/([a-z_]+)\.json$")


def is_archive(path: Path | str) -> bool:
    return Path(path).suffix.lower() == ".zip"


def schema_revision(connection: Connection) -> str | None:
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


# ---------------------------------------------------------------- backup


def backup(bank: Bank, out: Path | str) -> dict[str, int]:
    """Back the bank up to `out` (a .zip archive, or a SQLite file for SQLite banks); returns rows per table."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists already; choose a new file for the backup")
    if is_archive(out):
        return backup_archive(bank, out)
    if bank.dialect != "sqlite":
        raise ValueError(f"a {bank.dialect} bank backs up to a .zip archive: OUT must end in .zip, not {out.name}")
    return backup_sqlite_file(bank, out)


def backup_sqlite_file(bank: Bank, out: Path) -> dict[str, int]:
    """Copy a SQLite bank with SQLite's online backup API."""
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = bank.engine.raw_connection()
    try:
        target = sqlite3.connect(out)
        with target:
            raw.driver_connection.backup(target)  # consistent copy even while others write
        counts = {t.name: target.execute(f'SELECT COUNT(*) FROM "{t.name}"').fetchone()[0] for t in _tables()}
        target.close()
    finally:
        raw.close()
    log.info("backed up the bank to SQLite file %s", out)
    return counts


def _tables() -> list[Table]:
    """Every bank table, parents before the tables that refer to them."""
    return list(Base.metadata.sorted_tables)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@contextmanager
def _snapshot(bank: Bank) -> Iterator[Connection]:
    """A read transaction that sees one consistent state of every table."""
    options: dict[str, Any] = {"stream_results": True}
    if bank.dialect == "postgresql":
        options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with bank.engine.connect().execution_options(**options) as connection, connection.begin():
        yield connection


def backup_archive(bank: Bank, out: Path) -> dict[str, int]:
    """Write the whole bank as a .zip archive (see the module docstring), atomically."""
    with (replacing(out) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive,
          _snapshot(bank) as connection):
        revision = schema_revision(connection)
        counts: dict[str, int] = {}
        dumped: dict[str, list[dict[str, Any]]] = {}
        for table in _tables():
            counts[table.name], rows = _dump_table(connection, table, archive)
            if table.name in ("puzzles", "puzzle_panels", "puzzle_candidates"):
                dumped[table.name] = rows
        archive.writestr(PACK_JSON, pack_json_bytes(_pack_entries(dumped)))
        manifest = {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_VERSION,
            "schema_revision": revision,
            "source_database": bank.dialect,
            "created_at": datetime.now(UTC).isoformat(),
            "counts": counts,
        }
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
    log.info("backed up the bank (%s) to archive %s: %s", bank.dialect, out, counts)
    return counts


def _dump_table(connection: Connection, table: Table, archive: zipfile.ZipFile) -> tuple[int, list[dict[str, Any]]]:
    """Write tables/<name>.json (and each image's PNG); returns the row count and the rows as dicts."""
    columns = [column for column in table.columns if not (table.name == Image.__tablename__ and column.name == "png")]
    names = [column.name for column in columns]
    rows: list[dict[str, Any]] = []
    query = select(table).order_by(*table.primary_key.columns)
    for row in connection.execute(query).yield_per(INSERT_CHUNK).mappings():
        if table.name == Image.__tablename__:
            archive.writestr(zipfile.ZipInfo(f"{IMAGES_DIR}/{row['sha256']}.png"), row["png"])  # PNGs: stored as is
        rows.append({name: _plain(row[name]) for name in names})
    body = {"columns": names, "rows": [[row[name] for name in names] for row in rows]}
    archive.writestr(f"{TABLES_DIR}/{table.name}.json", json.dumps(body, separators=(",", ":"), ensure_ascii=False))
    return len(rows), rows


def _pack_entries(dumped: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """pack.json entries for every puzzle, built from the dumped rows (image hashes are the bank's own)."""
    images: dict[str, dict[str, list[tuple[int, str]]]] = {"puzzle_panels": {}, "puzzle_candidates": {}}
    for table, by_puzzle in images.items():
        for row in dumped[table]:
            by_puzzle.setdefault(row["puzzle_id"], []).append((row["position"], row["image_sha256"]))
    entries = []
    for row in dumped["puzzles"]:
        entries.append(
            {
                "id": row["id"],
                "family": row["family"],
                "title": row["title"],
                "panels": [sha for _, sha in sorted(images["puzzle_panels"].get(row["id"], []))],
                "answer": row["answer_sha256"],
                "candidates": [sha for _, sha in sorted(images["puzzle_candidates"].get(row["id"], []))],
                "answer_index": row["answer_index"],
                "layout": row["layout"],
                "tags": row["tags"],
                "difficulty": row["difficulty"],
                "source": row["source"],
                "license": row["licence"],
                "meta": row["meta"],
            }
        )
    return entries


# ---------------------------------------------------------------- restore


def restore(url: str, source: Path | str) -> dict[str, int]:
    """Replace the bank at `url` with the backup `source` (.zip archive, or SQLite file for a SQLite bank)."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"backup file {source} not found")
    if is_archive(source):
        with connect(url) as bank:
            return restore_archive(bank, source)
    if make_url(url).get_backend_name() != "sqlite":
        raise ValueError(f"{source.name} is a SQLite backup; a PostgreSQL bank restores from a .zip archive")
    return restore_sqlite_file(url, source)


def _check_sqlite_backup(path: Path) -> None:
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {row[0] for row in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        source.close()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is not a SQLite database: {error}") from error
    if not {"alembic_version", "puzzles", "images"} <= tables:
        raise ValueError(f"{path} is not a Gelato bank backup (tables missing)")


def restore_sqlite_file(url: str, source: Path) -> dict[str, int]:
    """Replace a SQLite bank with a SQLite backup file (then migrate it forward if it is older)."""
    _check_sqlite_backup(source)
    with connect(url, run_migrations=False) as bank:
        raw = bank.engine.raw_connection()
        try:
            backup_file = sqlite3.connect(source)
            backup_file.backup(raw.driver_connection)  # replaces the whole database
            backup_file.close()
        finally:
            raw.close()
    with connect(url) as bank:  # a backup from an older version is migrated forward
        return row_counts(bank)


def row_counts(bank: Bank) -> dict[str, int]:
    with bank.engine.connect() as connection:
        return {table.name: connection.scalar(select(func.count()).select_from(table)) or 0 for table in _tables()}


def _read_manifest(archive: zipfile.ZipFile, source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError as error:
        raise ValueError(f"{source} is not a bank backup: no {MANIFEST} (a plain puzzle pack? use import)") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: {MANIFEST} is not valid JSON ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"{source}: {MANIFEST} does not describe a {ARCHIVE_FORMAT} archive")
    if manifest.get("format_version") != ARCHIVE_VERSION:
        raise ValueError(f"{source}: backup format version {manifest.get('format_version')!r}; this version reads 1")
    return manifest


def _read_table(archive: zipfile.ZipFile, table: Table, source: Path) -> list[dict[str, Any]]:
    """The rows of one table as dicts, checked against the table's columns, with times parsed."""
    member = f"{TABLES_DIR}/{table.name}.json"
    try:
        body = json.loads(archive.read(member))
        names, rows = body["columns"], body["rows"]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{source}: {member} is missing or unreadable ({error})") from error
    unknown = set(names) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"{source}: {member} has columns the bank does not know: {', '.join(sorted(unknown))}")
    times = [name for name in names if isinstance(table.columns[name].type, DateTime)]
    records = []
    for index, values in enumerate(rows):
        if not isinstance(values, list) or len(values) != len(names):
            raise ValueError(f"{source}: {member} row {index} does not match its {len(names)} columns")
        record = dict(zip(names, values, strict=True))
        for name in times:
            if record[name] is not None:
                record[name] = datetime.fromisoformat(record[name])
        records.append(record)
    return records


def _with_png(archive: zipfile.ZipFile, rows: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    for row in rows:
        member = f"{IMAGES_DIR}/{row['sha256']}.png"
        try:
            data = archive.read(member)
        except KeyError as error:
            raise ValueError(f"{source}: {member} is missing") from error
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise ValueError(f"{source}: {member} does not match its sha256 (damaged archive)")
        row["png"] = data
    return rows


def _check_members(archive: zipfile.ZipFile, source: Path) -> None:
    known_tables = {table.name for table in _tables()}
    for name in archive.namelist():
        table = _TABLE_MEMBER.match(name)
        if name in (MANIFEST, PACK_JSON) or _IMAGE_MEMBER.match(name) or (table and table.group(1) in known_tables):
            continue
        raise ValueError(f"{source}: unexpected member {name!r} in a bank backup")


def restore_archive(bank: Bank, source: Path) -> dict[str, int]:
    """Replace every row of `bank` with the archive's, in one transaction; returns rows per table."""
    with zipfile.ZipFile(source) as archive:
        _check_members(archive, source)
        manifest = _read_manifest(archive, source)
        with bank.engine.connect() as connection:
            current = schema_revision(connection)
        if manifest.get("schema_revision") != current:
            raise ValueError(
                f"{source}: backup has schema revision {manifest.get('schema_revision')!r}, this bank {current!r}; "
                "restore it with the version that wrote it, then upgrade"
            )
        counts: dict[str, int] = {}
        with write_session(bank) as session:
            for table in reversed(_tables()):
                session.execute(delete(table))
            for table in _tables():
                rows = _read_table(archive, table, source)
                if table.name == Image.__tablename__:
                    rows = _with_png(archive, rows, source)
                for start in range(0, len(rows), INSERT_CHUNK):
                    session.execute(insert(table), rows[start : start + INSERT_CHUNK])
                counts[table.name] = len(rows)
            if bank.dialect == "postgresql":
                _reset_sequences(session.connection())
    expected = manifest.get("counts")
    if isinstance(expected, dict) and expected != counts:
        log.warning("restored row counts %s differ from the backup's manifest %s", counts, expected)
    log.info("restored %s from %s (written by %s)", bank.dialect, source, manifest.get("source_database"))
    return counts


def _reset_sequences(connection: Connection) -> None:
    """Point every serial id sequence past the restored ids, so new rows do not collide with them."""
    for table in _tables():
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                        f'COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, false)'
                    )
                )
