"""Visual sentences: how a puzzle's images become one token sequence (numpy only; the runtime imports it).

Vocabulary: codebook codes 0..K-1, then BOS = K and EOS = K+1; the model's vocabulary is padded up to a
multiple of 8 (the padding ids are never produced by data and are masked when sampling image tokens).
A sentence is BOS, then the codes of each image in order (a fixed h*w per image, so image boundaries are
implicit), then EOS when the sentence is complete (training) — an inference prompt stops after the last
context image and the model continues with the answer's codes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

VOCAB_MULTIPLE = 8
# Most images per family (the answer included): matrix 8 cells + answer, analogy up to 3 example pairs +
# query + answer, sequence up to 8 frames + the next one. Grid keeps as many (in, out) pairs as fit.
FAMILY_MAX_IMAGES = {"matrix": 9, "analogy": 8, "sequence": 9}


@dataclass(frozen=True)
class Vocabulary:
    codebook_size: int = 1024  # K: number of image codes
    tokens_per_image: int = 64  # h * w of the tokenizer's code grid

    def __post_init__(self) -> None:
        if self.codebook_size <= 0 or self.tokens_per_image <= 0:
            raise ValueError(f"codebook_size and tokens_per_image must be positive, got {self}")

    @property
    def bos(self) -> int:
        return self.codebook_size

    @property
    def eos(self) -> int:
        return self.codebook_size + 1

    @property
    def vocab_size(self) -> int:
        """Model vocabulary: codes + BOS + EOS, padded up to a multiple of VOCAB_MULTIPLE."""
        used = self.codebook_size + 2
        return -(-used // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bos": self.bos, "eos": self.eos, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Vocabulary:
        vocab = cls(int(values["codebook_size"]), int(values["tokens_per_image"]))
        for key in ("bos", "eos", "vocab_size"):
            if key in values and int(values[key]) != getattr(vocab, key):
                raise ValueError(f"vocabulary {key}={values[key]} disagrees with the derived {getattr(vocab, key)}")
        return vocab


def sentence_length(n_images: int, vocab: Vocabulary, complete: bool = False) -> int:
    """Tokens in a sentence of n images: BOS + n * tokens_per_image (+ EOS)."""
    return 1 + n_images * vocab.tokens_per_image + int(complete)


def max_images(context_length: int, vocab: Vocabulary, complete: bool = True) -> int:
    """Most whole images a sentence can hold within the context (answer included)."""
    count = (context_length - 1 - int(complete)) // vocab.tokens_per_image
    if count < 2:
        raise ValueError(f"context {context_length} holds {count} images of {vocab.tokens_per_image} tokens; need 2+")
    return count


def build_sentence(code_rows: list[np.ndarray], vocab: Vocabulary, complete: bool = False) -> np.ndarray:
    """BOS + the codes of each image in order (+ EOS when complete) -> int64 array (L,)."""
    parts = [np.array([vocab.bos], dtype=np.int64)]
    for index, codes in enumerate(code_rows):
        codes = np.asarray(codes).reshape(-1)
        if codes.size != vocab.tokens_per_image:
            raise ValueError(f"image {index} has {codes.size} codes; expected {vocab.tokens_per_image}")
        if codes.size and (codes.min() < 0 or codes.max() >= vocab.codebook_size):
            raise ValueError(f"image {index} has codes outside [0, {vocab.codebook_size})")
        parts.append(codes.astype(np.int64))
    if complete:
        parts.append(np.array([vocab.eos], dtype=np.int64))
    return np.concatenate(parts)


def image_span(index: int, vocab: Vocabulary) -> slice:
    """Positions of the index-th image's codes inside a sentence."""
    start = 1 + index * vocab.tokens_per_image
    return slice(start, start + vocab.tokens_per_image)


def split_sentence(sentence: np.ndarray, vocab: Vocabulary) -> list[np.ndarray]:
    """A sentence (with or without EOS) -> code rows (tokens_per_image,) for each whole image."""
    sentence = np.asarray(sentence).reshape(-1)
    if sentence.size == 0 or sentence[0] != vocab.bos:
        raise ValueError("a sentence must start with BOS")
    body = sentence[1:]
    if body.size and body[-1] == vocab.eos:
        body = body[:-1]
    if body.size % vocab.tokens_per_image:
        raise ValueError(f"sentence body of {body.size} tokens is not whole images of {vocab.tokens_per_image}")
    if body.size and body.max() >= vocab.codebook_size:
        raise ValueError("sentence holds special tokens between images")
    return list(body.reshape(-1, vocab.tokens_per_image))


def select_panels(family: str, n_panels: int, limit: int, layout: dict[str, Any] | None = None) -> list[int]:
    """Which panel indices go into the sentence so that panels + the answer fit `limit` images.

    limit counts the answer slot. matrix/sequence keep the most recent panels (a sequence's last frames),
    analogy and grid keep whole example pairs (dropping the earliest) and always the query panel.
    """
    if n_panels < 1:
        raise ValueError("a puzzle needs at least one panel")
    limit = min(limit, FAMILY_MAX_IMAGES.get(family, limit))
    room = limit - 1  # the answer takes one slot
    if room < 1:
        raise ValueError(f"limit {limit} leaves no room for context panels")
    if n_panels <= room:
        return list(range(n_panels))
    if family in ("analogy", "grid"):
        if n_panels % 2 != 1:
            raise ValueError(f"{family} puzzles have (in, out) pairs plus a query: got {n_panels} panels")
        pairs = (room - 1) // 2
        if pairs < 1:
            raise ValueError(f"limit {limit} cannot hold one {family} example pair plus the query and answer")
        first = n_panels - 1 - 2 * pairs
        return list(range(first, n_panels))
    return list(range(n_panels - room, n_panels))


def puzzle_code_rows(
    family: str, panel_codes: list[np.ndarray], limit: int, answer_codes: np.ndarray | None = None
) -> list[np.ndarray]:
    """Code rows of the panels that fit (see select_panels), then the answer's when given."""
    keep = select_panels(family, len(panel_codes), limit)
    rows = [panel_codes[index] for index in keep]
    return rows + ([answer_codes] if answer_codes is not None else [])
