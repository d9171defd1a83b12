"""Curator accounts: scrypt password hashes, disabling, and a login rate limit kept in the database.

The rate limit (MAX_FAILURES failed logins per name within FAILURE_WINDOW) lives in the login_failures
table, so it holds across processes and app replicas. A password check is reserved before it runs (a row
counted and inserted in one locked transaction), so concurrent tries cannot pass the limit together. The
lock on a name applies to suspect callers only (the app passes `suspect=False` for a client address with
no recent failure), so a flood of wrong passwords does not lock the owner out. Rows are kept only as long
as they count (FAILURE_WINDOW) and a refusal while limited adds none; every refused login is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import AuditEntry, Curator, LoginFailure, utc_now
from puzzles.bank.store import NotFoundError

log = logging.getLogger(__name__)

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=5)
FAILURE_RETENTION = FAILURE_WINDOW  # rows only serve the count; the log keeps the history
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 64


@dataclass
class CuratorInfo:
    name: str
    disabled: bool
    created_at: datetime


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """ "scrypt$n$r$p$salt$key" with a fresh random salt (parameters stored so they can change later)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash from hash_password (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        log.error("unreadable password hash in the curators table")
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when the name is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


def _check_new_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable() or name != name.strip():
        raise ValueError(f"curator name must be 1..{MAX_NAME_LENGTH} printable characters without outer spaces")


def add_curator(bank: Bank, name: str, password: str) -> None:
    """Create a curator account; ValueError if the name is taken or the password too short."""
    _check_name(name)
    _check_new_password(password)
    password_hash = hash_password(password)
    try:
        with write_session(bank) as session:
            session.add(Curator(name=name, password_hash=password_hash))
            session.add(AuditEntry(curator=name, action="curator:add", target=f"curator:{name}", before=None, after={}))
    except IntegrityError as error:
        raise ValueError(f"a curator named {name!r} already exists") from error
    log.info("curator %s added", name)


def list_curators(bank: Bank) -> list[CuratorInfo]:
    with read_session(bank) as session:
        rows = session.execute(select(Curator.name, Curator.disabled, Curator.created_at).order_by(Curator.name))
        return [CuratorInfo(name, disabled, created_at) for name, disabled, created_at in rows]


def _update_curator(bank: Bank, name: str, action: str, **values: object) -> None:
    with write_session(bank) as session:
        row = session.scalar(select(Curator).where(Curator.name == name))
        if row is None:
            raise NotFoundError(f"no curator named {name!r}")
        before = {"disabled": row.disabled}
        for key, value in values.items():
            setattr(row, key, value)
        session.add(
            AuditEntry(
                curator=name, action=action, target=f"curator:{name}", before=before, after={"disabled": row.disabled}
            )
        )
    log.info("curator %s: %s", name, action)


def disable_curator(bank: Bank, name: str) -> None:
    """Refuse every future login of this curator (the account and its history stay)."""
    _update_curator(bank, name, "curator:disable", disabled=True)


def enable_curator(bank: Bank, name: str) -> None:
    _update_curator(bank, name, "curator:enable", disabled=False)


def set_password(bank: Bank, name: str, password: str) -> None:
    _check_new_password(password)
    _update_curator(bank, name, "curator:password", password_hash=hash_password(password))


def _lock_name(session: Any, dialect: str, name: str) -> None:
    """Serialise the reservations for one name (SQLite write transactions are serial already)."""
    if dialect == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"login:" + name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _reserve_check(bank: Bank, name: str, suspect: bool) -> int | None:
    """The id of a new "checking" row for `name`, or None when the name is locked for a suspect caller.
    Failures and checks under way both count (refusals while limited are not stored)."""
    now = utc_now()
    with write_session(bank) as session:
        _lock_name(session, bank.dialect, name)
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - FAILURE_RETENTION))
        counted = session.scalar(
            select(func.count()).where(LoginFailure.name == name, LoginFailure.at >= now - FAILURE_WINDOW)) or 0
        if suspect and counted >= MAX_FAILURES:
            return None
        row = LoginFailure(name=name, reason="checking", at=now)
        session.add(row)
        session.flush()
        return row.id


def _settle_check(bank: Bank, row_id: int, name: str, failure: str | None) -> None:
    """A good login drops its reservation; a failed one keeps it as a failure with the reason."""
    with write_session(bank) as session:
        if failure is None:
            session.execute(delete(LoginFailure).where(LoginFailure.id == row_id))
        else:
            session.execute(update(LoginFailure).where(LoginFailure.id == row_id).values(reason=failure))
    if failure is not None:
        log.warning("curator login refused for %r: %s", name, failure)


def verify_curator(bank: Bank, name: str, password: str, suspect: bool = True) -> bool:
    """True when `name` is an enabled curator whose password is `password` and who is not rate-limited.

    After MAX_FAILURES failures within FAILURE_WINDOW the name is refused to suspect callers, even with the
    right password, until the window has passed; `suspect=False` (a caller with no failure of its own) still
    gets its password checked.
    """
    name = (name or "")[:MAX_NAME_LENGTH]
    reserved = _reserve_check(bank, name, suspect)
    if reserved is None:
        log.warning("curator login refused for %r: rate-limited", name)
        return False
    with read_session(bank) as session:
        row = session.execute(select(Curator.password_hash, Curator.disabled).where(Curator.name == name)).first()
    matches = check_password(password or "", row.password_hash if row else _DUMMY_HASH)
    failure = ("unknown name" if row is None else "wrong password" if not matches
               else "disabled" if row.disabled else None)
    _settle_check(bank, reserved, name, failure)
    return failure is None


def revoke_session(bank: Bank, name: str, session_id: str) -> None:
    """End one curator session for good (logout): every replica refuses it from now on."""
    with write_session(bank) as session:
        session.add(AuditEntry(curator=name, action="curator:logout", target=f"session:{session_id}", before=None,
                               after={}))


def session_revoked(bank: Bank, session_id: str) -> bool:
    with read_session(bank) as session:
        found = session.scalar(select(AuditEntry.id).where(AuditEntry.target == f"session:{session_id}").limit(1))
    return found is not None


def curator_fingerprint(bank: Bank, name: str) -> str | None:
    """A short digest of an enabled curator's password hash (None when unknown or disabled).

    Login sessions carry it, so changing a password or disabling the account ends every open session.
    """
    with read_session(bank) as session:
        row = session.execute(select(Curator.password_hash, Curator.disabled).where(Curator.name == name)).first()
    if row is None or row.disabled:
        return None
    return hashlib.sha256(row.password_hash.encode()).hexdigest()[:16]
