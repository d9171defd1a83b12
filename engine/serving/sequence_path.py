"""The sequence path: a sequence's candidates ranked from what each frame shows instead of its patch codes.

The sequence generator's frames are one object (or a count of them on a lattice) on a flat background that moves,
turns, grows, shrinks, changes colour or multiplies from frame to frame. The LVM's 17 codes of 8x8-pixel patches
blur where a small object stands, and its weakest kinds are exactly the moving ones (bounce 33%, translate 57% on
the card's held-out sequences). A bundle may carry two small graphs for them: a reader (a 32 px frame -> shape,
colour, background, how many objects, where their centre is, how large and how turned) and a reasoner (a small
decoder over those attributes as tokens, trained on the generator's sequences). When the family is "sequence" and
the reader is sure of enough frames (the manifest's `sure`, as for the matrix path), the reasoner ranks the
candidates by the log-likelihood of their attributes after the frames', and writes the next frame's attributes,
drawn as a plain frame, where the frames show one object (a count of them names their mean centre, not where each
one stands, so it cannot be drawn); anything else goes to the LVM.

The vocabulary lives here, so training (engine.sequence_probe) and serving share it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.serving.matrix_path import Gate, Run
from puzzles.scenes import BACKGROUND_COLOURS, SHAPES, STRONG_COLOURS, render

MAX_COUNT = 16  # the count_up kind's 4 x 4 lattice
POSITION_BINS = 64  # the centre's x and y, each in [0, 1)
SIZE_BINS = 64  # the radius, in [0, 0.5)
ANGLE_BINS = 24  # 15 degrees each: every turn the generator makes is a multiple of 15
CLASSES = {"shape": len(SHAPES), "colour": len(STRONG_COLOURS), "background": len(BACKGROUND_COLOURS),
           "count": MAX_COUNT + 1}
LEVELS = {**CLASSES, "x": POSITION_BINS, "y": POSITION_BINS, "r": SIZE_BINS, "angle": ANGLE_BINS}
FIELD_STARTS = dict(zip(LEVELS, np.cumsum([0, *LEVELS.values()])[:-1].tolist(), strict=True))
FRAME_TOKENS = len(LEVELS)
BOS = sum(LEVELS.values())
PAD = BOS + 1  # after a shorter sequence's last frame in training rows; never scored
VOCAB = -(-(PAD + 1) // 8) * 8
MIN_FRAMES, MAX_FRAMES = 3, 8  # the generator's prompt lengths; other prompts go to the LVM
SENTENCE = 1 + (MAX_FRAMES + 1) * FRAME_TOKENS  # BOS, the frames, the answer
TOLERATED = ("x", "y", "r", "angle")  # read to within a level: a candidate scores the mass of its level and the next
REGRESSED = ("x", "y", "r", "sin", "cos")  # the reader's last outputs; the classes' logits come first
READER_OUTPUTS = sum(CLASSES.values()) + len(REGRESSED)
READER_SIZE = 32


@dataclass(frozen=True)
class FrameState:
    """What one frame shows: indices into the scene palettes and shapes, and continuous placement."""

    shape: int
    colour: int
    background: int
    count: int
    x: float  # the objects' mean centre, as a fraction of the frame
    y: float
    r: float  # the objects' mean radius
    angle: float  # degrees counterclockwise (0 for the shapes the generator never turns)


def frame_tokens(state: FrameState) -> list[int]:
    """One frame's attributes as FRAME_TOKENS tokens."""
    values = {"shape": state.shape, "colour": state.colour, "background": state.background, "count": state.count,
              "x": math.floor(state.x * POSITION_BINS), "y": math.floor(state.y * POSITION_BINS),
              "r": math.floor(state.r / 0.5 * SIZE_BINS), "angle": round(state.angle % 360 / 15) % ANGLE_BINS}
    tokens = []
    for name, value in values.items():
        if name in CLASSES and not 0 <= value < LEVELS[name]:
            raise ValueError(f"{name} {value} is outside the sequence sentence's {LEVELS[name]} levels")
        tokens.append(FIELD_STARTS[name] + min(max(int(value), 0), LEVELS[name] - 1))
    return tokens


@dataclass
class FrameReading:
    """What the reader read in some pictures: each picture's frame tokens, and how sure it was of each picture
    (the least probability it gave its shape, colour, background or count)."""

    frames: list[list[int]]
    picture_sureness: list[float]


def read_outputs(outputs: np.ndarray) -> FrameReading:
    """The reader's outputs for some pictures -> their frame tokens and sureness."""
    outputs = np.asarray(outputs, dtype=np.float64)
    picked, start = {}, 0
    sureness = np.ones(len(outputs))
    for name, classes in CLASSES.items():
        logits = outputs[:, start:start + classes]
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        picked[name] = logits.argmax(-1)
        sureness = np.minimum(sureness, (weights / weights.sum(-1, keepdims=True)).max(-1))
        start += classes
    x, y, r, sin, cos = outputs[:, start:start + len(REGRESSED)].T
    angles = np.degrees(np.arctan2(sin, cos))
    frames = [frame_tokens(FrameState(int(picked["shape"][i]), int(picked["colour"][i]),
                                      int(picked["background"][i]), int(picked["count"][i]),
                                      float(x[i]), float(y[i]), float(r[i]), float(angles[i])))
              for i in range(len(outputs))]
    return FrameReading(frames, [float(value) for value in sureness])


def _neighbours() -> np.ndarray:
    """Per token, the 3 tokens its likelihood sums: itself and, in a tolerated field, the levels either side (a
    turn's levels come round; past a position's or size's end stands VOCAB, a token of no probability)."""
    table = np.full((VOCAB, 3), VOCAB)
    table[:, 0] = np.arange(VOCAB)
    for name in TOLERATED:
        start, levels = FIELD_STARTS[name], LEVELS[name]
        for level in range(levels):
            for column, side in ((1, level - 1), (2, level + 1)):
                if name == "angle" or 0 <= side < levels:
                    table[start + level, column] = start + side % levels
    return table


NEIGHBOURS = _neighbours()


def candidate_log_likelihoods(log_probs: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Log-probabilities (C, FRAME_TOKENS, VOCAB) of each candidate's frame tokens (C, FRAME_TOKENS) -> each
    candidate's log-likelihood, a tolerated field counting the probability of its level and its neighbours' (a
    reader places an object to within a level, not exactly: docs/model-experiments.md, section 33)."""
    probs = np.concatenate([np.exp(log_probs), np.zeros((*log_probs.shape[:2], 1))], -1)
    mass = np.take_along_axis(probs, NEIGHBOURS[frames], -1).sum(-1)
    return np.log(np.maximum(mass, 1e-300)).sum(-1)


class SequencePath:
    """The reader and reasoner sessions of a bundle, and the rule for when they rank a sequence's candidates."""

    def __init__(self, reader: Any, reasoner: Any, gate: Gate, run: Run) -> None:
        self.reader, self.reasoner, self.gate, self._run = reader, reasoner, gate, run

    def read(self, pixels: np.ndarray) -> FrameReading | None:
        """Pictures (N, 3, 32, 32) in [0, 1] -> a FrameReading the gate passes, or None."""
        (outputs,) = self._run(self.reader, {self.reader.get_inputs()[0].name: pixels.astype(np.float32)})
        reading = read_outputs(outputs)
        return reading if self.gate.passes(reading) else None

    def drawable(self, pixels: np.ndarray) -> FrameReading | None:
        """The frames' reading where the gate passes it and the last frame shows one object (what can be drawn)."""
        reading = self.read(pixels)
        one = FIELD_STARTS["count"] + 1
        return reading if reading is not None and reading.frames[-1][list(LEVELS).index("count")] == one else None

    def drawn_reading(self, pixels: np.ndarray, size: int) -> list[np.ndarray] | None:
        """Each frame drawn from what the reader read in it (what this path sees), where the gate passes the
        reading and every frame shows one object; otherwise None."""
        reading = self.read(pixels)
        count = list(LEVELS).index("count")
        if reading is None or any(frame[count] != FIELD_STARTS["count"] + 1 for frame in reading.frames):
            return None
        return [draw_frame(frame, size) for frame in reading.frames]

    def complete(self, pixels: np.ndarray, n_samples: int, temperature: float, seed: int,
                 size: int) -> list[np.ndarray] | None:
        """The frames -> n_samples next frames written by the reasoner and drawn at `size`, or None where
        `drawable` is not. Temperature 0 takes the likeliest level of each attribute; the count stays one."""
        reading = self.drawable(pixels)
        if reading is None:
            return None
        rng = np.random.default_rng(seed)
        rows = np.repeat(np.array([[BOS] + sum(reading.frames, [])], dtype=np.int64), n_samples, axis=0)
        for name, levels in LEVELS.items():
            start = FIELD_STARTS[name]
            if name == "count":
                picked = np.ones(n_samples, dtype=np.int64)
            else:
                (logits,) = self._run(self.reasoner, {self.reasoner.get_inputs()[0].name: rows})
                field = logits[:, -1, start:start + levels].astype(np.float64)
                if temperature <= 0:
                    picked = field.argmax(-1)
                else:
                    weights = np.exp((field - field.max(-1, keepdims=True)) / temperature)
                    picked = np.array([rng.choice(levels, p=row / row.sum()) for row in weights])
            rows = np.concatenate([rows, start + picked[:, None]], axis=1)
        return [draw_frame(row[-FRAME_TOKENS:], size) for row in rows]

    def score(self, pixels: np.ndarray, n_frames: int) -> np.ndarray | None:
        """n_frames frames then the candidates -> each candidate's log-likelihood after the frames, or None when
        the reading does not pass the gate."""
        reading = self.read(pixels)
        if reading is None:
            return None
        prompt = [BOS] + sum(reading.frames[:n_frames], [])
        rows = np.array([prompt + frame for frame in reading.frames[n_frames:]], dtype=np.int64)
        (logits,) = self._run(self.reasoner, {self.reasoner.get_inputs()[0].name: rows[:, :-1]})
        shifted = logits[:, -FRAME_TOKENS:].astype(np.float64)
        shifted = shifted - shifted.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return candidate_log_likelihoods(log_probs, rows[:, -FRAME_TOKENS:])


def draw_frame(tokens: Sequence[int], size: int) -> np.ndarray:
    """A frame of one object drawn from its tokens (each level at its middle), as the generator draws frames."""
    level = {name: int(token) - FIELD_STARTS[name] for name, token in zip(LEVELS, tokens, strict=True)}
    shape = {"shape": SHAPES[level["shape"]], "colour": list(STRONG_COLOURS[level["colour"]]),
             "cx": (level["x"] + 0.5) / POSITION_BINS, "cy": (level["y"] + 0.5) / POSITION_BINS,
             "r": (level["r"] + 0.5) / SIZE_BINS * 0.5, "angle": 15.0 * level["angle"]}
    background = {"pattern": "flat", "colours": [list(BACKGROUND_COLOURS[level["background"]])]}
    return render({"kind": "shapes", "background": background, "objects": [shape]}, size)


def load_sequence_path(directory: Path, manifest: dict[str, Any], open_session: Callable[[Path], Any],
                       run: Run) -> SequencePath | None:
    """The bundle's sequence path when its manifest has one
    (`"sequence_path": {"reader": FILE, "reasoner": FILE, "sure": {"attribute": P, "pictures": SHARE}}`)."""
    entry = manifest.get("sequence_path")
    if not entry:
        return None
    for key in ("reader", "reasoner"):
        if entry.get(key) not in manifest["files"]:
            raise ValueError(f"sequence_path {key} {entry.get(key)!r} is not one of the bundle's listed files")
    if int(manifest["image_size"]) != READER_SIZE:
        raise ValueError(f"sequence_path reads {READER_SIZE} px pictures; the bundle's are {manifest['image_size']} px")
    gate = Gate.from_manifest(entry.get("sure"), "sequence_path")
    return SequencePath(open_session(directory / entry["reader"]), open_session(directory / entry["reasoner"]), gate,
                        run)
