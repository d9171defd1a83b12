"""The Raven-style matrix generator and the shape drawing primitives it uses."""
from __future__ import annotations

import json

import numpy as np
import pytest

from puzzles.draw import Shape, polygon_vertices, render
from puzzles.generators import generate as generate_family
from puzzles.generators.matrix import LAYOUT_COMPONENTS, LAYOUTS, VERSION, generate, solve_from_metadata

SMALL = 32  # most tests render small: the logic does not depend on the size


@pytest.fixture(scope="module")
def mixed_puzzles():
    """200 puzzles over every layout (seed picks the layout), shared by the solver and bias tests."""
    return [generate(seed, size=SMALL) for seed in range(200)]


# ----------------------------------------------------------------------------- drawing

def test_render_draws_on_white_canvas():
    image = render([Shape("square", (0.5, 0.5), 0.3, fill=0)], 40)
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    assert (image[0, 0] == 255).all() and (image[20, 20] == 0).all()


def test_outline_only_shape_keeps_inside_transparent():
    image = render([Shape("circle", (0.5, 0.5), 0.4, fill=None, line_width=0.05)], 64)
    assert (image[32, 32] == 255).all()
    assert image[32, 4:10].min() < 50  # the ring on the left


def test_render_supports_rectangles_and_rgb():
    image = render([Shape("hexagon", (0.5, 0.5), 0.3, fill=(200, 10, 10))], (60, 30))
    assert image.shape == (30, 60, 3)
    assert tuple(image[15, 30]) == (200, 10, 10)


def test_polygon_orientation():
    apex = polygon_vertices(3, (0.0, 0.0), 1.0)[0]
    assert apex == pytest.approx((0.0, -1.0))  # a triangle points up
    square = polygon_vertices(4, (0.0, 0.0), 1.0)
    assert square[0][1] == pytest.approx(square[-1][1]) and square[0][1] < 0  # flat top edge


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "star", "center": (0.5, 0.5), "radius": 0.2},
        {"kind": "circle", "center": (0.5, 0.5), "radius": 0},
        {"kind": "circle", "center": (0.5, 0.5), "radius": 0.2, "fill": 300},
        {"kind": "circle", "center": (0.5, 0.5), "radius": 0.2, "fill": None, "line_width": 0},
    ],
)
def test_bad_shapes_are_refused(kwargs):
    with pytest.raises(ValueError):
        Shape(**kwargs)


# ----------------------------------------------------------------------------- rule checks written independently

def _value(cell, attribute):
    if attribute == "number":
        return len(cell["positions"])
    if attribute == "position":
        return frozenset(cell["positions"])
    return cell[attribute]


def _row_holds(rule, attribute, row, slots):
    name = rule["rule"]
    a, b, c = row
    if name == "fixed":
        return a == b == c == rule["value"]
    if name == "constant":
        return a == b == c
    if name == "progression":
        if attribute == "position":
            shift = lambda s: frozenset((p + rule["step"]) % slots for p in s)  # noqa: E731
            return b == shift(a) and c == shift(b) and a != b
        return b - a == rule["step"] and c - b == rule["step"]
    if name == "arithmetic":
        if attribute == "position":
            return c == (a | b if rule["op"] == "add" else a - b) and len(c) > 0
        return c == (a + b if rule["op"] == "add" else a - b) and b >= 1
    if name in ("random", "by_position", "distribute_three"):
        return True  # distribute-three is checked over the whole matrix
    raise AssertionError(f"unexpected rule {rule}")


def _check_rules(puzzle):
    meta = puzzle.meta
    cells = [*meta["panels"], meta["candidates"][puzzle.answer_index]]
    for component in LAYOUT_COMPONENTS[meta["layout"]]:
        for attribute, rule in meta["rules"][component.name].items():
            values = [_value(cell[component.name], attribute) for cell in cells]
            rows = [values[0:3], values[3:6], values[6:9]]
            for row in rows:
                assert _row_holds(rule, attribute, row, len(component.slots)), (attribute, rule, rows)
            if rule["rule"] == "distribute_three":
                assert len(set(rows[0])) == 3, rows
                assert all(set(row) == set(rows[0]) for row in rows), rows
                assert all(len({row[col] for row in rows}) == 3 for col in range(3)), rows
            if attribute in ("type", "size", "colour"):
                assert all(isinstance(v, int) and v >= 0 for v in values)
            if component.role == "outer":
                assert all(v in component.types for v in (_value(c["outer"], "type") for c in cells))


# ----------------------------------------------------------------------------- generator

@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_makes_valid_puzzles(layout):
    for seed in range(25):
        puzzle = generate(seed, size=SMALL, layout=layout)
        assert puzzle.family == "matrix" and puzzle.layout["kind"] == layout
        assert len(puzzle.panels) == 8 and len(puzzle.candidates) == 8
        assert all(image.shape == (SMALL, SMALL, 3) and image.dtype == np.uint8 for image in puzzle.panels)
        assert np.array_equal(puzzle.answer, puzzle.candidates[puzzle.answer_index])
        assert len({c.tobytes() for c in puzzle.candidates}) == 8, "candidates must all differ as images"
        assert 1 <= puzzle.difficulty <= 5
        assert puzzle.source == {
            "generator": "matrix",
            "version": VERSION,
            "seed": seed,
            "options": {"layout": layout, "style": None, "difficulty": None},
        }
        assert "matrix" in puzzle.tags and f"layout:{layout}" in puzzle.tags
        json.dumps(puzzle.meta)  # packs store the meta as JSON
        _check_rules(puzzle)
        assert solve_from_metadata(puzzle) == puzzle.answer_index


def test_source_options_reproduce_the_puzzle(mixed_puzzles):
    for puzzle in mixed_puzzles[:5]:
        assert puzzle.source["options"] == {"layout": None, "style": None, "difficulty": None}
        again = generate(puzzle.source["seed"], size=SMALL, **puzzle.source["options"])
        assert again.id == puzzle.id


def test_rules_cover_every_kind(mixed_puzzles):
    seen = {(attribute, rule["rule"]) for p in mixed_puzzles for entry in p.meta["rules"].values()
            for attribute, rule in entry.items()}
    for attribute in ("size", "colour", "number", "position"):
        for name in ("constant", "progression", "arithmetic", "distribute_three"):
            assert (attribute, name) in seen, (attribute, name)
    for name in ("constant", "progression", "distribute_three"):
        assert ("type", name) in seen
    assert ("type", "arithmetic") not in seen  # adding shape types has no meaning
    steps = {rule.get("step") for p in mixed_puzzles for e in p.meta["rules"].values() for rule in e.values()}
    assert {-2, -1, 1, 2} <= steps
    assert {p.layout["kind"] for p in mixed_puzzles} == set(LAYOUTS)


def test_same_seed_same_pixels():
    first, second = generate(7, size=48, layout="grid3x3"), generate(7, size=48, layout="grid3x3")
    images = zip(first.panels + first.candidates, second.panels + second.candidates, strict=True)
    assert all(np.array_equal(a, b) for a, b in images)
    assert first.meta == second.meta and first.answer_index == second.answer_index and first.id == second.id
    other = generate(8, size=48, layout="grid3x3")
    assert first.id != other.id


@pytest.mark.parametrize("size", [32, 64, 160])
def test_renders_at_any_size(size):
    puzzle = generate(11, size=size, layout="out_in_grid")
    assert all(image.shape == (size, size, 3) for image in [*puzzle.panels, *puzzle.candidates, puzzle.answer])
    assert puzzle.meta["rules"] == generate(11, size=48, layout="out_in_grid").meta["rules"]


def test_symbolic_solver_scores_100_percent(mixed_puzzles):
    assert all(solve_from_metadata(p) == p.answer_index for p in mixed_puzzles)


def test_solver_does_not_read_the_answer_index(mixed_puzzles):
    puzzle = mixed_puzzles[0]
    truth = puzzle.answer_index
    puzzle.answer_index = None
    try:
        assert solve_from_metadata(puzzle) == truth
    finally:
        puzzle.answer_index = truth


def _most_typical(vectors: np.ndarray) -> int:
    distances = np.abs(vectors[:, None, :] - vectors[None, :, :]).sum(axis=-1)
    return int(distances.sum(axis=1).argmin())


def test_most_typical_candidate_scores_near_chance(mixed_puzzles):
    """The candidates alone must not give the answer away (I-RAVEN style answer sets)."""
    pixel_hits = 0
    for puzzle in mixed_puzzles:
        images = np.stack([c.astype(np.float32).ravel() for c in puzzle.candidates])
        pixel_hits += _most_typical(images) == puzzle.answer_index
        # Symbolically every candidate differs from the others in the same pattern (a cube's corners).
        attributes = [json.dumps(c, sort_keys=True) for c in puzzle.meta["candidates"]]
        assert len(set(attributes)) == 8
    accuracy = pixel_hits / len(mixed_puzzles)
    assert accuracy < 0.25, f"'most typical candidate' guessed {accuracy:.0%} of answers"


def test_attribute_difference_profiles_are_identical(mixed_puzzles):
    for puzzle in mixed_puzzles[:50]:
        flat = [
            [(name, key, json.dumps(value)) for name, cell in sorted(c.items()) for key, value in sorted(cell.items())]
            for c in puzzle.meta["candidates"]
        ]
        differences = [[sum(x != y for x, y in zip(flat[i], flat[j], strict=True)) for j in range(8)] for i in range(8)]
        profiles = {tuple(sorted(row[:i] + row[i + 1 :])) for i, row in enumerate(differences)}
        assert profiles == {(1, 1, 1, 2, 2, 2, 3)}


def test_style_can_be_fixed_and_is_recorded():
    style = {"fill": "outline", "line_width": 0.05, "jitter": 0.0, "scale": 1.0, "rotation": 0.0}
    puzzle = generate(3, size=SMALL, layout="grid2x2", style=style)
    assert puzzle.meta["style"] == style
    assert puzzle.source["options"]["style"] == style
    assert puzzle.meta["rules"]["main"]["colour"] == {"rule": "fixed", "value": 0}
    assert "fill:outline" in puzzle.tags


def test_style_is_drawn_per_puzzle():
    styles = [generate(seed, size=SMALL, layout="left_right").meta["style"] for seed in range(30)]
    assert len({round(s["line_width"], 6) for s in styles}) == 30
    assert {s["fill"] for s in styles} == {"grey", "outline"}
    assert any(s["rotation"] > 0 for s in styles) and any(s["rotation"] == 0 for s in styles)


def test_difficulty_can_be_requested():
    for level in (1, 3, 5):
        assert generate(5, size=SMALL, difficulty=level).difficulty == level
    with pytest.raises(ValueError, match="difficulty 5"):
        generate(5, size=SMALL, layout="center", difficulty=5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layout": "spiral"}, "unknown matrix layout"),
        ({"size": 8}, "size must be"),
        ({"style": {"colour": 1}}, "unknown style keys"),
        ({"style": {"fill": "dotted"}}, "style fill"),
        ({"style": {"line_width": 1.0}}, "line_width"),
        ({"layout": "center", "style": {"fill": "outline"}}, "needs grey fills"),
        ({"difficulty": 9}, "difficulty must be"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(1, **kwargs)


def test_dispatch_through_family_registry():
    puzzle = generate_family("matrix", 4, size=SMALL, layout="up_down")
    assert puzzle.family == "matrix" and puzzle.layout["kind"] == "up_down"
