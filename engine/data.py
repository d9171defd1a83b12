"""Streaming training data: fresh generated puzzles, a weighted mixture over families, training seeds only.

Every DataLoader worker of every DDP rank streams its own seeds: the n-th puzzle of worker w on rank r
uses seed base + (n * world_size + r) * workers + w, so no two streams ever share a puzzle, and every seed
is checked against the held-out evaluation range. Workers return uint8 image stacks; tokenization runs
batched in the main process on the training device.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from engine.serving.sentences import select_panels
from puzzles.generators import GENERATOR_FAMILIES, generate, variant_options
from puzzles.images import to_square
from puzzles.puzzle import Puzzle
from puzzles.seeds import check_training_seed

logger = logging.getLogger(__name__)

DEFAULT_MIX = "matrix=4,analogy=2,sequence=2,grid=1"


def parse_mix(text: str) -> dict[str, float]:
    """'matrix=4,analogy=2' -> {'matrix': 4.0, 'analogy': 2.0}; an entry may name one variant of a family
    ('matrix:center=1': centred matrices only, for a curriculum). Unknown entries or bad weights are refused."""
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        entry, sep, weight = item.partition("=")
        entry = entry.strip()
        if not sep:
            raise ValueError(f"mixture entry {item!r} is not family=weight")
        mix_entry(entry)  # refuses an unknown family or variant
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"weight {weight!r} for {entry} is not a number") from None
        if value < 0:
            raise ValueError(f"weight for {entry} must be >= 0, got {value}")
        mix[entry] = value
    if not mix or sum(mix.values()) <= 0:
        raise ValueError(f"mixture {text!r} has no family with a positive weight")
    return {entry: weight for entry, weight in mix.items() if weight > 0}


def mix_entry(entry: str) -> tuple[str, dict[str, str]]:
    """'matrix:center' -> ('matrix', {'layout': 'center'}); 'analogy' -> ('analogy', {})."""
    family, _, variant = entry.partition(":")
    if family not in GENERATOR_FAMILIES:
        raise ValueError(f"unknown family {family!r} in mixture; choose from {', '.join(GENERATOR_FAMILIES)}")
    return family, variant_options(family, variant or None)


def mix_families(mix: dict[str, float]) -> list[str]:
    """The families a mixture draws from, each once, in order ('matrix:center', 'matrix' -> 'matrix')."""
    return list(dict.fromkeys(mix_entry(entry)[0] for entry in mix))


def puzzle_config(puzzle: Puzzle) -> str:
    """The configuration evaluation reports per family: matrix layout, analogy transform, sequence kind."""
    if puzzle.family == "matrix":
        return str(puzzle.layout.get("kind", "matrix"))
    if puzzle.family == "analogy":
        return str(puzzle.meta.get("transform", "analogy"))
    if puzzle.family == "sequence":
        return str(puzzle.meta.get("kind", "sequence"))
    return puzzle.family


def sentence_images(puzzle: Puzzle, limit: int, size: int) -> np.ndarray:
    """The panels that fit plus the answer, resized, as uint8 (n, size, size, 3)."""
    if puzzle.answer is None:
        raise ValueError(f"puzzle {puzzle.id} has no answer to train on")
    keep = select_panels(puzzle.family, len(puzzle.panels), limit)
    images = [puzzle.panels[index] for index in keep] + [puzzle.answer]
    return np.stack([to_square(image, size) for image in images])


SYMMETRIES = 8  # the square's symmetries: quarter turns k = s % 4, then a left-right flip when s >= 4


def turn_and_flip(array: np.ndarray, symmetry: int) -> np.ndarray:
    """One of the 8 square symmetries of an (H, W, ...) array (a panel, or a grid of a panel's codes)."""
    turned = np.rot90(array, k=symmetry % 4, axes=(0, 1))
    return turned[:, ::-1] if symmetry >= 4 else turned


def augment(images: np.ndarray, rng: random.Random) -> np.ndarray:
    """One random symmetry of the 8 applied to every image of a stack (n, H, W, 3)."""
    symmetry = rng.randrange(4) + (4 if rng.random() < 0.5 else 0)
    return np.ascontiguousarray(np.stack([turn_and_flip(image, symmetry) for image in images]))


@dataclass
class StreamConfig:
    mix: dict[str, float]  # mixture entry (family or family:variant) -> weight
    image_size: int = 64  # images are resized to this square
    max_images: int = 9  # images per sentence, answer included
    base_seed: int = 0  # first training seed
    rank: int = 0  # DDP rank of this process
    world_size: int = 1  # DDP world size
    candidates: bool = False  # also yield each puzzle's candidates and answer index (multiple-choice loss)


class PuzzleStream(IterableDataset):
    """Endless puzzles; yields `sample(puzzle)` for each (override for other uses)."""

    def __init__(self, config: StreamConfig) -> None:
        super().__init__()
        self.config = config
        check_training_seed(config.base_seed)
        self.entries = list(config.mix)
        self.weights = [config.mix[entry] for entry in self.entries]

    def seeds(self) -> Iterator[int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        config = self.config
        counter = 0
        while True:
            stream = counter * config.world_size + config.rank
            yield check_training_seed(config.base_seed + stream * workers + worker)
            counter += 1

    def entry_for(self, seed: int) -> str:
        """The mixture entry ('matrix', 'matrix:center') a seed draws from."""
        return random.Random(seed).choices(self.entries, weights=self.weights)[0]

    def puzzle_for(self, seed: int, size: int | None = None) -> Puzzle:
        family, options = mix_entry(self.entry_for(seed))
        return generate(family, seed, size=size or self.config.image_size, **options)

    def __iter__(self) -> Iterator[Any]:
        for seed in self.seeds():
            try:
                puzzle = self.puzzle_for(seed)
            except Exception:  # a generator bug on one seed must not stop a long run
                logger.exception("generator %s failed on seed %d; skipping it", self.entry_for(seed), seed)
                continue
            yield from self.samples(puzzle, seed)

    def samples(self, puzzle: Puzzle, seed: int) -> Iterator[Any]:
        sample = {"images": sentence_images(puzzle, self.config.max_images, self.config.image_size),
                  "family": puzzle.family, "config": puzzle_config(puzzle), "seed": seed}
        if self.config.candidates and puzzle.candidates and puzzle.answer_index is not None:
            sample["candidates"] = np.stack([to_square(image, self.config.image_size) for image in puzzle.candidates])
            sample["answer_index"] = puzzle.answer_index
        yield sample


class ImageStream(PuzzleStream):
    """Single images for tokenizer training: every panel, answer and candidate, randomly flipped/rotated.

    A shuffle buffer mixes images of many puzzles, so one batch is not a handful of near-identical panels.
    """

    buffer_size = 512

    def __iter__(self) -> Iterator[Any]:
        rng = random.Random(self.config.base_seed + 7919 * self.config.rank)
        buffer: list[torch.Tensor] = []
        for image in super().__iter__():
            if len(buffer) < self.buffer_size:
                buffer.append(image)
                continue
            index = rng.randrange(self.buffer_size)
            yield buffer[index]
            buffer[index] = image

    def samples(self, puzzle: Puzzle, seed: int) -> Iterator[Any]:
        rng = random.Random(seed)
        images = [*puzzle.panels, *([puzzle.answer] if puzzle.answer is not None else []), *puzzle.candidates]
        rng.shuffle(images)
        for image in images:
            square = to_square(image, self.config.image_size)[None]
            yield torch.from_numpy(augment(square, rng)[0].copy()).permute(2, 0, 1).float() / 255.0  # (3, H, W)


def keep_list(batch: list[Any]) -> list[Any]:
    """Collate function that keeps samples as a list (sentences differ in length)."""
    return batch


def make_loader(
    dataset: IterableDataset, batch_size: int, workers: int, collate: bool = True
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=None if collate else keep_list,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=False,
    )
