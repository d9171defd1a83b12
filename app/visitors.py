"""Visitor ids: issued by the server and signed, so a caller cannot pick one.

A made-up id could write as someone else or dodge the per-visitor rate limits. The key is
$GELATO_VISITOR_SECRET or the file `visitor_secret` in the data dir (app.keys), so ids stay valid across
restarts and on every replica.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app import keys

VISITOR_SECRET_ENV = "GELATO_VISITOR_SECRET"
VISITOR_SECRET_FILE = "visitor_secret"
_VISITOR_RANDOM_HEX = 32
_VISITOR_SIGNATURE_HEX = 16
_visitor_key: bytes | None = None


def install_visitor_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> None:
    """Sign visitor ids with $GELATO_VISITOR_SECRET, else <data_dir>/visitor_secret (created when missing)."""
    global _visitor_key
    _visitor_key = keys.load_secret(data_dir, VISITOR_SECRET_ENV, VISITOR_SECRET_FILE, environ)


def _current_visitor_key() -> bytes:
    global _visitor_key
    if _visitor_key is None:  # no server installed one (a script, a test): the environment, else this process's own
        _visitor_key = os.environ.get(VISITOR_SECRET_ENV, "").encode() or secrets.token_bytes(32)
    return _visitor_key


def _visitor_signature(random_part: str) -> str:
    digest = hmac.new(_current_visitor_key(), random_part.encode(), hashlib.sha256).hexdigest()
    return digest[:_VISITOR_SIGNATURE_HEX]


def new_visitor_id() -> str:
    random_part = uuid.uuid4().hex
    return random_part + _visitor_signature(random_part)


def is_visitor_id(value: Any) -> bool:
    """Whether `value` is an id this server issued (right length, hex, valid signature)."""
    if not isinstance(value, str) or len(value) != _VISITOR_RANDOM_HEX + _VISITOR_SIGNATURE_HEX:
        return False
    if any(ch not in "0123456789abcdef" for ch in value):
        return False
    random_part, signature = value[:_VISITOR_RANDOM_HEX], value[_VISITOR_RANDOM_HEX:]
    return hmac.compare_digest(signature, _visitor_signature(random_part))


def ensure_visitor_id(value: Any) -> str:
    """The visitor id kept in the browser, or a fresh one when it is missing, malformed or not ours."""
    return value if is_visitor_id(value) else new_visitor_id()
