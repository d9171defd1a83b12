"""Curator accounts: scrypt password hashes, disabling, and a login rate limit kept in the database.

The rate limit (MAX_FAILURES failed logins per name within FAILURE_WINDOW) lives in the login_failures
table, so it holds across processes and app replicas. Every refused login is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from puzzles.bank.db import Bank, read_session, write_session
from puzzles.bank.models import AuditEntry, Curator, LoginFailure, utc_now
from puzzles.bank.repository import NotFoundError

log = logging.getLogger(__name__)

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=5)
FAILURE_RETENTION = timedelta(days=30)  # older failure rows are pruned
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


def _recent_failures(bank: Bank, name: str) -> int:
    with read_session(bank) as session:
        since = utc_now() - FAILURE_WINDOW
        # Refusals while rate-limited are logged but not counted, so the lock ends FAILURE_WINDOW after
        # the last real failure.
        return (
            session.scalar(
                select(func.count()).where(
                    LoginFailure.name == name, LoginFailure.at >= since, LoginFailure.reason != "rate-limited"
                )
            )
            or 0
        )


def _record_failure(bank: Bank, name: str, reason: str) -> None:
    log.warning("curator login refused for %r: %s", name[:MAX_NAME_LENGTH], reason)
    with write_session(bank) as session:
        session.add(LoginFailure(name=name[:MAX_NAME_LENGTH], reason=reason))
        session.execute(delete(LoginFailure).where(LoginFailure.at < utc_now() - FAILURE_RETENTION))


def verify_curator(bank: Bank, name: str, password: str) -> bool:
    """True when `name` is an enabled curator whose password is `password` and who is not rate-limited.

    After MAX_FAILURES failures within FAILURE_WINDOW the name is refused, even with the right password,
    until the window has passed. A successful login clears the name's failures.
    """
    name = (name or "")[:MAX_NAME_LENGTH]
    if _recent_failures(bank, name) >= MAX_FAILURES:
        _record_failure(bank, name, "rate-limited")
        return False
    with read_session(bank) as session:
        row = session.execute(select(Curator.password_hash, Curator.disabled).where(Curator.name == name)).first()
    matches = check_password(password or "", row.password_hash if row else _DUMMY_HASH)
    if row is None or not matches or row.disabled:
        _record_failure(bank, name, "unknown name" if row is None else "wrong password" if not matches else "disabled")
        return False
    with write_session(bank) as session:
        session.execute(delete(LoginFailure).where(LoginFailure.name == name))
    return True
