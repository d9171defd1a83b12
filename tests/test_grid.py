"""ARC grid family: rendering rule, exact read-back, task -> puzzle."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from puzzles.generators import grid

ROOT = Path(__file__).resolve().parents[1]


def _eval_grids() -> list[np.ndarray]:
    return [array for task in grid.load_tasks("arcagi1-eval") for pair in task.train + task.test for array in pair]


@pytest.mark.parametrize("size", [64, 120])
def test_every_arc1_eval_grid_reads_back_exactly(size: int) -> None:
    # Rule: pitch floor(size / max(h, w)); at 64 px every grid up to 30x30 fits with cells >= 2 px.
    grids = _eval_grids()
    assert len(grids) > 3000
    wrong = [g.shape for g in grids if grid.read_grid(grid.render_grid(g, size)) != g.tolist()]
    assert wrong == []


@pytest.mark.parametrize("size", [60, 64, 96, 120, 256])
def test_every_shape_has_its_own_footprint(size: int) -> None:
    assert grid.layout_is_unique(size)


def test_small_sizes_are_reported_ambiguous() -> None:
    assert not grid.layout_is_unique(40)


@pytest.mark.parametrize("size", [64, 120])
def test_read_grid_survives_mild_noise(size: int) -> None:
    rng = np.random.default_rng(1)
    for _ in range(60):
        height, width = rng.integers(1, 31, size=2)
        array = rng.integers(0, 10, size=(height, width))
        noisy = grid.render_grid(array, size).astype(float) + rng.normal(0, 10, (size, size, 3))
        assert grid.read_grid(np.clip(noisy, 0, 255).astype(np.uint8)) == array.tolist()


def test_render_uses_palette_and_white_padding() -> None:
    image = grid.render_grid([[0, 9], [4, 5]], 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert colours == {tuple(grid.PALETTE[i]) for i in (0, 9, 4, 5)} | {(255, 255, 255)}
    assert (image[31, :] == 255).all()  # the 1-px line between the two cell rows (pitch 32)


@pytest.mark.parametrize(
    ("bad", "message"),
    [([[1, 2], [3]], "ragged"), ([[1, 10]], "outside the ARC palette"), ([], "non-empty"), ([[True]], "not an integer"),
     (np.zeros((31, 2), int), "at most 30")],
)
def test_bad_grids_are_named(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grid.render_grid(bad, 64)


def test_read_grid_rejects_images_that_are_not_grids() -> None:
    speckle = np.where(np.random.default_rng(0).random((64, 64, 1)) < 0.5, 255, 0).repeat(3, axis=2).astype(np.uint8)
    with pytest.raises(ValueError, match="does not look like a rendered ARC grid"):
        grid.read_grid(speckle)
    with pytest.raises(ValueError, match="square RGB"):
        grid.read_grid(np.zeros((64, 32, 3), np.uint8))


def test_generate_builds_the_task_sentence() -> None:
    task = next(t for t in grid.load_tasks("arcagi1-train") if t.id == "007bbfb7")
    puzzle = grid.generate(0, size=64, task_id="007bbfb7")
    assert puzzle.family == "grid" and puzzle.candidates == [] and puzzle.license == "Apache-2.0"
    assert len(puzzle.panels) == 2 * len(task.train) + 1
    assert grid.read_grid(puzzle.panels[0]) == task.train[0][0].tolist()
    assert grid.read_grid(puzzle.panels[-1]) == task.test[0][0].tolist()
    assert grid.read_grid(puzzle.answer) == puzzle.meta["answer_grid"] == task.test[0][1].tolist()
    assert puzzle.meta["task_id"] == "007bbfb7" and puzzle.meta["dataset"] == "arcagi1-train"
    assert puzzle.meta["grid_shapes"][0] == list(task.train[0][0].shape)
    assert puzzle.source["generator"] == "grid" and puzzle.source["task_id"] == "007bbfb7"


@pytest.mark.parametrize("dataset", grid.DATASETS)
def test_seed_picks_a_task_deterministically(dataset: str) -> None:
    first, again = grid.generate(5, size=64, dataset=dataset), grid.generate(5, size=64, dataset=dataset)
    assert first.id == again.id and first.meta["dataset"] == dataset
    ids = {grid.generate(seed, size=64, dataset=dataset).meta["task_id"] for seed in range(6)}
    assert len(ids) > 1


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="unknown ARC dataset"):
        grid.generate(0, dataset="arc3")
    with pytest.raises(ValueError, match="no task"):
        grid.generate(0, task_id="nope")
    with pytest.raises(ValueError, match="test_index 5 is out of range"):
        grid.generate(0, task_id="007bbfb7", test_index=5)


def test_consecutive_seeds_draw_tasks_without_replacement(tmp_path: Path) -> None:
    count = len(grid.load_tasks("arcagi1-train"))
    assert sorted(grid.task_for_seed(seed, count) for seed in range(424242, 424242 + count)) == list(range(count))
    out = tmp_path / "grid.zip"
    command = [sys.executable, "-m", "puzzles", "generate", "--family", "grid", "--n", "24", "--seed", "424242",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
