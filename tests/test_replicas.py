"""Two app replicas (`python -m app`, two ports, two data directories) on one PostgreSQL bank.

Visitors rate and submit through both replicas at once; every acknowledged write must be in the bank exactly
once, and the same write sent to both replicas at the same moment must land once. A puzzle published through
the curator API of one replica must show in the other's /browse, and /healthz must answer on both.

Session affinity: a rating refers to the visitor's last /solve, kept in that replica's Gradio session (and the
samples in its data directory), so each client stays on one replica, as a sticky load balancer would do.
Visitor ids are signed: the replicas share GELATO_VISITOR_SECRET (and GELATO_CURATOR_SECRET), so an id or a
curator session issued by one replica is good on the other. Visitor ids come from the replicas (a call
without one gets a fresh one back), as they do for a browser.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from sqlalchemy import select

from app.curate import auth
from puzzles.bank import accounts, connect, repository
from puzzles.bank.db import read_session
from puzzles.bank.models import PuzzleRow
from tests.apps import (
    START_TIMEOUT_S,
    analogy_files,
    rate,
    solve,
    start_app,
    stop_apps,
    submit,
    wait_until_healthy,
)

CURATOR, PASSWORD = "replica-curator", "a long enough password"
CLIENTS_PER_REPLICA = 2
RATINGS_PER_CLIENT = 4  # each by a fresh visitor: one new row each
SUBMITS_PER_CLIENT = 2  # each a different prompt: one new pending puzzle each


@pytest.fixture(scope="module")
def replicas(postgres_databases: Any, tiny_bundle_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two replicas on one fresh PostgreSQL database; yields {"a", "b", "bank", "health", "started_s"}."""
    database_url = postgres_databases.create()
    root = tmp_path_factory.mktemp("replicas")
    bank = connect(database_url)
    accounts.add_curator(bank, CURATOR, PASSWORD)
    began = time.monotonic()
    started = [start_app(name, root / name, tiny_bundle_dir, database_url) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        health = {replica.name: wait_until_healthy(replica, deadline) for replica in started}
        yield {"a": started[0], "b": started[1], "bank": bank, "health": health,
               "started_s": time.monotonic() - began}
    finally:
        stop_apps(started)
        bank.close()


# --- workloads -----------------------------------------------------------------------------------------------

@dataclass
class Acknowledged:
    ratings: dict[str, int]  # visitor -> rating id
    submissions: dict[str, str]  # puzzle id -> visitor


def client_workload(client: Client, index: int, folder: Path) -> Acknowledged:
    """Solve once, then ratings by fresh visitors and submissions of prompts no other client sends."""
    acknowledged = Acknowledged({}, {})
    prompt = analogy_files(0, folder / f"solve-{index}")
    solve(client, prompt)
    for number in range(RATINGS_PER_CLIENT):
        rating_id, visitor = rate(client, None, number % 2)
        acknowledged.ratings[visitor] = rating_id
    for number in range(SUBMITS_PER_CLIENT):
        seed = 100 + index * SUBMITS_PER_CLIENT + number
        puzzle_id, visitor = submit(client, None, analogy_files(seed, folder / f"submit-{index}"),
                                    f"Replica test {seed}")
        acknowledged.submissions[puzzle_id] = visitor
    return acknowledged


def at_once(*calls: Any) -> list[Any]:
    """Run the calls in threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - a refusal is a result to inspect here
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def submitted_by(bank: Any, visitors: list[str]) -> list[tuple[str, str]]:
    with read_session(bank) as session:
        rows = session.execute(select(PuzzleRow.id, PuzzleRow.submitted_by)
                               .where(PuzzleRow.submitted_by.in_(visitors))).all()
    return [(row.id, row.submitted_by) for row in rows]


# --- the tests ------------------------------------------------------------------------------------------------

def test_both_replicas_are_healthy_on_one_postgresql(replicas: dict[str, Any]) -> None:
    for name in ("a", "b"):
        body = replicas["health"][name]
        assert body["status"] == "ok" and body["database"]["ok"], body
        assert body["database"]["backend"] == "postgresql" and body["bundle"]["ok"], body
    assert replicas["a"].process.pid != replicas["b"].process.pid


def test_concurrent_writes_through_both_replicas_land_exactly_once(replicas: dict[str, Any], tmp_path: Path) -> None:
    bank = replicas["bank"]
    clients = [Client(replicas[name].url, verbose=False) for name in ("a", "b") for _ in range(CLIENTS_PER_REPLICA)]
    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(client_workload, clients, range(len(clients)), [tmp_path] * len(clients)))
    ratings = {visitor: rating for result in results for visitor, rating in result.ratings.items()}
    submissions = {puzzle: visitor for result in results for puzzle, visitor in result.submissions.items()}
    assert len(ratings) == len(clients) * RATINGS_PER_CLIENT
    assert len(submissions) == len(clients) * SUBMITS_PER_CLIENT
    for visitor, rating_id in ratings.items():
        rows = repository.list_ratings(bank, visitor=visitor)
        assert [row["id"] for row in rows] == [rating_id], f"visitor {visitor}: {rows}"
    assert len(set(ratings.values())) == len(ratings)
    stored = submitted_by(bank, list(submissions.values()))
    assert sorted(stored) == sorted(submissions.items())  # each acknowledged submission once, nothing else
    assert all(repository.get_puzzle(bank, puzzle_id).status == "pending" for puzzle_id in submissions)


def test_the_same_write_on_both_replicas_at_once_lands_once(replicas: dict[str, Any], tmp_path: Path) -> None:
    bank = replicas["bank"]
    on_a, on_b = Client(replicas["a"].url, verbose=False), Client(replicas["b"].url, verbose=False)
    prompt = analogy_files(0, tmp_path / "solve")
    assert solve(on_a, prompt) == solve(on_b, prompt)  # same seed and bundle: the very same samples
    first_id, visitor = rate(on_a, None, 1)  # an id issued by replica A, used on both
    outcomes = at_once(lambda: rate(on_a, visitor, 1), lambda: rate(on_b, visitor, 1))
    assert all(isinstance(outcome, tuple) for outcome in outcomes), outcomes
    rows = repository.list_ratings(bank, visitor=visitor)
    assert [row["id"] for row in rows] == [first_id]  # one row, updated by both later writes
    assert [rating_id for rating_id, _ in outcomes] == [first_id, first_id]

    _, submitter = submit(on_b, None, analogy_files(998, tmp_path / "first"), "First")
    panels = analogy_files(999, tmp_path / "race")
    outcomes = at_once(lambda: submit(on_a, submitter, panels, "Raced"),
                       lambda: submit(on_b, submitter, panels, "Raced"))
    accepted = [outcome[0] for outcome in outcomes if isinstance(outcome, tuple)]
    refused = [outcome for outcome in outcomes if not isinstance(outcome, tuple)]
    assert accepted and all("already in the bank" in str(error) for error in refused), outcomes
    assert (accepted[0], submitter) in submitted_by(bank, [submitter])
    assert len(submitted_by(bank, [submitter])) == 2  # the first submission and one of the raced pair


def test_a_puzzle_published_on_one_replica_shows_on_the_other(replicas: dict[str, Any], tmp_path: Path) -> None:
    tag = f"replica-{uuid.uuid4().hex[:8]}"
    puzzle_id, _ = submit(Client(replicas["b"].url, verbose=False), None, analogy_files(555, tmp_path), "Published")
    browse_b = Client(replicas["b"].url, verbose=False)

    def listed_on_b() -> list[str]:
        gallery, _note, _page = browse_b.predict("any", "any", tag, 1, 5, False, 1, api_name="/browse")
        return [item["caption"] for item in gallery or []]

    assert listed_on_b() == []  # pending: not in the bank yet
    with httpx.Client(base_url=replicas["a"].url) as browser:
        login = browser.post(auth.LOGIN_PATH, data={"name": CURATOR, "password": PASSWORD})
        assert login.status_code == 303, login.text
        cookie = login.cookies[auth.COOKIE]
    curator_a = Client(f"{replicas['a'].url}/curate/", headers={"Cookie": f"{auth.COOKIE}={cookie}"}, verbose=False)
    curator_a.predict(puzzle_id, "Published on A", tag, 2, "CC-BY-4.0", api_name="/edit")
    curator_a.predict(puzzle_id, api_name="/approve")
    captions = listed_on_b()
    assert len(captions) == 1 and "Published on A" in captions[0]  # the title replica A's curator gave it
    # the curator's session (signed with the shared secret) is good on the other replica too
    other = httpx.get(f"{replicas['b'].url}/curate/", cookies={auth.COOKIE: cookie}, follow_redirects=False)
    assert other.status_code == 200
