"""Raven-style 3x3 matrices: eight cells follow row-wise rules, the ninth is missing.

A layout is made of components (one centred shape, a grid of slots, an outer frame, ...). Each component
has attributes - number/position (grids only), shape type, size, colour - and every attribute follows one
row-wise rule over level indices:

- constant: the three cells of a row share the value;
- progression: the value steps by +-1 or +-2 along the row;
- arithmetic: third = first + second, or first - second (sizes and colours count levels from 0, so the
  second cell is at least level 1 to make a visible change; positions use set union and difference);
- distribute_three: three values, each row a rotation of the same three.

The eight candidates come from an I-RAVEN style tree: three attributes are picked, and at each of three
levels every candidate is split into itself and a copy with that attribute set to one new value. All
candidates then sit at the corners of a cube with the answer at one corner, so every candidate has the
same profile of differences to the others and "the candidate most like the rest" is a coin toss. The
meta records every rule and the attributes of every panel and candidate; `solve_from_metadata` uses them.

Rendering style (line width, outline-only shapes, position jitter, global scale, rotation) is drawn per
puzzle from the seed unless given, and is the same for every cell of one puzzle.
"""
from __future__ import annotations

import random
from itertools import combinations
from typing import Any

from puzzles.draw import SHAPE_KINDS, render
from puzzles.matrix_panels import GREY_LEVELS, LAYOUT_COMPONENTS, LAYOUTS, SIZE_LEVELS, Component, State, panel_shapes
from puzzles.puzzle import Puzzle

VERSION = "1.0.0"
RULE_NAMES = ("constant", "progression", "arithmetic", "distribute_three")
STYLE_KEYS = ("line_width", "fill", "jitter", "scale", "rotation")
STYLE_RANGES = {"line_width": (0.005, 0.08), "jitter": (0.0, 0.03), "scale": (0.8, 1.1), "rotation": (0.0, 180.0)}
FILL_MODES = ("grey", "outline")
MAX_DIFFICULTY_TRIES = 500
MAX_CANDIDATE_TRIES = 10
LAYOUT_COST = {"center": 0, "grid2x2": 1, "grid3x3": 2, "left_right": 1, "up_down": 1, "out_in": 1, "out_in_grid": 2}

Rules = dict[str, dict[str, dict[str, Any]]]  # component name -> attribute -> {"rule": ..., params}


# ----------------------------------------------------------------------------- rules

def _value_range(component: Component, attribute: str) -> tuple[int, int]:
    if attribute == "type":
        return component.types[0], component.types[-1]
    if attribute == "size":
        return 0, len(SIZE_LEVELS) - 1
    if attribute == "colour":
        return 0, len(GREY_LEVELS) - 1
    return 1, len(component.slots)  # number


def _arithmetic_pairs(low: int, high: int, op: str) -> list[tuple[int, int]]:
    """(first, second) pairs whose result stays in range; both >= 1 so the row visibly changes."""
    pairs = []
    for first in range(max(low, 1), high + 1):
        for second in range(max(low, 1), high + 1):
            result = first + second if op == "add" else first - second
            if low <= result <= high:
                pairs.append((first, second))
    return pairs


def _scalar_rule_options(attribute: str, low: int, high: int) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = [{"rule": "constant"}]
    options += [{"rule": "progression", "step": s} for s in (-2, -1, 1, 2) if 2 * abs(s) <= high - low]
    if attribute != "type":
        options += [{"rule": "arithmetic", "op": op} for op in ("add", "subtract") if _arithmetic_pairs(low, high, op)]
    if high - low >= 2:
        options.append({"rule": "distribute_three"})
    return options


def _pick_rule(rng: random.Random, options: list[dict[str, Any]]) -> dict[str, Any]:
    """Rule name uniformly first, then its parameter, so rules with many parameters are not favoured."""
    name = rng.choice(sorted({option["rule"] for option in options}))
    return dict(rng.choice([option for option in options if option["rule"] == name]))


def _position_rule_options() -> list[dict[str, Any]]:
    return (
        [{"rule": "constant"}]
        + [{"rule": "progression", "step": s} for s in (-2, -1, 1, 2)]
        + [{"rule": "arithmetic", "op": op} for op in ("add", "subtract")]
        + [{"rule": "distribute_three"}]
    )


def _sample_rules(rng: random.Random, layout: str, fill: str) -> Rules:
    rules: Rules = {}
    for component in LAYOUT_COMPONENTS[layout]:
        entry: dict[str, dict[str, Any]] = {}
        if component.role == "outer":
            low, high = _value_range(component, "type")
            # The frame mostly stays put: constant, sometimes a simple progression or distribute-three.
            entry["type"] = {"rule": "constant"} if rng.random() < 0.6 else _pick_rule(
                rng, [o for o in _scalar_rule_options("type", low, high) if o["rule"] != "constant"]
            )
            entry["size"] = {"rule": "fixed", "value": len(SIZE_LEVELS) - 1}
            entry["colour"] = {"rule": "fixed", "value": 0}
        else:
            if component.role == "grid":
                if rng.random() < 0.5:
                    options = _scalar_rule_options("number", *_value_range(component, "number"))
                    entry["number"] = _pick_rule(rng, options)
                    entry["position"] = {"rule": "random"}
                else:
                    entry["number"] = {"rule": "by_position"}
                    entry["position"] = _pick_rule(rng, _position_rule_options())
            for attribute in ("type", "size", "colour"):
                if attribute == "colour" and fill == "outline":
                    entry[attribute] = {"rule": "fixed", "value": 0}
                    continue
                entry[attribute] = _pick_rule(rng, _scalar_rule_options(attribute, *_value_range(component, attribute)))
        rules[component.name] = entry
    return rules


def _rule_cost(rule: dict[str, Any]) -> float:
    name = rule["rule"]
    if name == "progression":
        return 1.0 if abs(rule["step"]) == 1 else 1.5
    return {"distribute_three": 1.5, "arithmetic": 2.0}.get(name, 0.0)


def difficulty_of(layout: str, rules: Rules) -> int:
    """1..5 from the layout's clutter plus the cost of every non-constant rule."""
    score = LAYOUT_COST[layout] + sum(_rule_cost(rule) for entry in rules.values() for rule in entry.values())
    return int(min(5, 1 + score // 2.5))


# ----------------------------------------------------------------------------- rows of values

def _scalar_rows(rng: random.Random, rule: dict[str, Any], low: int, high: int) -> list[list[int]]:
    """Three rows of three level indices obeying the rule; rows are drawn independently except distribute-three."""
    name = rule["rule"]
    if name == "fixed":
        return [[rule["value"]] * 3 for _ in range(3)]
    if name == "constant":
        return [[value] * 3 for value in (rng.randint(low, high) for _ in range(3))]
    if name == "progression":
        step = rule["step"]
        starts = range(low - min(0, 2 * step), high - max(0, 2 * step) + 1)
        return [[start + k * step for k in range(3)] for start in (rng.choice(starts) for _ in range(3))]
    if name == "arithmetic":
        pairs = _arithmetic_pairs(low, high, rule["op"])
        sign = 1 if rule["op"] == "add" else -1
        return [[a, b, a + sign * b] for a, b in (rng.choice(pairs) for _ in range(3))]
    if name == "distribute_three":
        values = rng.sample(range(low, high + 1), 3)
        shift = rng.choice((1, 2))
        return [[values[(col + row * shift) % 3] for col in range(3)] for row in range(3)]
    raise ValueError(f"unknown rule {name!r}")


def _random_subset(rng: random.Random, slots: int, count: int | None = None) -> frozenset[int]:
    return frozenset(rng.sample(range(slots), count if count is not None else rng.randint(1, slots)))


def _shift(positions: frozenset[int], step: int, slots: int) -> frozenset[int]:
    return frozenset((p + step) % slots for p in positions)


def _position_row(rng: random.Random, rule: dict[str, Any], slots: int) -> list[frozenset[int]]:
    name = rule["rule"]
    while True:  # rejection sampling; every branch succeeds with high probability
        if name == "constant":
            return [_random_subset(rng, slots)] * 3
        if name == "progression":
            first = _random_subset(rng, slots, rng.randint(1, slots - 1))
            row = [_shift(first, k * rule["step"], slots) for k in range(3)]
            if row[1] != row[0]:
                return row
        elif name == "arithmetic":
            first, second = _random_subset(rng, slots), _random_subset(rng, slots)
            if rule["op"] == "add" and not (first <= second or second <= first):
                return [first, second, first | second]
            if rule["op"] == "subtract" and first & second and first - second:
                return [first, second, first - second]
        else:
            raise ValueError(f"unknown position rule {name!r}")


def _position_rows(rng: random.Random, rule: dict[str, Any], slots: int) -> list[list[frozenset[int]]]:
    if rule["rule"] != "distribute_three":
        return [_position_row(rng, rule, slots) for _ in range(3)]
    count = rng.randint(1, slots - 1)
    subsets = rng.sample([frozenset(c) for c in combinations(range(slots), count)], 3)
    shift = rng.choice((1, 2))
    return [[subsets[(col + row * shift) % 3] for col in range(3)] for row in range(3)]


def _component_rows(rng: random.Random, component: Component, rules: dict[str, dict[str, Any]]) -> list[dict]:
    """The nine cells (row-major) of one component as attribute dicts."""
    cells: list[dict[str, Any]] = [{} for _ in range(9)]
    for attribute in ("type", "size", "colour"):
        rows = _scalar_rows(rng, rules[attribute], *_value_range(component, attribute))
        for index in range(9):
            cells[index][attribute] = rows[index // 3][index % 3]
    slots = len(component.slots)
    if component.role != "grid":
        position_rows = [[frozenset({0})] * 3] * 3
    elif rules["number"]["rule"] == "by_position":
        position_rows = _position_rows(rng, rules["position"], slots)
    else:  # the number follows the rule, positions are free
        counts = _scalar_rows(rng, rules["number"], 1, slots)
        position_rows = [[_random_subset(rng, slots, n) for n in row] for row in counts]
    for index in range(9):
        cells[index]["positions"] = position_rows[index // 3][index % 3]
    return cells


# ----------------------------------------------------------------------------- candidates

def _modifiable(layout: str, rules: Rules) -> list[tuple[str, str]]:
    """(component, attribute) pairs a wrong candidate may change; a change always breaks that attribute's rule."""
    pairs = []
    for component in LAYOUT_COMPONENTS[layout]:
        for attribute, rule in rules[component.name].items():
            if rule["rule"] not in ("fixed", "random", "by_position"):
                pairs.append((component.name, attribute))
            elif attribute == "number" and rule["rule"] == "by_position":
                pairs.append((component.name, "position"))
    return sorted(set(pairs))


def _new_value(rng: random.Random, component: Component, attribute: str, current: Any) -> Any:
    slots = len(component.slots)
    if attribute == "number":
        count = rng.choice([n for n in range(1, slots + 1) if n != len(current)])
        return _random_subset(rng, slots, count)
    if attribute == "position":
        count = len(current) if len(current) < slots else rng.randint(1, slots - 1)
        while True:
            positions = _random_subset(rng, slots, count)
            if positions != current:
                return positions
    low, high = _value_range(component, attribute)
    return rng.choice([v for v in range(low, high + 1) if v != current])


def _candidate_tree(rng: random.Random, layout: str, rules: Rules, answer: State) -> tuple[list[State], list]:
    """Eight states on the corners of a cube around the answer (index 0 before shuffling)."""
    components = {c.name: c for c in LAYOUT_COMPONENTS[layout]}
    chosen = rng.sample(_modifiable(layout, rules), 3)
    candidates = [answer]
    for name, attribute in chosen:
        key = "positions" if attribute in ("number", "position") else attribute
        value = _new_value(rng, components[name], attribute, answer[name][key])
        candidates += [{**state, name: {**state[name], key: value}} for state in candidates]
    return candidates, [list(pair) for pair in chosen]


# ----------------------------------------------------------------------------- style and drawing

def _check_style(style: dict[str, Any]) -> None:
    unknown = set(style) - set(STYLE_KEYS)
    if unknown:
        raise ValueError(f"unknown style keys {sorted(unknown)}; expected some of {', '.join(STYLE_KEYS)}")
    if "fill" in style and style["fill"] not in FILL_MODES:
        raise ValueError(f"style fill must be one of {', '.join(FILL_MODES)}, got {style['fill']!r}")
    for key, (low, high) in STYLE_RANGES.items():
        if key in style and not (isinstance(style[key], int | float) and low <= style[key] <= high):
            raise ValueError(f"style {key} must be a number in [{low}, {high}], got {style[key]!r}")


def _draw_style(rng: random.Random, given: dict[str, Any], fill: str) -> dict[str, Any]:
    """Fill in every style key not given; the draws happen in a fixed order so seeds stay reproducible."""
    drawn = {
        "line_width": rng.uniform(0.015, 0.045),
        "fill": fill,
        "jitter": 0.0 if rng.random() < 0.3 else rng.uniform(0.004, 0.012),
        "scale": rng.uniform(0.88, 1.05),
        "rotation": 0.0 if rng.random() < 0.6 else rng.uniform(10.0, 180.0),
    }
    return {key: given.get(key, value) for key, value in drawn.items()}


def _placements(rng: random.Random, layout: str, style: dict[str, Any]) -> dict[tuple[str, int], tuple]:
    """Per slot (dx, dy, rotation), fixed for the whole puzzle so they never tell candidates apart."""
    table = {}
    for component in LAYOUT_COMPONENTS[layout]:
        for slot in range(len(component.slots)):
            dx, dy = (rng.uniform(-style["jitter"], style["jitter"]) for _ in range(2))
            table[(component.name, slot)] = (dx, dy, rng.uniform(-style["rotation"], style["rotation"]))
    return table


def _as_meta(state: State) -> dict[str, dict[str, Any]]:
    return {name: {**cell, "positions": sorted(cell["positions"])} for name, cell in state.items()}


# ----------------------------------------------------------------------------- public API

def _check_options(seed: int, size: int, layout: str | None, difficulty: int | None) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown matrix layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if difficulty is not None and difficulty not in range(1, 6):
        raise ValueError(f"difficulty must be an integer 1..5 or None, got {difficulty!r}")


def _choose_structure(
    rng: random.Random, layout: str | None, fill: str | None, difficulty: int | None
) -> tuple[str, str, Rules]:
    """Layout, fill mode and rules; redrawn until the difficulty matches when one is asked for."""
    if fill == "outline" and layout == "center":
        raise ValueError("layout 'center' needs grey fills: with outline-only shapes it has too few attributes")
    for _ in range(MAX_DIFFICULTY_TRIES):
        chosen_layout = layout or rng.choice(LAYOUTS if fill != "outline" else LAYOUTS[1:])
        chosen_fill = fill or ("outline" if chosen_layout != "center" and rng.random() < 0.2 else "grey")
        rules = _sample_rules(rng, chosen_layout, chosen_fill)
        if difficulty is None or difficulty_of(chosen_layout, rules) == difficulty:
            return chosen_layout, chosen_fill, rules
    raise ValueError(f"no matrix of difficulty {difficulty} found for layout {layout or 'any'}; try another level")


def generate(
    seed: int,
    size: int = 64,
    layout: str | None = None,
    style: dict[str, Any] | None = None,
    difficulty: int | None = None,
) -> Puzzle:
    """A Raven-style matrix: 8 context cells row-major, the answer, 8 candidates; deterministic by seed.

    layout: one of LAYOUTS, or None to draw one. style: any of STYLE_KEYS to fix (line_width, fill
    "grey"|"outline", jitter, scale, rotation); the rest is drawn from the seed. difficulty: 1..5 to ask
    for a level (rules are redrawn until they match), or None.
    """
    _check_options(seed, size, layout, difficulty)
    given_style = dict(style or {})
    _check_style(given_style)
    options = {"layout": layout, "style": dict(style) if style is not None else None, "difficulty": difficulty}
    rng = random.Random(seed)
    layout, fill, rules = _choose_structure(rng, layout, given_style.get("fill"), difficulty)
    resolved_style = _draw_style(rng, given_style, fill)

    components = LAYOUT_COMPONENTS[layout]
    per_component = {c.name: _component_rows(rng, c, rules[c.name]) for c in components}
    cells: list[State] = [{c.name: per_component[c.name][i] for c in components} for i in range(9)]
    placements = _placements(rng, layout, resolved_style)
    panel_images = [render(panel_shapes(layout, cell, resolved_style, placements), size) for cell in cells[:8]]
    for _ in range(MAX_CANDIDATE_TRIES):  # tiny sizes can hide a change (e.g. the fill of a small triangle)
        tree, changed = _candidate_tree(rng, layout, rules, cells[8])
        order = list(range(8))
        rng.shuffle(order)
        candidates = [tree[i] for i in order]
        candidate_images = [render(panel_shapes(layout, cell, resolved_style, placements), size) for cell in candidates]
        if len({image.tobytes() for image in candidate_images}) == 8:
            break
    else:
        raise RuntimeError(f"matrix seed {seed}: candidates keep rendering alike at size {size}")
    answer_index = order.index(0)

    return Puzzle(
        family="matrix",
        panels=panel_images,
        answer=candidate_images[answer_index].copy(),
        candidates=candidate_images,
        answer_index=answer_index,
        title=f"Matrix ({layout.replace('_', ' ')})",
        layout={"kind": layout, "rows": 3, "cols": 3},
        tags=_tags(layout, rules, resolved_style),
        difficulty=difficulty_of(layout, rules),
        source={"generator": "matrix", "version": VERSION, "seed": seed, "options": options},
        meta={
            "layout": layout,
            "components": [c.name for c in components],
            "rules": rules,
            "panels": [_as_meta(cell) for cell in cells[:8]],
            "candidates": [_as_meta(cell) for cell in candidates],
            "candidate_changes": changed,
            "style": resolved_style,
            "levels": {"type": list(SHAPE_KINDS), "size": list(SIZE_LEVELS), "colour": list(GREY_LEVELS)},
        },
    )


def _tags(layout: str, rules: Rules, style: dict[str, Any]) -> list[str]:
    used = sorted({rule["rule"] for entry in rules.values() for rule in entry.values()} & set(RULE_NAMES))
    return ["matrix", f"layout:{layout}", *(f"rule:{name}" for name in used), f"fill:{style['fill']}"]


# ----------------------------------------------------------------------------- symbolic solver

def _attribute_value(cell: dict[str, Any], attribute: str) -> Any:
    if attribute == "number":
        return len(cell["positions"])
    if attribute == "position":
        return frozenset(cell["positions"])
    return cell[attribute]


def _predict(rule: dict[str, Any], attribute: str, cells: list[Any], slots: int) -> Any:
    """The ninth cell's value from the eight known ones (row-major); None when the rule leaves it free."""
    name = rule["rule"]
    if name in ("random", "by_position"):
        return None
    if name == "fixed":
        return rule["value"]
    if name == "constant":
        return cells[6]
    if name == "progression":
        return _shift(cells[7], rule["step"], slots) if attribute == "position" else cells[7] + rule["step"]
    if name == "arithmetic":
        if attribute == "position":
            return cells[6] | cells[7] if rule["op"] == "add" else cells[6] - cells[7]
        return cells[6] + cells[7] if rule["op"] == "add" else cells[6] - cells[7]
    if name == "distribute_three":
        missing = [value for value in cells[0:3] if value not in (cells[6], cells[7])]
        if len(missing) != 1:
            raise ValueError(f"distribute-three rows of {attribute} do not leave exactly one value")
        return missing[0]
    raise ValueError(f"unknown rule {name!r} for {attribute}")


def solve_from_metadata(puzzle: Puzzle) -> int:
    """Index of the candidate that completes every rule, read from the meta of the 8 cells and the candidates.

    Uses neither the answer image nor answer_index; raises when no candidate or several fit.
    """
    meta = puzzle.meta
    if puzzle.family != "matrix" or "rules" not in meta:
        raise ValueError("solve_from_metadata needs a matrix puzzle with rules in its meta")
    slots = {c.name: len(c.slots) for c in LAYOUT_COMPONENTS[meta["layout"]]}
    fitting = list(range(len(meta["candidates"])))
    for name, attributes in meta["rules"].items():
        for attribute, rule in attributes.items():
            known = [_attribute_value(panel[name], attribute) for panel in meta["panels"]]
            expected = _predict(rule, attribute, known, slots[name])
            if expected is not None:
                fitting = [i for i in fitting if _attribute_value(meta["candidates"][i][name], attribute) == expected]
    if len(fitting) != 1:
        raise ValueError(f"{len(fitting)} candidates fit the rules; expected exactly one")
    return fitting[0]
