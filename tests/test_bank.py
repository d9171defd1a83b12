"""The puzzle bank against real databases (a SQLite file and a PostgreSQL server, through the parametrised
`make_bank` fixture): schema, repository, curator accounts, packs, backups, CLI, several processes at once."""

from __future__ import annotations

import io
import json
import multiprocessing
import re
import sqlite3
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from puzzles.bank import accounts, backup, cli
from puzzles.bank import repository as repo
from puzzles.bank.backup import row_counts
from puzzles.bank.db import PACKAGE_DIR, POOL_SIZE, connect, downgrade, migrate, normalise_url
from puzzles.bank.models import Base, Image, LoginFailure, Rating, utc_now
from puzzles.pack import read_pack, validate_pack, write_pack
from puzzles.puzzle import Puzzle

CURATOR, PASSWORD = "ada", "correct horse"


def random_image(rng: np.random.Generator, size: int = 8) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_puzzle(seed: int, family: str = "matrix", **fields) -> Puzzle:
    rng = np.random.default_rng(seed)
    candidates = [random_image(rng) for _ in range(4)]
    values = dict(
        panels=[random_image(rng) for _ in range(3)],
        answer=candidates[1],
        candidates=candidates,
        answer_index=1,
        title=f"puzzle {seed}",
        tags=["test", f"seed{seed % 2}"],
        difficulty=1 + seed % 5,
        layout={"kind": "row"},
        source={"generator": "test", "seed": seed},
        meta={"rule": "noise"},
    )
    values.update(fields)
    return Puzzle(family=family, **values)


def assert_same_puzzle(actual: Puzzle, expected: Puzzle) -> None:
    for name in ("id", "family", "title", "tags", "difficulty", "layout", "meta", "source", "license", "answer_index"):
        assert getattr(actual, name) == getattr(expected, name), name
    assert len(actual.panels) == len(expected.panels) and len(actual.candidates) == len(expected.candidates)
    for got, want in zip([*actual.panels, *actual.candidates], [*expected.panels, *expected.candidates], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(actual.answer, expected.answer)


def count(bank, model) -> int:
    with bank.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


@pytest.fixture
def bank(make_bank, tmp_path):
    return make_bank(tmp_path)


@pytest.fixture
def curated(bank):
    accounts.add_curator(bank, CURATOR, PASSWORD)
    return bank


# ---------------------------------------------------------------- schema


def test_migrates_an_empty_database_to_head(make_bank, tmp_path):
    bank = make_bank(tmp_path)
    if bank.dialect == "sqlite":
        assert (tmp_path / "data" / "gelato.db").is_file()
    downgrade(bank.engine, "base")  # down to nothing and back up: both directions run on this back end
    assert set(inspect(bank.engine).get_table_names()) <= {"alembic_version"}
    migrate(bank.engine)
    tables = set(inspect(bank.engine).get_table_names())
    assert {
        "images",
        "puzzles",
        "puzzle_panels",
        "puzzle_candidates",
        "ratings",
        "attempts",
        "curators",
        "audit_log",
        "model_results",
        "login_failures",
        "alembic_version",
    } <= tables
    head = ScriptDirectory(str(PACKAGE_DIR / "migrations")).get_current_head()
    with bank.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
        # The migrations build exactly the tables the models describe.
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


@pytest.mark.parametrize("make_bank", ["sqlite"], indirect=True)
def test_sqlite_connections_use_wal_and_foreign_keys(bank):
    with bank.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


@pytest.mark.parametrize("make_bank", ["postgresql"], indirect=True)
def test_postgresql_connections_are_named_and_pooled(bank):
    with bank.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW application_name").scalar() == "gelato"
        assert connection.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
    assert bank.engine.pool.size() == POOL_SIZE


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/gelato", "postgresql+psycopg://u:p@db:5432/gelato"),
        ("postgresql://u@db/gelato", "postgresql+psycopg://u@db/gelato"),
        ("postgresql+psycopg://u@db/gelato", "postgresql+psycopg://u@db/gelato"),
        ("sqlite:///data/gelato.db", "sqlite:///data/gelato.db"),
    ],
)
def test_database_urls_from_hosting_providers_use_psycopg(given, expected):
    assert normalise_url(given) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@db/gelato", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u@db/gelato", "psycopg 3 driver"),
        ("sqlite://", "in-memory SQLite bank is not supported"),
        ("not a url", "invalid database URL"),
    ],
)
def test_unsupported_database_urls_are_refused_clearly(url, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        connect(url)


def test_reopening_a_migrated_bank_keeps_its_data(make_bank, tmp_path):
    first = make_bank(tmp_path)
    repo.add_puzzle(first, make_puzzle(1), "published")
    first.close()
    assert repo.list_puzzles(make_bank(tmp_path))[1] == 1


# ---------------------------------------------------------------- puzzles and images


def test_puzzle_round_trip_and_images_stored_once(bank):
    puzzle = make_puzzle(1)
    repo.add_puzzle(bank, puzzle, "published")
    stored = repo.get_puzzle(bank, puzzle.id)
    assert stored.status == "published"
    assert_same_puzzle(stored.puzzle, puzzle)
    assert count(bank, Image) == 3 + 4  # the answer is one of the candidates: stored once
    twin = make_puzzle(2, panels=puzzle.panels)  # shares every panel with the first puzzle
    repo.add_puzzle(bank, twin, "draft")
    assert count(bank, Image) == 7 + 4
    with pytest.raises(repo.PuzzleExistsError):
        repo.add_puzzle(bank, puzzle, "draft")
    png = repo.get_image(bank, repo.list_puzzles(bank)[0][0].panel_hashes[0])
    assert png.startswith(b"\x89PNG")
    with pytest.raises(repo.NotFoundError, match="no image"):
        repo.get_image(bank, "0" * 64)


def test_invalid_puzzles_are_refused_with_the_reason(bank):
    with pytest.raises(ValueError, match="answer_index 7 outside"):
        repo.add_puzzle(bank, make_puzzle(1, answer_index=7))
    with pytest.raises(ValueError, match="difficulty"):
        repo.add_puzzle(bank, make_puzzle(1, difficulty=9))
    many = make_puzzle(2).candidates * 5  # 20: more than a ranking takes
    with pytest.raises(ValueError, match="20 candidates; a puzzle has at most 16"):
        repo.add_puzzle(bank, make_puzzle(1, candidates=many))
    with pytest.raises(ValueError, match="unknown status"):
        repo.add_puzzle(bank, make_puzzle(1), status="live")
    assert repo.bank_stats(bank)["images"] == 0


def test_listing_filters_and_pages(bank):
    for seed in range(6):
        repo.add_puzzle(bank, make_puzzle(seed, family="matrix" if seed < 4 else "analogy"), "published")
    repo.add_puzzle(bank, make_puzzle(10, layout={"kind": "pairs"}), "draft")
    assert repo.list_puzzles(bank)[1] == 6
    assert repo.list_puzzles(bank, family="analogy")[1] == 2
    assert repo.list_puzzles(bank, tag="seed1")[1] == 3
    assert repo.list_puzzles(bank, difficulty=(1, 2))[1] == 3
    assert repo.list_puzzles(bank, layout="pairs", status="draft")[1] == 1
    assert repo.list_puzzles(bank, status=None)[1] == 7
    pages = [repo.list_puzzles(bank, page=page, per_page=4) for page in range(2)]
    ids = [item.id for items, _ in pages for item in items]
    assert len(ids) == len(set(ids)) == 6 and pages[0][1] == 6
    assert repo.random_puzzle(bank, family="analogy").puzzle.family == "analogy"
    assert repo.random_puzzle(bank, family="grid") is None
    with pytest.raises(ValueError, match="unknown family"):
        repo.list_puzzles(bank, family="riddle")


def test_one_filter_type_for_listings_and_exports(bank, tmp_path):
    for seed in range(3):
        repo.add_puzzle(bank, make_puzzle(seed, family="matrix" if seed else "analogy"), "published")
    matrices = repo.PuzzleFilter(family="matrix")
    assert repo.list_puzzles(bank, matrices) == repo.list_puzzles(bank, family="matrix")
    assert repo.list_puzzles(bank, matrices)[1] == 2
    assert repo.export_pack(bank, tmp_path / "m.zip", matrices) == 2
    with pytest.raises(ValueError, match="not both"):
        repo.list_puzzles(bank, matrices, family="analogy")
    with pytest.raises(ValueError, match="unknown puzzle filter.*colour"):
        repo.export_pack(bank, tmp_path / "x.zip", colour="red")


def test_model_wrong_filter(bank):
    right, wrong, unseen = make_puzzle(1), make_puzzle(2), make_puzzle(3)
    for puzzle in (right, wrong, unseen):
        repo.add_puzzle(bank, puzzle, "published")
    assert repo.record_model_result(bank, right.id, "tiny-v1", picked_index=1) is True
    assert repo.record_model_result(bank, wrong.id, "tiny-v1", picked_index=3) is False
    assert [p.id for p in repo.list_puzzles(bank, model_wrong=True)[0]] == [wrong.id]
    assert [p.id for p in repo.list_puzzles(bank, model_wrong=False)[0]] == [right.id]
    repo.record_model_result(bank, wrong.id, "tiny-v1", picked_index=1)  # the newer result replaces the old
    assert repo.list_puzzles(bank, model_wrong=True)[1] == 0


# ---------------------------------------------------------------- curator actions


def test_status_transitions_write_audit_rows(curated):
    bank, puzzle = curated, make_puzzle(1)
    repo.submit_puzzle(bank, puzzle, visitor="visitor-7")
    stored = repo.get_puzzle(bank, puzzle.id)
    assert (stored.status, stored.submitted_by) == ("pending", "visitor-7")
    assert repo.list_puzzles(bank)[1] == 0  # pending puzzles are not listed as published
    repo.approve(bank, puzzle.id, CURATOR)
    with pytest.raises(repo.StatusError, match="is published; it cannot become published"):
        repo.approve(bank, puzzle.id, CURATOR)
    with pytest.raises(ValueError, match="reason"):
        repo.reject(bank, puzzle.id, CURATOR, " ")
    repo.reject(bank, puzzle.id, CURATOR, "answer is ambiguous")
    assert repo.get_puzzle(bank, puzzle.id).reject_reason == "answer is ambiguous"
    repo.approve(bank, puzzle.id, CURATOR)
    repo.unpublish(bank, puzzle.id, CURATOR)
    log = repo.list_audit(bank, target=puzzle.id)
    assert [entry["action"] for entry in log] == [
        "status:draft",
        "status:published",
        "status:rejected",
        "status:published",
    ]
    assert (log[2]["before"]["status"], log[2]["after"]["status"]) == ("published", "rejected")
    assert log[2]["after"]["reject_reason"] == "answer is ambiguous" and log[2]["curator"] == CURATOR


def test_edit_is_validated_and_audited(curated):
    bank, puzzle = curated, make_puzzle(1)
    repo.add_puzzle(bank, puzzle, "published")
    repo.edit(bank, puzzle.id, CURATOR, title="Noise", tags=["fresh"], difficulty=5)
    assert repo.list_puzzles(bank, tag="fresh")[1] == 1 and repo.list_puzzles(bank, tag="test")[1] == 0
    entry = repo.list_audit(bank, target=puzzle.id)[0]
    assert (entry["before"]["title"], entry["after"]["title"]) == ("puzzle 1", "Noise")
    with pytest.raises(ValueError, match="difficulty"):
        repo.edit(bank, puzzle.id, CURATOR, difficulty=0)
    with pytest.raises(ValueError, match="cannot edit family"):
        repo.edit(bank, puzzle.id, CURATOR, family="grid")
    assert repo.get_puzzle(bank, puzzle.id).puzzle.difficulty == 5


def test_curator_actions_need_an_enabled_curator(curated):
    bank, puzzle = curated, make_puzzle(1)
    repo.add_puzzle(bank, puzzle, "pending")
    with pytest.raises(repo.NotFoundError, match="no curator"):
        repo.approve(bank, puzzle.id, "mallory")
    accounts.disable_curator(bank, CURATOR)
    with pytest.raises(PermissionError, match="disabled"):
        repo.approve(bank, puzzle.id, CURATOR)
    assert repo.get_puzzle(bank, puzzle.id).status == "pending"
    assert repo.list_audit(bank, target=puzzle.id) == []


def test_merge_duplicates_moves_history(curated):
    bank = curated
    keep = make_puzzle(1)
    copy = make_puzzle(1, id="imported-copy")  # same content, another id
    repo.add_puzzle(bank, keep, "published")
    repo.add_puzzle(bank, copy, "published")
    assert repo.find_duplicates(bank) == [[keep.id, copy.id]]
    output = keep.candidates[0]
    repo.add_rating(bank, visitor="v1", output=output, score=1, puzzle_id=keep.id)
    repo.add_rating(bank, visitor="v1", output=output, score=-1, puzzle_id=copy.id)  # clashes: keeper's wins
    repo.add_rating(bank, visitor="v2", output=output, score=-1, puzzle_id=copy.id)
    repo.add_attempt(bank, copy.id, "v3", 1, 4.0)
    moved = repo.merge_duplicates(bank, keep.id, [copy.id], CURATOR)
    assert moved == {"attempts": 1, "ratings": 1, "model_results": 0, "removed": 1}
    stats = repo.puzzle_stats(bank, keep.id)
    assert stats["attempts"] == 1 and stats["ratings"] == {"up": 1, "down": 1, "neutral": 0, "total": 2}
    with pytest.raises(repo.NotFoundError):
        repo.get_puzzle(bank, copy.id)
    assert repo.list_audit(bank, target=copy.id)[0]["after"] == {"merged_into": keep.id}


# ---------------------------------------------------------------- ratings, attempts, foreign keys


def test_rating_twice_updates_the_one_row(bank):
    puzzle = make_puzzle(1)
    repo.add_puzzle(bank, puzzle, "published")
    output = random_image(np.random.default_rng(9))
    first = repo.add_rating(
        bank,
        visitor="v1",
        output=output,
        score=1,
        puzzle_id=puzzle.id,
        bundle_id="b",
        settings={"temperature": 1.0},
        sample_index=2,
    )
    second = repo.add_rating(
        bank,
        visitor="v1",
        output=output,
        score=-1,
        puzzle_id=puzzle.id,
        bundle_id="b",
        settings={"temperature": 0.5},
        sample_index=2,
        is_correct=False,
    )
    assert first == second
    rows = repo.list_ratings(bank, puzzle_id=puzzle.id)
    assert len(rows) == 1 and rows[0]["score"] == -1 and rows[0]["settings"] == {"temperature": 0.5}
    prompt = [random_image(np.random.default_rng(s)) for s in (1, 2)]
    free = repo.add_rating(bank, visitor="v1", output=output, score=1, prompt=prompt)
    assert free != first and repo.add_rating(bank, visitor="v1", output=output, score=0, prompt=prompt) == free
    assert count(bank, Rating) == 2
    with pytest.raises(ValueError, match="exactly one of puzzle_id or prompt"):
        repo.add_rating(bank, visitor="v1", output=output, score=1)
    with pytest.raises(ValueError, match="score"):
        repo.add_rating(bank, visitor="v1", output=output, score=5, puzzle_id=puzzle.id)


def test_concurrent_ratings_from_threads_keep_exact_counts(bank):
    puzzle = make_puzzle(1)
    repo.add_puzzle(bank, puzzle, "published")
    outputs = [random_image(np.random.default_rng(100 + i)) for i in range(3)]
    errors: list[BaseException] = []

    def rate(visitor: str) -> None:
        try:
            for round_ in range(3):  # every visitor rates every output three times: upserts race
                for output in outputs:
                    repo.add_rating(
                        bank, visitor=visitor, output=output, score=1 if round_ < 2 else -1, puzzle_id=puzzle.id
                    )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=rate, args=(f"v{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(bank, Rating) == 4 * 3
    assert repo.puzzle_stats(bank, puzzle.id)["ratings"] == {"up": 0, "down": 12, "neutral": 0, "total": 12}


def test_foreign_keys_refuse_orphans(bank):
    output = random_image(np.random.default_rng(1))
    with pytest.raises(repo.NotFoundError, match="not in the bank"):
        repo.add_rating(bank, visitor="v", output=output, score=1, puzzle_id="no-such-puzzle")
    with pytest.raises(repo.NotFoundError):
        repo.add_attempt(bank, "no-such-puzzle", "v", 0)
    assert count(bank, Rating) == 0
    with bank.engine.begin() as connection, pytest.raises(IntegrityError, match="(?i)FOREIGN KEY"):
        connection.execute(
            text(
                "INSERT INTO attempts (puzzle_id, visitor_id, choice, correct, created_at) "
                "VALUES ('ghost', 'v', 1, true, '2026-01-01')"
            )
        )
    with bank.engine.begin() as connection, pytest.raises(IntegrityError, match="(?i)FOREIGN KEY"):
        connection.execute(
            text(
                "INSERT INTO ratings (prompt_hashes, target, bundle_id, settings, output_sha256, sample_index, score, "
                "visitor_id, created_at, updated_at) VALUES ('[\"x\"]', 'prompt:x', '', '{}', 'nohash', 0, 1, 'v', "
                "'2026-01-01', '2026-01-01')"
            )
        )


def test_attempts_and_stats(bank):
    puzzle = make_puzzle(1)
    repo.add_puzzle(bank, puzzle, "published")
    assert repo.add_attempt(bank, puzzle.id, "a", 1, 3.0) is True
    assert repo.add_attempt(bank, puzzle.id, "b", 0, 5.0) is False
    assert repo.add_attempt(bank, puzzle.id, "c", None) is False
    with pytest.raises(ValueError, match="outside the 4 candidates"):
        repo.add_attempt(bank, puzzle.id, "d", 4)
    stats = repo.puzzle_stats(bank, puzzle.id)
    assert (stats["attempts"], stats["solved"], stats["gave_up"], stats["mean_seconds"]) == (3, 1, 1, 4.0)
    assert stats["success_rate"] == pytest.approx(1 / 3)
    totals = repo.bank_stats(bank)
    assert totals["puzzles"]["published"] == 1 and totals["attempts"] == 3
    assert totals["published_by_family"]["matrix"] == 1


# ---------------------------------------------------------------- packs and seeding


def write_test_pack(path: Path, seeds: range) -> list[Puzzle]:
    puzzles = [make_puzzle(seed) for seed in seeds]
    write_pack(puzzles, path)
    return puzzles


def break_one_puzzle(pack: Path, how: str) -> str:
    """Rewrite pack.json so its last puzzle is invalid; returns that puzzle's id."""
    with zipfile.ZipFile(pack) as source:
        members = {name: source.read(name) for name in source.namelist()}
    document = json.loads(members["pack.json"])
    broken = document["puzzles"][-1]
    if how == "index out of range":  # caught by the pack reader
        broken["answer_index"] = 99
    else:  # a well-formed pack whose answer is not the marked candidate: caught by the bank
        broken["answer"] = broken["panels"][0]
    members["pack.json"] = json.dumps(document).encode()
    with zipfile.ZipFile(pack, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)
    return broken["id"]


@pytest.mark.parametrize("how", ["index out of range", "answer is not the marked candidate"])
def test_import_is_all_or_nothing(bank, tmp_path, how):
    pack = tmp_path / "broken.zip"
    write_test_pack(pack, range(3))
    broken_id = break_one_puzzle(pack, how)
    report = repo.import_pack(bank, pack)
    assert [puzzle_id for puzzle_id, _ in report.invalid] == [broken_id] and not report.imported
    assert repo.bank_stats(bank)["puzzles"]["published"] == 0 and count(bank, Image) == 0


def test_dry_run_writes_nothing(bank, tmp_path):
    pack = tmp_path / "pack.zip"
    puzzles = write_test_pack(pack, range(3))
    report = repo.import_pack(bank, pack, dry_run=True)
    assert sorted(report.new) == sorted(p.id for p in puzzles) and report.duplicate == [] and report.invalid == []
    assert not report.imported and count(bank, Image) == 0


def test_export_then_import_round_trip(make_bank, tmp_path):
    source = make_bank(tmp_path, name="source")
    originals = [make_puzzle(seed, family=family) for seed, family in enumerate(["matrix", "analogy", "grid"])]
    for puzzle in originals:
        repo.add_puzzle(source, puzzle, "published")
    repo.add_puzzle(source, make_puzzle(9), "draft")  # not exported: the default filter is published
    assert repo.export_pack(source, tmp_path / "out.zip") == 3
    target = make_bank(tmp_path, name="target")
    report = repo.import_pack(target, tmp_path / "out.zip")
    assert sorted(report.new) == sorted(p.id for p in originals) and report.imported
    for puzzle in originals:
        assert_same_puzzle(repo.get_puzzle(target, puzzle.id).puzzle, puzzle)
    again = repo.import_pack(target, tmp_path / "out.zip")
    assert again.new == [] and sorted(again.duplicate) == sorted(p.id for p in originals)


def test_seed_is_idempotent(bank, tmp_path):
    pack = tmp_path / "starter.zip"
    write_test_pack(pack, range(4))
    assert len(repo.seed_bank(bank, pack).new) == 4
    second = repo.seed_bank(bank, pack)
    assert second.new == [] and len(second.duplicate) == 4
    assert repo.bank_stats(bank)["puzzles"]["published"] == 4
    with pytest.raises(FileNotFoundError, match="starter pack not found"):
        repo.seed_bank(bank, tmp_path / "missing.zip")


# ---------------------------------------------------------------- curator accounts


def test_passwords_are_salted_scrypt_hashes(curated):
    with curated.engine.connect() as connection:
        stored = connection.scalar(text("SELECT password_hash FROM curators WHERE name = :n"), {"n": CURATOR})
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert accounts.hash_password(PASSWORD) != accounts.hash_password(PASSWORD)  # fresh salt each time
    assert accounts.verify_curator(curated, CURATOR, PASSWORD)
    assert not accounts.verify_curator(curated, CURATOR, "wrong password")
    assert not accounts.verify_curator(curated, "nobody", PASSWORD)
    with pytest.raises(ValueError, match="already exists"):
        accounts.add_curator(curated, CURATOR, "another password")
    with pytest.raises(ValueError, match="at least 8"):
        accounts.add_curator(curated, "bob", "short")


def test_disable_and_new_password(curated):
    accounts.set_password(curated, CURATOR, "a new password")
    assert not accounts.verify_curator(curated, CURATOR, PASSWORD)
    assert accounts.verify_curator(curated, CURATOR, "a new password")
    accounts.disable_curator(curated, CURATOR)
    assert not accounts.verify_curator(curated, CURATOR, "a new password")
    assert [c.disabled for c in accounts.list_curators(curated)] == [True]
    accounts.enable_curator(curated, CURATOR)
    assert accounts.verify_curator(curated, CURATOR, "a new password")


def test_failed_logins_are_rate_limited(curated, caplog):
    for _ in range(accounts.MAX_FAILURES):
        assert not accounts.verify_curator(curated, CURATOR, "guess")
    assert not accounts.verify_curator(curated, CURATOR, PASSWORD)  # locked, even with the right password
    assert "rate-limited" in caplog.text and "wrong password" in caplog.text
    # Once the window has passed the curator can log in again.
    with curated.engine.begin() as connection:
        connection.execute(update(LoginFailure).values(at=utc_now() - accounts.FAILURE_WINDOW * 2))
    assert accounts.verify_curator(curated, CURATOR, PASSWORD)


# ---------------------------------------------------------------- command line


def run_cli(monkeypatch, capsys, bank_url: str, *argv: str, stdin: str = "") -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    status = cli.main([argv[0], "--database-url", bank_url, *argv[1:]])
    return status, capsys.readouterr().out


def test_cli_import_curators_backup_restore(tmp_path, monkeypatch, capsys, make_bank):
    bank = make_bank(tmp_path)
    url = bank.url
    pack = tmp_path / "pack.zip"
    puzzles = write_test_pack(pack, range(2))
    status, out = run_cli(monkeypatch, capsys, url, "import", str(pack), "--dry-run")
    assert status == 0 and json.loads(out)["dry_run"] is True
    assert run_cli(monkeypatch, capsys, url, "import", str(pack))[0] == 0
    assert run_cli(monkeypatch, capsys, url, "curators", "add", "grace", stdin="long enough pw\n")[0] == 0
    assert "grace\tenabled" in run_cli(monkeypatch, capsys, url, "curators", "list")[1]
    backup_file = tmp_path / ("backup.db" if bank.dialect == "sqlite" else "backup.zip")
    status, out = run_cli(monkeypatch, capsys, url, "backup", str(backup_file))
    assert status == 0 and "2 puzzles" in out and "1 curators" in out
    assert run_cli(monkeypatch, capsys, url, "curators", "disable", "grace")[0] == 0
    assert run_cli(monkeypatch, capsys, url, "restore", str(backup_file))[0] == 0
    assert accounts.verify_curator(bank, "grace", "long enough pw")  # the backup predates the disable
    assert sorted(p.id for p in repo.list_puzzles(bank)[0]) == sorted(p.id for p in puzzles)
    assert run_cli(monkeypatch, capsys, url, "export", str(tmp_path / "out.zip"), "--family", "matrix")[0] == 0
    not_a_bank = tmp_path / "junk.db"
    sqlite3.connect(not_a_bank).close()
    assert run_cli(monkeypatch, capsys, url, "restore", str(not_a_bank))[0] == 1
    assert run_cli(monkeypatch, capsys, url, "backup", str(backup_file))[0] == 1  # never overwrites a backup


# ---------------------------------------------------------------- backups across back ends


def fill_bank(bank) -> dict[str, str]:
    """A bank with something in every table: puzzles of each status, ratings, attempts, curators, audit."""
    accounts.add_curator(bank, CURATOR, PASSWORD)
    published, pending, rejected = make_puzzle(1), make_puzzle(2, family="analogy"), make_puzzle(3)
    repo.add_puzzle(bank, published, "published")
    repo.submit_puzzle(bank, pending, visitor="visitor-1")
    repo.add_puzzle(bank, rejected, "pending")
    repo.reject(bank, rejected.id, CURATOR, "too easy")
    output = random_image(np.random.default_rng(50))
    repo.add_rating(bank, visitor="v1", output=output, score=1, puzzle_id=published.id, settings={"top_k": 5})
    repo.add_rating(bank, visitor="v1", output=output, score=-1, prompt=[random_image(np.random.default_rng(51))])
    repo.add_attempt(bank, published.id, "v2", 1, 2.5)
    repo.record_model_result(bank, published.id, "tiny-v1", picked_index=0)
    assert not accounts.verify_curator(bank, CURATOR, "wrong guess")  # a login_failures row
    return {"published": published.id, "pending": pending.id, "rejected": rejected.id}


def bank_contents(bank) -> dict:
    """Everything a restore must bring back, as plain values (ids included: the audit order depends on them)."""
    puzzles = repo.list_puzzles(bank, status=None, per_page=200)[0]
    return {
        "counts": row_counts(bank),
        "puzzles": [(p.id, p.status, p.panel_hashes, p.candidate_hashes, p.answer_hash, p.created_at) for p in puzzles],
        "ratings": repo.list_ratings(bank),
        "audit": repo.list_audit(bank),
        "stats": repo.bank_stats(bank),
        "curators": [(c.name, c.disabled, c.created_at) for c in accounts.list_curators(bank)],
    }


@pytest.mark.parametrize("target_backend", ["sqlite", "postgresql"])
def test_archive_backup_restores_into_either_back_end(make_bank, tmp_path, target_backend):
    source = make_bank(tmp_path, name="source")
    ids = fill_bank(source)
    archive = tmp_path / "bank.zip"
    counts = backup.backup(source, archive)
    assert counts["puzzles"] == 3 and counts["ratings"] == 2 and counts["login_failures"] == 1
    # The archive is also a plain puzzle pack of every puzzle, whatever its status.
    assert validate_pack(archive) == []
    assert sorted(p.id for p in read_pack(archive)) == sorted(ids.values())

    target = make_bank(tmp_path, name="target", backend=target_backend)
    repo.add_puzzle(target, make_puzzle(77), "published")  # replaced by the restore
    assert backup.restore(target.url, archive) == counts
    assert bank_contents(target) == bank_contents(source)
    assert_same_puzzle(repo.get_puzzle(target, ids["published"]).puzzle, make_puzzle(1))
    assert repo.get_puzzle(target, ids["rejected"]).reject_reason == "too easy"
    assert accounts.verify_curator(target, CURATOR, PASSWORD)
    # New rows get fresh ids after the restored ones (PostgreSQL's sequences were moved past them).
    old_ids = {row["id"] for row in repo.list_ratings(target)}
    new_id = repo.add_rating(target, visitor="v9", output=random_image(np.random.default_rng(60)), score=1,
                             puzzle_id=ids["published"])
    assert new_id not in old_ids
    accounts.add_curator(target, "grace", "long enough pw")
    repo.approve(target, ids["pending"], "grace")


def test_archive_backup_is_consistent_while_others_write(make_bank, tmp_path):
    bank = make_bank(tmp_path)
    repo.add_puzzle(bank, make_puzzle(0), "published")
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for seed in range(1, 60):
                if done.is_set():
                    return
                puzzle = make_puzzle(seed)
                repo.add_puzzle(bank, puzzle, "published")
                repo.add_attempt(bank, puzzle.id, "v", 1)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    counts = backup.backup(bank, tmp_path / "live.zip")
    done.set()
    writer.join()
    assert errors == []
    # One snapshot: every row the archive holds has what it refers to, and the counts match the rows.
    target = make_bank(tmp_path, name="restored")
    assert backup.restore(target.url, tmp_path / "live.zip") == counts
    assert row_counts(target) == counts
    assert validate_pack(tmp_path / "live.zip") == []


def test_restore_refuses_what_is_not_a_matching_backup(make_bank, tmp_path):
    bank = make_bank(tmp_path)
    fill_bank(bank)
    before = bank_contents(bank)
    archive = tmp_path / "bank.zip"
    backup.backup(bank, archive)
    plain_pack = tmp_path / "pack.zip"
    write_test_pack(plain_pack, range(2))
    with pytest.raises(ValueError, match="no backup.json"):
        backup.restore(bank.url, plain_pack)
    damaged = rewrite_zip(archive, tmp_path / "damaged.zip", lambda name, data: data + b"x" * ("images/" in name))
    with pytest.raises(ValueError, match="does not match its sha256"):
        backup.restore(bank.url, damaged)
    newer = rewrite_zip(archive, tmp_path / "newer.zip", lambda name, data: data.replace(b'"0001"', b'"9999"'))
    with pytest.raises(ValueError, match="schema revision '9999'"):
        backup.restore(bank.url, newer)
    with pytest.raises(ValueError, match="exists already"):
        backup.backup(bank, archive)
    with pytest.raises(FileNotFoundError, match="not found"):
        backup.restore(bank.url, tmp_path / "missing.zip")
    if bank.dialect == "postgresql":
        with pytest.raises(ValueError, match="must end in .zip"):
            backup.backup(bank, tmp_path / "bank.db")
    assert bank_contents(bank) == before  # a refused restore changes nothing


def rewrite_zip(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, change(name, old.read(name)))
    return target


# ---------------------------------------------------------------- two replicas (processes) on one database


def replica(url: str, name: str, other: str, start, results) -> None:
    """One app replica's share of the traffic, in its own process with its own connection pool."""
    try:
        bank = connect(url)  # both replicas migrate the empty database at once: one waits for the other
        start.wait(timeout=60)
        own = make_puzzle(1 if name == "a" else 2, id=f"published-on-{name}")
        repo.add_puzzle(bank, own, "published")
        deadline = time.monotonic() + 30
        while repo.list_puzzles(bank, tag="test")[1] < 2:  # the other replica's puzzle shows up here
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {name} never saw puzzle published-on-{other}")
            time.sleep(0.05)
        seen = repo.get_puzzle(bank, f"published-on-{other}").puzzle.id
        outputs = [random_image(np.random.default_rng(200 + i)) for i in range(4)]
        ratings, attempts, submitted = [], 0, []
        for round_ in range(3):
            for visitor in ("v1", "v2"):  # the same visitors on both replicas: upserts race across processes
                for index, output in enumerate(outputs):
                    puzzle_id = f"published-on-{'a' if index % 2 else 'b'}"
                    score = 1 if (round_ + index) % 2 else -1
                    rating_id = repo.add_rating(bank, visitor=visitor, output=output, score=score, puzzle_id=puzzle_id)
                    ratings.append((rating_id, visitor, index))
                repo.add_attempt(bank, f"published-on-{other}", f"{visitor}-{name}", 1, 1.0)
                attempts += 1
        for seed in range(3):
            submitted.append(repo.submit_puzzle(bank, make_puzzle(100 + seed, id=f"{name}-{seed}"), visitor=name))
        try:  # both replicas submit this one: exactly one may succeed
            submitted.append(repo.submit_puzzle(bank, make_puzzle(999, id="contested"), visitor=name))
        except repo.PuzzleExistsError:
            pass
        bank.close()
        results.put({"name": name, "seen": seen, "ratings": ratings, "attempts": attempts, "submitted": submitted})
    except BaseException as error:  # noqa: BLE001 - reported by the test process
        results.put({"name": name, "error": repr(error)})


def test_two_replicas_in_two_processes_write_everything_exactly_once(make_bank, tmp_path):
    bank = make_bank(tmp_path)
    downgrade(bank.engine, "base")  # an empty database, as on a first deployment
    bank.engine.dispose()  # no connections cross the fork
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=replica, args=(bank.url, name, other, start, results))
        for name, other in (("a", "b"), ("b", "a"))
    ]
    for process in processes:
        process.start()
    reports = {report["name"]: report for report in (results.get(timeout=120) for _ in processes)}
    for process in processes:
        process.join(timeout=30)
    assert {name: report.get("error") for name, report in reports.items()} == {"a": None, "b": None}
    assert (reports["a"]["seen"], reports["b"]["seen"]) == ("published-on-b", "published-on-a")
    # Every acknowledged write is there, exactly once.
    ratings = repo.list_ratings(bank)
    keys = [(row["visitor_id"], row["output_sha256"], row["target"]) for row in ratings]
    assert len(keys) == len(set(keys)) == 2 * 4  # two visitors x four outputs, however often they rated
    acknowledged = {rating_id for report in reports.values() for rating_id, _, _ in report["ratings"]}
    assert acknowledged == {row["id"] for row in ratings}
    attempts = sum(repo.puzzle_stats(bank, f"published-on-{n}")["attempts"] for n in "ab")
    assert attempts == reports["a"]["attempts"] + reports["b"]["attempts"] == 12
    submitted = reports["a"]["submitted"] + reports["b"]["submitted"]
    assert submitted.count("contested") == 1 and len(submitted) == len(set(submitted)) == 7
    pending = [item.id for item in repo.list_puzzles(bank, status="pending", per_page=50)[0]]
    assert sorted(pending) == sorted(submitted)
