"""Every case of the bad-input corpus through the path it really takes: a visitor's upload into a Play slot
(then solve, rate, submit over HTTP), or an importer into a real bank. Each is normalised or refused with a
message naming the problem; the server keeps serving; nothing half-written stays; no temp file is left."""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file

from app import bank_views, prompts, visitors
from app.uploads import read_upload
from puzzles import importers
from puzzles.bank import connect, repository
from puzzles.images import png_bytes
from tests.reliability import corpus, figures

CASES = corpus.load_manifest()
UPLOADS = [case for case in CASES if case["path"] == "upload"]
IMPORTS = [case for case in CASES if case["path"] != "upload"]


def test_the_manifest_covers_every_builder_and_at_least_40_cases() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)) >= 40
    assert set(names) == set(corpus.BUILDERS)
    assert all(case["expect"] in ("normalised", "refused") for case in CASES)
    assert all(case["message"] for case in CASES if case["expect"] == "refused")


@pytest.fixture(scope="module")
def client(playground: dict[str, Any]) -> Client:
    return Client(playground["url"], verbose=False)


@pytest.fixture(scope="module")
def prompt_files(playground: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A1 and A1' of a bank analogy as PNG files (the case goes into B)."""
    puzzle = bank_views.fetch_puzzle(playground["bank"], playground["puzzle_ids"][0])
    folder = tmp_path_factory.mktemp("prompt")
    paths = []
    for index, image in enumerate(puzzle["panels"][:2]):
        path = folder / f"panel{index}.png"
        path.write_bytes(png_bytes(image))
        paths.append(str(path))
    return paths


def _slots(prompt_files: list[str], case_file: str) -> list[Any]:
    values: list[Any] = [None] * len(prompts.ALL_SLOTS)
    for name, path in zip(("slot-a1", "slot-a1p", "slot-b"), [*prompt_files, case_file], strict=True):
        values[prompts.ALL_SLOTS.index(name)] = handle_file(path)
    return values


def _local_name(case: dict[str, Any]) -> str:
    return Path(case["file"]).name  # the client sends the base name, as a browser does


def _count(bank: Any) -> int:
    return sum(repository.bank_stats(bank)["puzzles"].values())


@pytest.mark.parametrize("case", UPLOADS, ids=[case["name"] for case in UPLOADS])
def test_upload_case_through_the_play_page(case: dict[str, Any], client: Client, playground: dict[str, Any],
                                           prompt_files: list[str], tmp_path: Path) -> None:
    figures.add(cases_tried=1)
    path = tmp_path / _local_name(case)
    path.write_bytes(corpus.build(case))
    slots = _slots(prompt_files, str(path))
    bank = playground["bank"]
    if case["expect"] == "refused":
        before = _count(bank)
        with pytest.raises(Exception) as solved:
            client.predict("analogy", "1", *slots, None, 1, 1.0, 0, 1.0, 0, api_name="/solve")
        with pytest.raises(Exception) as submitted:
            client.predict(visitors.new_visitor_id(), "analogy", "1", *slots, None, None, "bad", api_name="/submit")
        for error in (solved.value, submitted.value):
            assert case["message"].lower() in str(error).lower()
            assert not any(unicodedata.category(ch) == "Cc" for ch in str(error)), "control characters echoed"
        assert _count(bank) == before, "a refused upload left a puzzle behind"
    else:
        image = read_upload(corpus.build(case), case["file"])
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert list(image.shape) == case["shape"]
        if "pixel" in case:
            assert image[0, 0].tolist() == case["pixel"]
        if "last_pixel" in case:
            assert image[-1, -1].tolist() == case["last_pixel"]
        samples = client.predict("analogy", "1", *slots, None, 1, 1.0, 0, 1.0, 0, api_name="/solve")[0]
        assert len(samples) == 1
        visitor = visitors.new_visitor_id()
        status, _ = client.predict(visitor, 1, "up", False, api_name="/rate")
        assert "rated up" in status
        assert len(repository.list_ratings(bank, visitor=visitor)) == 1
    figures.add(cases_passed=1)


def test_the_server_keeps_serving_after_the_corpus(playground: dict[str, Any]) -> None:
    answer = httpx.get(playground["url"] + "healthz", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"


def _import(case: dict[str, Any], bank: Any, folder: Path) -> tuple[bool, str, int]:
    """(imported, message, puzzles written) for one importer case."""
    path = folder / case["file"]
    path.write_bytes(corpus.build(case))
    if case["path"] == "pack":
        report = repository.import_pack(bank, path)
        message = "; ".join(why for _, why in report.invalid)
        return report.imported, message, len(report.new) if report.imported else 0
    try:
        if case["path"] == "raven":
            puzzles = importers.import_raven(path)
        else:
            puzzles = importers.import_arc_bytes(path.read_bytes(), case["file"], size=16)
    except importers.ImportFormatError as error:
        return False, str(error), 0
    report = repository.import_puzzles(bank, puzzles, source=case["file"])
    return report.imported, "", len(report.new)


@pytest.mark.parametrize("case", IMPORTS, ids=[case["name"] for case in IMPORTS])
def test_import_case_is_all_or_nothing(case: dict[str, Any], tmp_path: Path) -> None:
    figures.add(cases_tried=1)
    bank_dir, files = tmp_path / "bank", tmp_path / "files"
    files.mkdir()
    bank = connect(f"sqlite:///{bank_dir / 'gelato.db'}")
    try:
        imported, message, written = _import(case, bank, files)
        count = _count(bank)
    finally:
        bank.close()
    if case["expect"] == "refused":
        assert not imported and count == 0, "a refused import wrote to the bank"
        assert case["message"].lower() in message.lower(), message
    else:
        assert imported and written == count == case["imported"]
    leftovers = {p.name for p in files.iterdir()} - {case["file"]}
    assert not leftovers, f"temporary files left behind: {leftovers}"
    assert {p.name for p in bank_dir.iterdir()} <= {"gelato.db", "gelato.db-wal", "gelato.db-shm"}
    figures.add(cases_passed=1)
