"""The matrix path: a Raven-style matrix answered from its panels' attributes instead of their patch codes.

The LVM sees a panel as 17 codes of 8x8-pixel patches, which lose the type, size and colour a matrix's rules act on
(docs/model-experiments.md, section 31). A bundle may carry two small graphs beside it: a reader (a 32 px picture
-> its layout and, per component, type, size, colour and filled cells) and a reasoner (a small decoder over those
attributes as tokens, trained on the generator's matrices). When a prompt is 8 panels and the reader is sure of
enough of its pictures (the manifest's `sure`: the share of pictures whose every attribute, the layout included,
has at least a given probability), the reasoner ranks the candidates and writes the answer, which is drawn from
its attributes; anything else goes to the LVM. A share rather than every picture: on the generator's matrices an
odd picture is doubtful in one attribute in 3 matrices of 10, while frames, photos or ARC grids put into a matrix
leave most pictures doubtful (docs/model-experiments.md, section 32).

The vocabulary of the attribute sentence lives here, so training (engine.attribute_probe) and serving share it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puzzles.draw import SHAPE_KINDS
from puzzles.matrix_panels import GREY_LEVELS, LAYOUT_COMPONENTS, LAYOUTS, SIZE_LEVELS, draw_state

LEVELS = {"type": len(SHAPE_KINDS), "size": len(SIZE_LEVELS), "colour": len(GREY_LEVELS)}
CELLS = max(len(component.slots) for layout in LAYOUT_COMPONENTS.values() for component in layout)  # 3 x 3 grid
POSITION_SETS = 1 << CELLS  # a component's filled cells, one token for the set
SLOTS = max(len(layout) for layout in LAYOUT_COMPONENTS.values())  # outer/inner, left/right, top/bottom
FIELDS = (*LEVELS, "positions")
PANEL_TOKENS = SLOTS * len(FIELDS)
TYPE0 = 0
SIZE0 = TYPE0 + LEVELS["type"]
COLOUR0 = SIZE0 + LEVELS["size"]
POSITIONS0 = COLOUR0 + LEVELS["colour"]
LAYOUT0 = POSITIONS0 + POSITION_SETS
EMPTY = LAYOUT0 + len(LAYOUTS)
BOS = EMPTY + 1
VOCAB = -(-(BOS + 1) // 8) * 8  # rounded up to a multiple of 8, as the LVM's vocabulary
CONTEXT_PANELS = 8  # a 3 x 3 matrix without its last cell
PROMPT_TOKENS = 2 + CONTEXT_PANELS * PANEL_TOKENS  # BOS, layout, the context panels
FIELD_STARTS = (TYPE0, SIZE0, COLOUR0, POSITIONS0)
HEAD = (*LEVELS.values(), CELLS)  # the reader's outputs per slot: type, size, colour classes, one bit per cell
READER_OUTPUTS = len(LAYOUTS) + SLOTS * sum(HEAD)
READER_SIZE = 32  # the reader's pictures: the generator's matrices at the shipped bundle's panel size


def panel_tokens(panel: dict[str, dict[str, Any]], components: Sequence[str]) -> list[int]:
    """One panel's attributes as tokens: type, size, colour, positions per component slot (EMPTY past the last)."""
    tokens: list[int] = []
    for slot in range(SLOTS):
        if slot >= len(components):
            tokens += [EMPTY] * len(FIELDS)
            continue
        values = panel[components[slot]]
        cells = sum(1 << cell for cell in values["positions"])
        for name, limit in (*LEVELS.items(), ("positions", POSITION_SETS)):
            value = cells if name == "positions" else values[name]
            if not 0 <= value < limit:
                raise ValueError(f"{name} {value} is outside the attribute sentence's {limit} levels")
        tokens += [TYPE0 + values["type"], SIZE0 + values["size"], COLOUR0 + values["colour"], POSITIONS0 + cells]
    return tokens


def panel_state(layout: str, tokens: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Panel tokens -> the generator's state of that layout (component name -> type, size, colour, positions)."""
    state = {}
    for slot, component in enumerate(LAYOUT_COMPONENTS[layout]):
        values = [int(token) - start for token, start in zip(tokens[slot * 4:slot * 4 + 4], FIELD_STARTS, strict=True)]
        state[component.name] = {"type": values[0], "size": values[1], "colour": values[2],
                                 "positions": [cell for cell in range(CELLS) if values[3] >> cell & 1]}
    return state


def answer_token_ranges(layout: str) -> list[tuple[int, int]]:
    """Per answer token, the [start, end) of the tokens that may stand there in this layout (EMPTY past its
    components; a component's filled cells are a non-empty set of its own slots)."""
    ranges = []
    components = LAYOUT_COMPONENTS[layout]
    for slot in range(SLOTS):
        if slot >= len(components):
            ranges += [(EMPTY, EMPTY + 1)] * len(FIELDS)
            continue
        ranges += [(start, start + levels) for start, levels in zip(FIELD_STARTS, LEVELS.values(), strict=False)]
        ranges.append((POSITIONS0 + 1, POSITIONS0 + (1 << len(components[slot].slots))))
    return ranges


@dataclass
class Reading:
    """What the reader read in a set of pictures: one layout, each picture's panel tokens, and how sure it was of
    each picture (the least probability it gave any attribute of it; 0 for a picture of another layout than most,
    or with a component read in no cell)."""

    layout: str
    panels: list[list[int]]
    picture_sureness: list[float]


@dataclass(frozen=True)
class Gate:
    """When the matrix path answers: at least `pictures` of the pictures read with every attribute at least
    `attribute` likely."""

    attribute: float = 0.9
    pictures: float = 0.5

    def passes(self, reading: Any) -> bool:
        """`reading` has `picture_sureness`, one number per picture (a Reading, or the sequence path's)."""
        return float(np.mean(np.array(reading.picture_sureness) >= self.attribute)) >= self.pictures

    @classmethod
    def from_manifest(cls, sure: Any, path: str) -> Gate:
        """The gate a manifest's `path` entry names as `"sure": {"attribute": P, "pictures": SHARE}`."""
        if not isinstance(sure, dict) or set(sure) != {"attribute", "pictures"}:
            raise ValueError(f"{path} sure must be {{\"attribute\": P, \"pictures\": SHARE}}, not {sure!r}")
        for key, low in (("attribute", 0.5), ("pictures", 0.0)):
            value = sure[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= 1:
                raise ValueError(f"{path} sure {key} must be a number in ({low:g}, 1], not {value!r}")
        return cls(float(sure["attribute"]), float(sure["pictures"]))


def _softmax_max(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return logits.argmax(-1), (shifted / shifted.sum(-1, keepdims=True)).max(-1)


def read_outputs(outputs: np.ndarray) -> Reading:
    """The reader's outputs for some pictures -> a Reading in the layout most pictures show."""
    outputs = np.asarray(outputs, dtype=np.float64)
    layouts, sureness = _softmax_max(outputs[:, :len(LAYOUTS)])
    layout = int(np.bincount(layouts, minlength=len(LAYOUTS)).argmax())
    sureness = np.where(layouts == layout, sureness, 0.0)
    slots = outputs[:, len(LAYOUTS):].reshape(len(outputs), SLOTS, sum(HEAD))
    panels = [[EMPTY] * PANEL_TOKENS for _ in outputs]
    for slot, component in enumerate(LAYOUT_COMPONENTS[LAYOUTS[layout]]):
        start = 0
        for field, classes in enumerate(HEAD[:3]):
            values, sure = _softmax_max(slots[:, slot, start:start + classes])
            sureness = np.minimum(sureness, sure)
            for picture, value in enumerate(values):
                panels[picture][slot * 4 + field] = FIELD_STARTS[field] + int(value)
            start += classes
        bits = 1 / (1 + np.exp(-slots[:, slot, start:start + len(component.slots)]))
        sureness = np.minimum(sureness, np.maximum(bits, 1 - bits).min(-1))
        for picture, filled in enumerate(bits > 0.5):
            panels[picture][slot * 4 + 3] = POSITIONS0 + sum(1 << int(cell) for cell in np.flatnonzero(filled))
            if not filled.any():
                sureness[picture] = 0.0
    return Reading(LAYOUTS[layout], panels, [float(value) for value in sureness])


Run = Callable[[Any, dict[str, np.ndarray]], list[np.ndarray]]


class MatrixPath:
    """The reader and reasoner sessions of a bundle, and the rule for when they answer."""

    def __init__(self, reader: Any, reasoner: Any, gate: Gate, image_size: int, run: Run) -> None:
        self.reader, self.reasoner, self.gate, self.image_size, self._run = reader, reasoner, gate, image_size, run

    def read(self, pixels: np.ndarray) -> Reading | None:
        """Pictures as the encoder's input (N, 3, size, size) in [0, 1] -> a Reading the gate passes, or None."""
        (outputs,) = self._run(self.reader, {self.reader.get_inputs()[0].name: pixels.astype(np.float32)})
        reading = read_outputs(outputs)
        return reading if self.gate.passes(reading) else None

    def drawn_reading(self, pixels: np.ndarray) -> list[np.ndarray] | None:
        """Each picture drawn from what the reader read in it (what this path sees), or None past the gate."""
        reading = self.read(pixels)
        if reading is None:
            return None
        return [draw_state(reading.layout, panel_state(reading.layout, panel), self.image_size)
                for panel in reading.panels]

    def prompt(self, reading: Reading) -> list[int]:
        return [BOS, LAYOUT0 + LAYOUTS.index(reading.layout)] + sum(reading.panels[:CONTEXT_PANELS], [])

    def _log_probs(self, rows: np.ndarray) -> np.ndarray:
        """Token rows (B, T) -> log-probabilities of each next token (B, T, VOCAB)."""
        (logits,) = self._run(self.reasoner, {self.reasoner.get_inputs()[0].name: rows.astype(np.int64)})
        shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    def score(self, pixels: np.ndarray) -> np.ndarray | None:
        """8 panels then the candidates -> each candidate's log-likelihood after the panels, or None when the
        reading does not pass the gate."""
        reading = self.read(pixels)
        if reading is None:
            return None
        prompt = self.prompt(reading)
        rows = np.array([prompt + panel for panel in reading.panels[CONTEXT_PANELS:]])
        log_probs = self._log_probs(rows[:, :-1])[:, -PANEL_TOKENS:]
        return np.take_along_axis(log_probs, rows[:, -PANEL_TOKENS:, None], -1)[..., 0].sum(-1)

    def complete(self, pixels: np.ndarray, n_samples: int, temperature: float, seed: int) -> list[np.ndarray] | None:
        """8 panels -> n_samples answers written by the reasoner and drawn from their attributes, or None when the
        reading does not pass the gate. Temperature 0 takes the likeliest token at each step."""
        reading = self.read(pixels)
        if reading is None:
            return None
        rng = np.random.default_rng(seed)
        rows = np.repeat(np.array([self.prompt(reading)]), n_samples, axis=0)
        for start, end in answer_token_ranges(reading.layout):
            logits = self._log_probs(rows)[:, -1, start:end]
            if temperature <= 0:
                picked = logits.argmax(-1)
            else:
                weights = np.exp((logits - logits.max(-1, keepdims=True)) / temperature)
                picked = np.array([rng.choice(len(row), p=row / row.sum()) for row in weights])
            rows = np.concatenate([rows, start + picked[:, None]], axis=1)
        return [draw_state(reading.layout, panel_state(reading.layout, row[-PANEL_TOKENS:]), self.image_size)
                for row in rows]


def load_matrix_path(directory: Path, manifest: dict[str, Any], open_session: Callable[[Path], Any],
                     run: Run) -> MatrixPath | None:
    """The bundle's matrix path when its manifest has one
    (`"matrix_path": {"reader": FILE, "reasoner": FILE, "sure": {"attribute": P, "pictures": SHARE}}`)."""
    entry = manifest.get("matrix_path")
    if not entry:
        return None
    for key in ("reader", "reasoner"):
        if entry.get(key) not in manifest["files"]:
            raise ValueError(f"matrix_path {key} {entry.get(key)!r} is not one of the bundle's listed files")
    if int(manifest["image_size"]) != READER_SIZE:
        raise ValueError(f"matrix_path reads {READER_SIZE} px pictures; the bundle's are {manifest['image_size']} px")
    return MatrixPath(open_session(directory / entry["reader"]), open_session(directory / entry["reasoner"]),
                      Gate.from_manifest(entry.get("sure"), "matrix_path"), int(manifest["image_size"]), run)
