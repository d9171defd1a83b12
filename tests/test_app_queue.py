"""The queues of the playground: a person's answer never waits behind the model, and a visitor waiting for the
model is told their place in the queue. A stand-in bundle holds every place of the model's queues until released."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.utils import Status

from app import bank_views, model_picks, services, visitors
from app.kept import KeptImages
from app.pages import play
from tests.apps import analogy_files, slot_args

HOLD_LIMIT_S = 60  # a held solve gives up waiting after this (the test releases it long before)


class HeldBundle:
    """The real bundle, except that generation waits until `release` is set; `entered` counts the waiting solves."""

    def __init__(self, real: Any) -> None:
        self.real, self.release, self.entered = real, threading.Event(), threading.Semaphore(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.release()
        self.release.wait(HOLD_LIMIT_S)
        return self.real.complete(*args, **kwargs)


@pytest.fixture
def held(playground: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Every place of the solve queue and of the model's queue taken by work that waits on the stand-in bundle."""
    current = services.current()
    bundle = HeldBundle(current.bundle())
    monkeypatch.setattr(current, "_bundle", bundle)
    monkeypatch.setattr(model_picks, "_answers", KeptImages(8))  # the model's part is made again, on the held bundle
    client = Client(playground["url"], verbose=False)
    slots = slot_args(analogy_files(1, tmp_path))
    solve = ("analogy", "1", *slots, [], 1, 1.0, 0, 1.0, 3)
    jobs = [client.submit(*solve, api_name="/solve") for _ in range(play.SOLVE_CONCURRENCY_LIMIT)]
    jobs.append(client.submit(playground["puzzle_ids"][0], "", api_name="/attempt_model"))  # the model's queue
    try:
        for _ in jobs:
            assert bundle.entered.acquire(timeout=HOLD_LIMIT_S), "the held solves never reached the model"
        yield {"client": client, "jobs": jobs, "solve": solve, "bundle": bundle}
    finally:
        bundle.release.set()
        for job in jobs:
            job.result(timeout=HOLD_LIMIT_S)


def test_an_attempt_is_answered_while_the_model_queue_is_busy(held: dict[str, Any], playground: dict) -> None:
    puzzle_id = playground["puzzle_ids"][1]
    answer_index = bank_views.fetch_puzzle(playground["bank"], puzzle_id)["answer_index"]
    visitor = visitors.new_visitor_id()
    verdict, *_ = held["client"].predict(visitor, puzzle_id, f"#{answer_index + 1}", api_name="/attempt")
    assert "Right" in verdict and f"The answer is **#{answer_index + 1}**" in verdict
    assert not any(job.done() for job in held["jobs"]), "the model's work finished first: the test proves nothing"


def test_a_waiting_solve_is_told_its_place_in_the_queue(held: dict[str, Any]) -> None:
    waiting = held["client"].submit(*held["solve"], api_name="/solve")
    ranks = []
    while not waiting.done() and not ranks:
        update = waiting.status()
        if update.code == Status.IN_QUEUE and update.rank is not None:
            ranks.append((update.rank, update.queue_size))
        elif held["bundle"].entered.acquire(timeout=0.05):  # it reached the model: it was never queued
            break
    assert ranks and ranks[0][0] == 0 and ranks[0][1] >= 1, ranks
    held["bundle"].release.set()
    assert waiting.result(timeout=HOLD_LIMIT_S)[0]
