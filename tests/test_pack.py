"""Pack format: lossless round trip, deterministic zips, and a clear first problem for every bad pack."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from puzzles.generators import generate
from puzzles.images import png_bytes
from puzzles.pack import PackError, read_pack, validate_pack, write_pack
from puzzles.puzzle import Puzzle

FIELDS = ("id", "family", "title", "answer_index", "layout", "tags", "difficulty", "source", "license", "meta")


@pytest.fixture(scope="module")
def puzzles() -> list[Puzzle]:
    made = [generate(family, seed, size=32) for family in ("matrix", "analogy", "sequence") for seed in (1, 2)]
    made.append(generate("grid", 3, size=64))
    blank = np.zeros((20, 30, 3), np.uint8)
    made.append(Puzzle(family="free", panels=[blank], title="no answer", meta={"n": np.int64(3)}))
    return made


def _same(left: Puzzle, right: Puzzle) -> None:
    for name in FIELDS:
        assert getattr(left, name) == getattr(right, name), name
    for mine, theirs in [(left.panels, right.panels), (left.candidates, right.candidates)]:
        assert len(mine) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))
    assert (left.answer is None) == (right.answer is None)
    assert left.answer is None or np.array_equal(left.answer, right.answer)
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for image in right.panels)


@pytest.mark.parametrize("name", ["pack.zip", "pack_dir"])
def test_round_trip_is_lossless(tmp_path: Path, puzzles: list[Puzzle], name: str) -> None:
    path = write_pack(puzzles, tmp_path / name)
    assert validate_pack(path) == []
    back = read_pack(path)
    assert len(back) == len(puzzles)
    for left, right in zip(puzzles, back, strict=True):
        _same(left, right)


def test_zip_bytes_are_deterministic(tmp_path: Path, puzzles: list[Puzzle]) -> None:
    first = write_pack(puzzles, tmp_path / "a.zip").read_bytes()
    second = write_pack(list(puzzles), tmp_path / "b.zip").read_bytes()
    assert first == second


def test_images_are_stored_once_by_hash(tmp_path: Path, puzzles: list[Puzzle]) -> None:
    path = write_pack(puzzles[:1], tmp_path / "p.zip")
    names = zipfile.ZipFile(path).namelist()
    matrix = puzzles[0]
    distinct = {png_bytes(image) for image in [*matrix.panels, matrix.answer, *matrix.candidates]}
    assert len([n for n in names if n.startswith("images/")]) == len(distinct)


def test_duplicate_ids_refused_on_write(tmp_path: Path, puzzles: list[Puzzle]) -> None:
    with pytest.raises(PackError, match="duplicate puzzle ids"):
        write_pack([puzzles[0], puzzles[0]], tmp_path / "p.zip")


# ---- bad packs: each is built from a good directory pack with one thing broken


def _dir_pack(tmp_path: Path, puzzles: list[Puzzle]) -> tuple[Path, dict]:
    path = write_pack(puzzles[:2], tmp_path / "pack")
    return path, json.loads((path / "pack.json").read_text())


def _rewrite(path: Path, document: dict) -> None:
    (path / "pack.json").write_text(json.dumps(document))


def _first_problem(path: Path) -> str:
    with pytest.raises(PackError) as caught:
        read_pack(path)
    assert caught.value.problems[0] == str(caught.value) == validate_pack(path)[0]
    return str(caught.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc: doc["puzzles"][0].update(family="riddle"), "unknown family 'riddle'"),
        (lambda doc: doc["puzzles"][0].update(answer_index=8), "answer_index 8 is out of range for 8 candidates"),
        (lambda doc: doc["puzzles"][0].update(difficulty="hard"), "field 'difficulty' must be an integer from 1 to 5"),
        (lambda doc: doc["puzzles"][0].update(tags="x"), "field 'tags' must be a list of strings"),
        (lambda doc: doc["puzzles"][0].update(panels=["abc"]), "field 'panels' must be a non-empty list of sha256"),
        (lambda doc: doc["puzzles"][0].pop("license"), "missing field 'license'"),
        (lambda doc: doc["puzzles"][0].update(colour=1), "unexpected field 'colour'"),
        (lambda doc: doc["puzzles"][1].update(id=doc["puzzles"][0]["id"]), "duplicate id"),
        (lambda doc: doc["puzzles"][0].update(answer_index=True), "field 'answer_index' must be null or an integer"),
        (lambda doc: doc.update(format_version=99), "unsupported format_version 99"),
        (lambda doc: doc.update(puzzles={}), "'puzzles' must be a list"),
    ],
)
def test_bad_json_names_the_problem(tmp_path: Path, puzzles: list[Puzzle], edit, message: str) -> None:
    path, document = _dir_pack(tmp_path, puzzles)
    edit(document)
    _rewrite(path, document)
    assert message in _first_problem(path)


def test_missing_and_tampered_images(tmp_path: Path, puzzles: list[Puzzle]) -> None:
    path, document = _dir_pack(tmp_path, puzzles)
    first = document["puzzles"][0]["panels"][0]
    (path / "images" / f"{first}.png").unlink()
    assert f"images/{first}.png: missing image" in _first_problem(path)
    (path / "images" / f"{first}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    assert "does not match its name" in _first_problem(path)


def _store_image(path: Path, document: dict, data: bytes) -> None:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    (path / "images" / f"{digest}.png").write_bytes(data)
    document["puzzles"][0]["panels"][0] = digest
    _rewrite(path, document)


def test_non_png_and_huge_images(tmp_path: Path, puzzles: list[Puzzle]) -> None:
    path, document = _dir_pack(tmp_path, puzzles)
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    _store_image(path, document, jpeg.getvalue())
    assert "not a PNG file" in _first_problem(path)
    huge = io.BytesIO()
    Image.new("1", (5000, 5000)).save(huge, format="PNG")  # tiny file, 25M pixels once decoded
    _store_image(path, document, huge.getvalue())
    assert "over the limit" in _first_problem(path)


def _zip_with(tmp_path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("name", "message"), [("../evil.png", "escapes the pack"), ("/etc/x", "absolute path"), ("a\\..\\b", "escapes")]
)
def test_zip_member_names(tmp_path: Path, name: str, message: str) -> None:
    path = _zip_with(tmp_path, {"pack.json": b"{}", name: b"x"})
    assert message in _first_problem(path)


def test_zip_bomb_is_refused_before_decompressing(tmp_path: Path) -> None:
    path = _zip_with(tmp_path, {"pack.json": b"{}", "images/filler.bin": b"\0" * (20 * 1024**2)})
    assert "compression ratio" in _first_problem(path)


def test_too_many_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import puzzles.pack as pack

    monkeypatch.setattr(pack, "MAX_MEMBERS", 5)
    path = _zip_with(tmp_path, {f"images/{i}.png": b"" for i in range(6)})
    assert "at most 5 are allowed" in _first_problem(path)


def test_not_a_pack(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("hello")
    assert "not a directory or a zip" in _first_problem(tmp_path / "note.txt")
    assert "no pack.json" in _first_problem(tmp_path)
    assert "no such file" in _first_problem(tmp_path / "missing.zip")
    bad_json = _zip_with(tmp_path, {"pack.json": b"{oops"})
    assert "not valid JSON" in _first_problem(bad_json)
