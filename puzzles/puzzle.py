"""The one in-memory shape of a puzzle, shared by generators, packs, the bank, training and evaluation."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAMILIES = ("analogy", "sequence", "matrix", "grid", "free")
MAX_CANDIDATES = 16  # the most candidates a puzzle or a ranking takes: each one costs the model a scoring run


def image_hash(image: np.ndarray) -> str:
    """sha256 of an image's canonical PNG bytes (the content address used by packs and the bank)."""
    from puzzles.images import png_bytes  # local import keeps this module light

    return hashlib.sha256(png_bytes(image)).hexdigest()


@dataclass
class Puzzle:
    """A visual sentence with its answer: panels in order, the answer is the next image.

    Images are uint8 RGB arrays of shape (H, W, 3).
    """

    family: str  # analogy | sequence | matrix | grid | free
    panels: list[np.ndarray]  # the prompt, in sentence order (matrix: 8 cells row-major)
    answer: np.ndarray | None = None
    candidates: list[np.ndarray] = field(default_factory=list)  # usually 8, the answer among them
    answer_index: int | None = None  # index of the answer in candidates
    title: str = ""
    layout: dict[str, Any] = field(default_factory=dict)  # hints for display, e.g. {"pairs": 2}
    tags: list[str] = field(default_factory=list)
    difficulty: int = 1  # 1 (easy) .. 5 (hard)
    source: dict[str, Any] = field(default_factory=dict)  # generator/version/seed/options or importer/original id
    license: str = "CC0-1.0"
    meta: dict[str, Any] = field(default_factory=dict)  # why the answer is right (rules, transform, ...)
    id: str = ""  # stable id; derived from content when empty

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        if not self.id:
            self.id = self.content_id()

    def content_id(self) -> str:
        """16 hex digits from the family and the pixels of every image, so equal puzzles share an id.

        Hashes raw pixels rather than PNG bytes: generators stream puzzles for training and PNG encoding
        would dominate their cost.
        """
        digest = hashlib.sha256(self.family.encode())
        for image in [*self.panels, *([self.answer] if self.answer is not None else []), *self.candidates]:
            array = np.ascontiguousarray(image, dtype=np.uint8)
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]
