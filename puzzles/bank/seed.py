"""Seed content: the starter pack shipped with the project, imported as published puzzles."""

from __future__ import annotations

import logging
from pathlib import Path

from puzzles.bank.db import Bank
from puzzles.bank.repository import ImportReport, import_pack

log = logging.getLogger(__name__)

DEFAULT_STARTER = Path(__file__).resolve().parent.parent / "starter_pack.zip"


def seed_bank(bank: Bank, pack_path: Path | str = DEFAULT_STARTER) -> ImportReport:
    """Import the starter pack as published. Idempotent: puzzles already in the bank are left alone."""
    pack_path = Path(pack_path)
    if not pack_path.exists():
        raise FileNotFoundError(f"starter pack not found at {pack_path}")
    report = import_pack(bank, pack_path, status="published")
    if report.invalid:
        raise ValueError(f"starter pack {pack_path} has invalid puzzles, nothing imported: {report.invalid[:5]}")
    log.info("seeded bank from %s: %d new, %d already there", pack_path, len(report.new), len(report.duplicate))
    return report
