"""Server secrets (the keys that sign curator sessions and visitor ids), shared by every replica.

A secret comes from its environment variable when set (give every replica the same value), else from a file in
the data directory, created on first start with owner-only permissions. The file outlives restarts, and replicas
that share a data directory share it too, so what one process signed the others accept.
"""
from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32


def load_secret(data_dir: Path, env_var: str, file_name: str, environ: Mapping[str, str] | None = None) -> bytes:
    """$`env_var` when set, else <data_dir>/`file_name` (created 0600 with a random value when missing)."""
    environ = os.environ if environ is None else environ
    if environ.get(env_var):
        secret = environ[env_var].encode()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"{env_var} must be at least {MIN_SECRET_LENGTH} characters")
        return secret
    path = Path(data_dir) / file_name
    if not path.exists():
        _create_secret_file(path)
    secret = path.read_text(encoding="ascii").strip().encode()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"{path} holds a secret shorter than {MIN_SECRET_LENGTH} characters; delete it to renew")
    return secret


def _create_secret_file(path: Path) -> None:
    """Write a fresh secret to a private temporary file, then link it into place: the link fails when another
    process got there first (and its secret wins), and no process ever reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        os.link(temporary, path)
        log.info("created the secret %s", path)
    except FileExistsError:
        pass  # another process created it meanwhile: use theirs
    finally:
        temporary.unlink()
