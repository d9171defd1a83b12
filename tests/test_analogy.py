"""Analogy generator: determinism, every transform valid at any size, answers recomputed from metadata."""

import re
from pathlib import Path

import numpy as np
import pytest

from puzzles import scenes
from puzzles.generators import analogy, generate

PHOTO_DIR = Path(__file__).resolve().parent.parent / "static" / "photos"


def assert_valid(puzzle, size: int) -> None:
    pairs = puzzle.layout["pairs"]
    assert 1 <= pairs <= 3
    assert len(puzzle.panels) == 2 * pairs + 1
    assert len(puzzle.candidates) == 8
    assert len({c.tobytes() for c in puzzle.candidates}) == 8, "candidates must be distinct"
    for image in [*puzzle.panels, puzzle.answer, *puzzle.candidates]:
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert np.array_equal(puzzle.candidates[puzzle.answer_index], puzzle.answer)
    for question, answer in zip(puzzle.panels[0:-1:2], puzzle.panels[1::2], strict=True):
        assert not np.array_equal(question, answer), "every example pair must show the change"


def assert_recomputes(puzzle, size: int) -> None:
    meta = puzzle.meta
    question, answer = analogy.pair(meta["transform"], meta["query"], meta["params"], size)
    assert np.array_equal(question, puzzle.panels[-1])
    assert np.array_equal(answer, puzzle.answer)
    if meta["transform"] in analogy.IMAGE_FUNCTIONS:  # answer == T(B) straight from the query panel
        assert np.array_equal(
            analogy.transform_image(meta["transform"], puzzle.panels[-1], meta["params"]), puzzle.answer
        )
    for spec, (q, a) in zip(
        meta["examples"], zip(puzzle.panels[0:-1:2], puzzle.panels[1::2], strict=True), strict=True
    ):
        assert all(
            np.array_equal(x, y)
            for x, y in zip(analogy.pair(meta["transform"], spec, meta["params"], size), (q, a), strict=True)
        )


@pytest.mark.parametrize("transform", analogy.TRANSFORMS)
def test_every_transform_makes_valid_puzzles(transform):
    for seed in range(4):
        puzzle = analogy.generate(seed, size=32, transform=transform)
        assert_valid(puzzle, 32)
        assert_recomputes(puzzle, 32)
        assert puzzle.meta["transform"] == transform and "params" in puzzle.meta
        assert transform in puzzle.tags and analogy.REGISTRY[transform].group in puzzle.tags


@pytest.mark.parametrize("size", [32, 64, 160])
def test_any_size(size):
    for seed in range(3):
        puzzle = analogy.generate(seed, size=size)
        assert_valid(puzzle, size)
        assert_recomputes(puzzle, size)


def test_same_seed_same_puzzle_and_different_seeds_differ():
    first, again = analogy.generate(11, transform="shift", pairs=2), analogy.generate(11, transform="shift", pairs=2)
    assert first.id == again.id and first.meta == again.meta
    assert analogy.generate(12).id != first.id


def test_metadata_and_layout():
    puzzle = generate("analogy", 5, size=32, transform="font", pairs=3)
    assert puzzle.family == "analogy" and puzzle.layout == {"pairs": 3}
    assert puzzle.source == {
        "generator": "analogy",
        "version": analogy.VERSION,
        "seed": 5,
        "options": {"transform": "font", "pairs": 3},
    }
    assert puzzle.meta["params"]["from"] != puzzle.meta["params"]["to"]
    assert "seed-task" in puzzle.tags and "task" in puzzle.tags


def test_parameters_are_shared_by_every_pair():
    puzzle = analogy.generate(3, size=32, transform="shift", pairs=3)
    params = puzzle.meta["params"]
    for question, answer in zip(puzzle.panels[0:-1:2], puzzle.panels[1::2], strict=True):
        assert np.array_equal(analogy.transform_image("shift", question, params), answer)


def test_seed_tasks_and_required_transforms_exist():
    required = {
        "hflip",
        "vflip",
        "rotate90",
        "rotate180",
        "transpose",
        "shift",
        "zoom",
        "invert",
        "greyscale",
        "channel_swap",
        "brightness",
        "posterize",
        "hue_rotate",
        "blur",
        "edges",
        "segment",
        "recolour",
        "inpaint",
        "outline",
        "colorize",
        "style",
        "font",
    }
    assert required <= set(analogy.TRANSFORMS)


def test_base_option_restricts_scenes():
    for seed in range(3):
        puzzle = analogy.generate(seed, size=32, base="photo")
        assert puzzle.meta["query"]["kind"] == "photo"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"transform": "melt"}, "unknown transform"),
        ({"pairs": 4}, "pairs must be"),
        ({"size": 8}, "size must be"),
        ({"colour": 1}, "unknown analogy options"),
        ({"base": "video"}, "unknown base"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        analogy.generate(0, **kwargs)


def test_photo_licences_list_every_photo():
    licences = (PHOTO_DIR / "LICENSES.md").read_text()
    shipped = sorted(p.name for p in PHOTO_DIR.glob("*.png"))
    assert shipped == sorted(f"{name}.png" for name in scenes.PHOTOS)
    for name in shipped:
        row = next((line for line in licences.splitlines() if line.startswith(f"| {name} |")), None)
        assert row is not None, f"{name} missing from LICENSES.md"
        assert re.search(r"CC0|[Pp]ublic domain", row), f"{name} has no licence stated"


def test_photos_load_small():
    for name in scenes.PHOTOS:
        assert max(scenes.load_photo(name).shape[:2]) <= 256
