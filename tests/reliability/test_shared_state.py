"""State that replicas and restarts share: the signing secrets, the per-visitor rate limits, the starter pack.

Secrets come from the environment or from files in the data directory, so a visitor id issued before a
restart (or by another process on the same data dir) stays valid. Rate limits are counted in the bank, so two
connections to one database ("two replicas") enforce one limit. Two replicas seeding one bank at once both
succeed, and each starter puzzle is stored once.
"""
from __future__ import annotations

import logging
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app import bank_writes, keys, limits, visitors
from app.curate import auth
from app.server import seed_starter_pack
from puzzles.bank import Bank, repository
from puzzles.bank.models import Rating, utc_now
from puzzles.generators import generate
from puzzles.images import png_bytes
from puzzles.pack import write_pack

ROOT = Path(__file__).resolve().parents[2]

# Run as a fresh process: sign with the data dir's key, then issue an id or check one.
VISITOR_KEY_USER = """
import sys
from pathlib import Path
from app import visitors
visitors.install_visitor_key(Path(sys.argv[1]), environ={})
print(visitors.new_visitor_id() if sys.argv[2] == "issue" else visitors.is_visitor_id(sys.argv[2]))
"""


def _in_new_process(data_dir: Path, argument: str) -> str:
    answer = subprocess.run([sys.executable, "-c", VISITOR_KEY_USER, str(data_dir), argument], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    return answer.stdout.strip()


def at_once(call: Callable[[], Any], times: int) -> list[Any]:
    """`call` from `times` threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(times)

    def run(_: int) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - a failure is a result to inspect here
            return error

    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(run, range(times)))


# --- secrets ------------------------------------------------------------------------------------------------

def test_a_secret_comes_from_the_environment_first(tmp_path: Path) -> None:
    assert keys.load_secret(tmp_path, "SOME_SECRET", "some_secret", {"SOME_SECRET": "s" * 40}) == b"s" * 40
    assert not (tmp_path / "some_secret").exists()
    with pytest.raises(ValueError, match="SOME_SECRET must be at least 32 characters"):
        keys.load_secret(tmp_path, "SOME_SECRET", "some_secret", {"SOME_SECRET": "short"})


def test_a_secret_file_is_created_once_private_and_kept(tmp_path: Path) -> None:
    created = at_once(lambda: keys.load_secret(tmp_path / "data", "SOME_SECRET", "some_secret", {}), 6)
    assert len(set(created)) == 1 and isinstance(created[0], bytes), created  # every racer got the winner's
    path = tmp_path / "data" / "some_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["some_secret"]  # no temporary file left behind
    assert keys.load_secret(tmp_path / "data", "SOME_SECRET", "some_secret", {}) == created[0]
    path.write_text("too short")
    with pytest.raises(ValueError, match="shorter than 32 characters; delete it to renew"):
        keys.load_secret(tmp_path / "data", "SOME_SECRET", "some_secret", {})


def test_the_curator_and_visitor_secrets_are_separate_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(visitors, "_visitor_key", None)  # restored after the test: the playground keeps its key
    curator = auth.load_secret(tmp_path, environ={})
    visitors.install_visitor_key(tmp_path, environ={})
    files = {path.name: path.read_bytes().strip() for path in tmp_path.iterdir()}
    assert files == {auth.SECRET_FILE: curator, visitors.VISITOR_SECRET_FILE: visitors._current_visitor_key()}
    assert curator != visitors._current_visitor_key()
    visitors.install_visitor_key(tmp_path, environ={visitors.VISITOR_SECRET_ENV: "v" * 64})
    assert visitors._current_visitor_key() == b"v" * 64


def test_a_visitor_id_stays_valid_after_a_restart_and_on_another_process(tmp_path: Path) -> None:
    visitor = _in_new_process(tmp_path / "data", "issue")
    assert _in_new_process(tmp_path / "data", visitor) == "True"  # restarted, or a replica on this data dir
    assert _in_new_process(tmp_path / "elsewhere", visitor) == "False"  # another key: not an id we issued


# --- rate limits --------------------------------------------------------------------------------------------

@pytest.fixture
def two_replicas(make_bank: Callable[..., Bank], tmp_path: Path) -> tuple[Bank, Bank]:
    """Two connections (engines, pools) to one database, as two app replicas hold."""
    return make_bank(tmp_path), make_bank(tmp_path)


def _solved_run(tmp_path: Path) -> dict[str, Any]:
    """What /solve leaves in the page session: file paths of the prompt and of three samples, in the upload
    folder as the app writes them (images are read from nowhere else)."""
    from app.uploads import upload_folder

    puzzle = generate("analogy", 1, size=16)
    folder = upload_folder() / "runs" / tmp_path.name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(puzzle.panels[-3:]):
        paths.append(folder / f"{index}.png")
        paths[-1].write_bytes(png_bytes(image))
    return {"prompt": [str(p) for p in paths], "samples": [str(p) for p in paths], "settings": {},
            "bundle_id": "tiny@test", "puzzle_id": None}


def test_two_replicas_share_one_attempt_limit(two_replicas: tuple[Bank, Bank], make_bank: Callable[..., Bank],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = two_replicas
    monkeypatch.setattr(limits.attempts, "limit", 3)
    puzzle_id = repository.add_puzzle(one, generate("matrix", 0, size=32), status="published")
    visitor = visitors.new_visitor_id()
    for bank in (one, two, one):
        bank_writes.record_attempt(bank, visitor, puzzle_id, 0, 1.0)
    with pytest.raises(limits.RateLimited, match=r"too many attempts: at most 3 per 60 s .*try again in \d+ s"):
        bank_writes.record_attempt(two, visitor, puzzle_id, 0, 1.0)
    one.close()
    restarted = make_bank(tmp_path)  # a restart does not forget
    with pytest.raises(limits.RateLimited, match="try again in"):
        bank_writes.record_attempt(restarted, visitor, puzzle_id, 0, 1.0)
    bank_writes.record_attempt(restarted, visitors.new_visitor_id(), puzzle_id, 0, 1.0)  # others are not held back


def test_two_replicas_share_one_rating_limit(two_replicas: tuple[Bank, Bank], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = two_replicas
    monkeypatch.setattr(limits.ratings, "limit", 2)
    run, visitor = _solved_run(tmp_path), visitors.new_visitor_id()
    bank_writes.rate_sample(one, visitor, run, 0, "up", False)
    bank_writes.rate_sample(two, visitor, run, 1, "down", False)
    with pytest.raises(limits.RateLimited, match="too many ratings: at most 2 per 60 s for one visitor; try again"):
        bank_writes.rate_sample(one, visitor, run, 2, "up", False)
    assert len(repository.list_ratings(two, visitor=visitor)) == 2


@pytest.mark.parametrize("make_bank", ["sqlite"], indirect=True)
def test_a_rating_that_updates_an_earlier_one_counts_again(make_bank: Callable[..., Bank], tmp_path: Path) -> None:
    bank = make_bank(tmp_path)
    output = generate("analogy", 2, size=16).panels[0]
    repository.add_rating(bank, visitor="v1", output=output, score=1, prompt=[output])
    assert repository.recent_activity(bank, "v1", "ratings", 60).count == 1
    long_ago = utc_now() - timedelta(minutes=5)
    with bank.engine.begin() as connection:
        connection.execute(Rating.__table__.update().values(created_at=long_ago, updated_at=long_ago))
    assert repository.recent_activity(bank, "v1", "ratings", 60) == repository.Activity(0, None)
    repository.add_rating(bank, visitor="v1", output=output, score=-1, prompt=[output])  # the same row, updated
    activity = repository.recent_activity(bank, "v1", "ratings", 60)
    assert activity.count == 1 and activity.oldest is not None and activity.oldest > long_ago
    with pytest.raises(ValueError, match="unknown activity 'logins'"):
        repository.recent_activity(bank, "v1", "logins", 60)


# --- seeding ------------------------------------------------------------------------------------------------

def test_two_replicas_seeding_one_bank_at_once_both_succeed(two_replicas: tuple[Bank, Bank], tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    pack = write_pack([generate("matrix", seed, size=32) for seed in range(12)], tmp_path / "starter.zip")
    banks = iter(two_replicas)
    lock = threading.Lock()

    def seed() -> None:
        with lock:
            bank = next(banks)
        seed_starter_pack(bank, pack)

    with caplog.at_level(logging.INFO, logger="app.server"):
        outcomes = at_once(seed, 2)
    assert outcomes == [None, None]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text
    counts = repository.bank_stats(two_replicas[0])["puzzles"]
    assert counts["published"] == sum(counts.values()) == 12
