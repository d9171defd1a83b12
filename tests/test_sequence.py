"""Sequence generator: determinism, every kind valid for every length and size, answers recomputed."""

import numpy as np
import pytest

from puzzles.generators import generate, sequence


def assert_valid(puzzle, size: int) -> None:
    frames = puzzle.layout["frames"]
    assert 3 <= frames <= 8 and len(puzzle.panels) == frames
    assert len(puzzle.candidates) == 8
    assert len({c.tobytes() for c in puzzle.candidates}) == 8, "candidates must be distinct"
    assert np.array_equal(puzzle.candidates[puzzle.answer_index], puzzle.answer)
    for image in [*puzzle.panels, *puzzle.candidates]:
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    kind, params = puzzle.meta["kind"], puzzle.meta["params"]
    for step, panel in enumerate(puzzle.panels):
        assert np.array_equal(sequence.render_step(kind, params, step, size), panel)
    assert np.array_equal(sequence.render_step(kind, params, frames, size), puzzle.answer)
    assert not np.array_equal(puzzle.panels[-1], puzzle.answer), "the answer must differ from the last frame"


@pytest.mark.parametrize("kind", sequence.KINDS)
def test_every_kind_and_length(kind):
    for frames in range(3, 9):
        puzzle = sequence.generate(frames, size=32, kind=kind, frames=frames)
        assert_valid(puzzle, 32)
        assert puzzle.meta["kind"] == kind and kind in puzzle.tags


@pytest.mark.parametrize("size", [32, 64, 160])
def test_any_size(size):
    for seed in range(4):
        assert_valid(sequence.generate(seed, size=size), size)


def test_default_length_is_drawn_from_the_seed():
    lengths = {sequence.generate(seed, size=32).layout["frames"] for seed in range(40)}
    assert lengths <= set(range(3, 9)) and len(lengths) >= 4


def test_determinism():
    first, again = sequence.generate(21, size=32), sequence.generate(21, size=32)
    assert first.id == again.id and first.meta == again.meta
    assert sequence.generate(22, size=32).id != first.id


def test_metadata():
    puzzle = generate("sequence", 9, size=32, kind="bounce", frames=6)
    assert puzzle.family == "sequence" and puzzle.layout == {"frames": 6}
    assert puzzle.source == {
        "generator": "sequence",
        "version": sequence.VERSION,
        "seed": 9,
        "options": {"kind": "bounce", "frames": 6},
    }
    assert "answer" in puzzle.meta["candidates"]


def test_count_up_adds_one_object_per_frame():
    puzzle = sequence.generate(4, size=64, kind="count_up", frames=5)
    params = puzzle.meta["params"]
    counts = [len(sequence.objects_at("count_up", params, step)) for step in range(6)]
    assert counts == list(range(params["start_count"], params["start_count"] + 6))


def test_bounce_stays_inside_and_turns():
    puzzle = sequence.generate(2, size=64, kind="bounce", frames=8)
    params = puzzle.meta["params"]
    xs = [sequence.objects_at("bounce", params, step)[0]["cx"] for step in range(10)]
    ys = [sequence.objects_at("bounce", params, step)[0]["cy"] for step in range(10)]
    assert all(params["r"] - 1e-9 <= v <= 1 - params["r"] + 1e-9 for v in xs + ys)
    turns = sum(np.sign(np.diff(xs))[1:] != np.sign(np.diff(xs))[:-1]) + sum(
        np.sign(np.diff(ys))[1:] != np.sign(np.diff(ys))[:-1]
    )
    assert turns >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "spin"}, "unknown sequence kind"),
        ({"frames": 2}, "frames must be"),
        ({"frames": 9}, "frames must be"),
        ({"size": 10}, "size must be"),
        ({"speed": 2}, "unknown sequence options"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sequence.generate(0, **kwargs)
