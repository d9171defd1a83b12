"""The model's part on a bank puzzle, made once per bundle: its pick and its generated answer.

The bank keeps each bundle's pick (a cache for the Bank page's "model gets it wrong" filter), so pages show the
model's part without running it again; `record_model_picks` ranks the whole bank once when the app starts. The
generated answer a page shows after a person's answer is one sample at a fixed seed, the same every time: it is
made on first demand and kept in memory (`model_answer`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from app.bank_views import fetch_puzzle
from app.bank_writes import BankWriteError, bank_write
from app.kept import KeptImages
from app.solving import ProgressFn, SampleSettings, bundle_id, rank, solve

if TYPE_CHECKING:  # the runtime loads onnxruntime: typed here, passed in by the callers
    from engine.serving.runtime import Bundle
    from puzzles.bank import Bank

log = logging.getLogger(__name__)

PICK_WORDS = "The model picked"
_answers = KeptImages(1024)  # generated answers (a 64 px answer is 12 KB)


def model_answer(bundle: Bundle, puzzle: Mapping[str, Any], settings: SampleSettings,
                 progress: ProgressFn | None = None) -> np.ndarray:
    """The model's first generated sample for a bank puzzle at these settings (a fixed seed: always the same
    image), made once per bundle and kept, so every person's answer after the first costs the model nothing."""
    return _answers.get((bundle_id(bundle), str(puzzle["id"]), settings),
                        lambda: solve(bundle, puzzle["panels"], settings, progress=progress,
                                      family=puzzle.get("family")).samples[0])


def model_pick(bank: Bank, bundle: Bundle, puzzle: Mapping[str, Any]) -> int | None:
    """The candidate the model ranks first (remembered in the bank for the "model gets it wrong" filter)."""
    from puzzles.bank import repository

    if not puzzle["candidates"]:
        return None
    scores = rank(bundle, puzzle["panels"], puzzle["candidates"], family=puzzle.get("family"))
    pick = int(np.argmax(scores))
    if puzzle.get("answer_index") is not None:
        try:
            with bank_write("the model's result"):
                repository.record_model_result(bank, puzzle["id"], bundle_id(bundle), pick)
        except BankWriteError as error:  # only a cache for the "model gets it wrong" filter: keep answering
            log.warning("%s", error)
    return pick


def pick_line(pick: int, answer_index: int | None) -> str:
    """The line that says which candidate the model picked, and whether it is the answer."""
    verdict = "" if answer_index is None else f" ({'right' if pick == answer_index else 'wrong'})"
    return f"{PICK_WORDS} **#{pick + 1}**{verdict}."


def known_model_pick(bank: Bank, bundle: Bundle | None, puzzle_id: str) -> int | None:
    """The candidate this bundle picked for the puzzle, as the bank remembers it (ranked once per bundle, see
    record_model_picks); None when the bundle is not loaded yet or has not ranked this puzzle."""
    from puzzles.bank import repository

    if bundle is None:
        return None
    tag = bundle_id(bundle)
    results = repository.puzzle_stats(bank, puzzle_id)["model_results"]
    return next((r["picked_index"] for r in results if r["bundle_id"] == tag and r["picked_index"] is not None), None)


def record_model_picks(bank: Bank, bundle: Bundle) -> int:
    """Rank every published puzzle that has candidates and an answer but no result from this bundle yet, so the
    "model gets it wrong" filter knows the whole bank from the start. Returns how many were ranked; a puzzle the
    model cannot take (a prompt longer than its context) is skipped."""
    from puzzles.bank import repository

    done, page, tag = 0, 0, bundle_id(bundle)
    while True:
        items, total = repository.list_puzzles(bank, page=page, per_page=200)
        for item in items:
            if not item.candidate_hashes or item.answer_index is None:
                continue
            results = repository.puzzle_stats(bank, item.id)["model_results"]
            if any(result["bundle_id"] == tag for result in results):
                continue
            try:
                model_pick(bank, bundle, fetch_puzzle(bank, item.id))
                done += 1
            except (RuntimeError, ValueError) as error:
                log.info("model pick skipped for %s: %s", item.id, error)
        page += 1
        if page * 200 >= total or not items:
            return done
