"""Start-up bundle check and the `/healthz` report (contract in docs/deploy.md).

`choose_bundle` verifies a bundle's files (engine.bundle.verify_bundle) without loading the model, so
the app can refuse to start naming the bad file, or fall back to the shipped default bundle and say so.
`health_report` tells a load balancer whether this replica can serve: bundle, inference provider, database.
"""
from __future__ import annotations

import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The app cannot start; the message names the file or setting at fault."""


def choose_bundle(configured: Path | None, default: Path | None = None) -> tuple[Path, str | None]:
    """The bundle directory to serve and a note when it is not the one asked for.

    A broken default bundle stops the start (StartupError naming the file). A broken non-default bundle
    falls back to the default one when that one is sound, with a note saying so. The default is the bundle
    that ships with the code (engine.bundle.SHIPPED_BUNDLE_DIR, whatever GELATO_BUNDLE says).
    """
    from engine.bundle import SHIPPED_BUNDLE_DIR, BundleError, verify_bundle

    default = (default or SHIPPED_BUNDLE_DIR).resolve()
    wanted = configured.resolve() if configured is not None else default
    try:
        verify_bundle(wanted)
        return wanted, None
    except BundleError as error:
        if wanted == default:
            raise StartupError(f"refusing to start: the model bundle is unusable: {error}") from error
        first_error = error
    try:
        verify_bundle(default)
    except BundleError as error:
        raise StartupError(f"refusing to start: the model bundle is unusable: {first_error}; "
                           f"the default bundle is unusable too: {error}") from error
    note = f"bundle {wanted} refused ({first_error}); serving the default bundle {default} instead"
    log.warning("%s", note)
    return default, note


@lru_cache(maxsize=1)
def expected_revision() -> str:
    """The newest migration in puzzles/bank/migrations (what the schema must be at)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from puzzles.bank.db import ALEMBIC_INI, PACKAGE_DIR

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    return str(ScriptDirectory.from_config(config).get_current_head())


def database_health(bank: Any) -> dict[str, Any]:
    from sqlalchemy import text

    report: dict[str, Any] = {"ok": False, "backend": getattr(bank, "dialect", "unknown"), "revision": None,
                              "latency_ms": None}
    try:
        start = time.perf_counter()
        with bank.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        report["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
        report["revision"] = revision
        wanted = expected_revision()
        report["ok"] = revision == wanted
        if not report["ok"]:
            report["error"] = f"schema at revision {revision!r}, expected {wanted!r}"
    except Exception as error:  # noqa: BLE001 - any failure is the answer here, reported not raised
        report["error"] = _one_line(error)
    return report


def bundle_and_provider_health(services: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    # no server path: anyone may ask (the start-up log names the bundle's directory)
    bundle_part: dict[str, Any] = {"ok": False, "name": None, "image_size": None}
    provider_part: dict[str, Any] = {"ok": False, "active": None, "available": []}
    try:
        import onnxruntime

        provider_part["available"] = list(onnxruntime.get_available_providers())
    except ImportError as error:
        provider_part["error"] = _one_line(error)
    try:
        bundle = services.bundle()  # loaded once, on the first use (this may be it); never run here
    except Exception as error:  # noqa: BLE001
        bundle_part["error"] = _one_line(error)
        provider_part.setdefault("error", "no bundle loaded")
        return bundle_part, provider_part
    manifest = getattr(bundle, "manifest", {}) or {}
    bundle_part.update(ok=True, name=manifest.get("name"), image_size=manifest.get("image_size"))
    if services.bundle_note:
        bundle_part["note"] = services.bundle_note
    active = getattr(bundle, "provider", None)
    provider_part["active"] = active
    provider_part["ok"] = bool(active)
    if not active:
        provider_part["error"] = "the bundle reports no active execution provider"
    return bundle_part, provider_part


def health_report(services: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 200 when bundle, provider and database are all ok, else 503 with the same body."""
    bundle_part, provider_part = bundle_and_provider_health(services)
    database_part = database_health(services.bank)
    ok = bundle_part["ok"] and provider_part["ok"] and database_part["ok"]
    body = {"status": "ok" if ok else "error", "bundle": bundle_part, "provider": provider_part,
            "database": database_part, "background_work": services.background_work}
    return (200 if ok else 503), body


def _one_line(error: BaseException) -> str:
    """An error as one short line; database URLs in it lose their password."""
    import re

    text = str(getattr(error, "orig", None) or error).splitlines()[0] if str(error) else type(error).__name__
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)[:300]
