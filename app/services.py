"""What the pages talk to: the model bundle (loaded on first use) and the bank (opened at start).

One `Services` object per running app; handlers reach it through `app.services.current()`, so page
modules stay importable without a model or a database.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.settings import AppSettings

if TYPE_CHECKING:  # the runtime loads onnxruntime: imported on first use, typed here
    from engine.serving.decode import SamplingOptions
    from engine.serving.runtime import Bundle

log = logging.getLogger(__name__)

_current: Services | None = None


class Services:
    def __init__(self, settings: AppSettings, bank: Any, bundle: Bundle | None = None,
                 bundle_note: str | None = None) -> None:
        self.settings = settings
        self.bank = bank
        self.bundle_note = bundle_note  # why the bundle served is not the one asked for (None: it is)
        self._bundle = bundle
        self._bundle_error: str | None = None
        self._lock = threading.Lock()
        self._sampling: dict[str, Any] | None = None  # the manifest's "sampling", read on first use
        self.background_work: str | None = None  # what the server does after its start (seeding, ranking), if any

    @property
    def bundle_dir(self) -> Path:
        if self.settings.bundle is not None:
            return self.settings.bundle
        from engine.bundle import default_bundle_dir

        return default_bundle_dir()

    def sampling_defaults(self, family: str | None = None) -> SamplingOptions:
        """The bundle's sampling defaults with a puzzle family's guidance weight, read once from its manifest
        without loading the model (every Solve asks); plain sampling when the manifest cannot be read or holds bad
        settings (loading the model will then say why)."""
        from engine.serving.runtime import sampling_defaults

        if self._sampling is None:
            from engine.bundle import read_manifest

            try:
                manifest = read_manifest(self.bundle_dir)
                sampling_defaults(manifest)  # checked once (every family's weight): bad settings give plain sampling
                self._sampling = {"sampling": manifest.get("sampling") or {}}
            except (OSError, ValueError):
                self._sampling = {}
        return sampling_defaults(self._sampling, family)

    def bundle(self) -> Bundle:
        """The model bundle, loaded once on first use; a clear error when it cannot be loaded."""
        with self._lock:
            if self._bundle is None:
                from engine.serving.runtime import Bundle

                try:
                    # "nicer" model threads: on a busy CPU a person's answer, a page of the bank or a rating goes
                    # first (docs/benchmark.md); a browser on the same machine then slows a Solve, hence a setting
                    self._bundle = Bundle.load(self.bundle_dir, niceness=self.settings.model_niceness)
                    self._bundle.share_batches()  # concurrent visitors' solves run as one batch
                except (OSError, ValueError) as error:
                    raise RuntimeError(f"the model bundle could not be loaded: {error}") from error
            return self._bundle

    def loaded_bundle(self) -> Bundle | None:
        """The bundle when it is loaded already, else None (never loads: for handlers that must not wait)."""
        return self._bundle

    def close(self) -> None:
        if self.bank is not None:
            self.bank.close()


def install(services: Services) -> Services:
    global _current
    _current = services
    return services


def current() -> Services:
    if _current is None:
        raise RuntimeError("the app is not started: build it with app.server.create_app(settings)")
    return _current
