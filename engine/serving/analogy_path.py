"""The analogy path: a relation scorer that ranks an analogy's candidates beside the LVM.

The LVM's patch codes lose changes that move pixels far (flips, quarter turns, a transpose). A bundle may carry a
pair embedder (engine.analogy_probe): a (before, after) pair of 32 px pictures -> a unit vector for the change
between them. A candidate's relation score is the cosine between its (query, candidate) pair and the mean of the
example pairs, times the manifest's `sharpness`; `Bundle.score` adds `weight` times its log-probabilities over the
candidates to the LVM's (a product of the two, with the weight chosen on held-out analogies). Generation stays with
the LVM.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.serving.matrix_path import Run

MIN_PROMPT, MAX_PROMPT = 3, 7  # one to three example pairs and the query
EMBEDDER_SIZE = 32


def log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.asarray(scores, dtype=np.float64) - np.max(scores)
    return shifted - np.log(np.exp(shifted).sum())


class AnalogyPath:
    """The pair embedder's session and how much its ranking counts beside the LVM's."""

    def __init__(self, embedder: Any, weight: float, sharpness: float, run: Run) -> None:
        self.embedder, self.weight, self.sharpness, self._run = embedder, weight, sharpness, run

    def relation_scores(self, pixels: np.ndarray, n_prompt: int) -> np.ndarray:
        """The prompt's pictures (pairs then the query) and the candidates, (N, 3, 32, 32) in [0, 1] -> each
        candidate's relation logit."""
        examples, query, candidates = pixels[:n_prompt - 1], pixels[n_prompt - 1], pixels[n_prompt:]
        before = np.concatenate([examples[0::2], np.repeat(query[None], len(candidates), 0)]).astype(np.float32)
        after = np.concatenate([examples[1::2], candidates]).astype(np.float32)
        names = [item.name for item in self.embedder.get_inputs()]
        (embedded,) = self._run(self.embedder, {names[0]: before, names[1]: after})
        pairs = len(examples) // 2
        rule = embedded[:pairs].mean(0)
        return self.sharpness * embedded[pairs:] @ rule

    def combine(self, lvm_scores: np.ndarray, pixels: np.ndarray, n_prompt: int) -> np.ndarray:
        """The LVM's scores for the candidates -> the two rankings' log-probabilities added, the path's weighted."""
        return log_softmax(lvm_scores) + self.weight * log_softmax(self.relation_scores(pixels, n_prompt))


def load_analogy_path(directory: Path, manifest: dict[str, Any], open_session: Callable[[Path], Any],
                      run: Run) -> AnalogyPath | None:
    """The bundle's analogy path when its manifest has one
    (`"analogy_path": {"embedder": FILE, "weight": W, "sharpness": S}`)."""
    entry = manifest.get("analogy_path")
    if not entry:
        return None
    if entry.get("embedder") not in manifest["files"]:
        raise ValueError(f"analogy_path embedder {entry.get('embedder')!r} is not one of the bundle's listed files")
    if int(manifest["image_size"]) != EMBEDDER_SIZE:
        raise ValueError(f"analogy_path reads {EMBEDDER_SIZE} px pictures; the bundle's are "
                         f"{manifest['image_size']} px")
    for key in ("weight", "sharpness"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
            raise ValueError(f"analogy_path {key} must be a number in (0, 100], not {value!r}")
    return AnalogyPath(open_session(directory / entry["embedder"]), float(entry["weight"]), float(entry["sharpness"]),
                       run)
