"""Solving: the model's answers to a prompt, the scores of its candidates, and how the app shows them.

Sampling settings (the served bundle's measured defaults), a solve bounded in time, ranking candidates (raw
log-likelihoods and their probabilities among the candidates), the id of the model that answered (and its name
in words, for visitors), and what the model sees of a prompt. The model arrives as an `engine.serving.runtime.Bundle`
(through `app.services`); this module imports no runtime, so pages stay importable without a model.
"""
from __future__ import annotations

import datetime
import hashlib
import html
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from app import prompts

if TYPE_CHECKING:  # the runtime loads onnxruntime: typed here, passed in by the callers
    from engine.serving.runtime import Bundle

MIN_TEMPERATURE = 0.1  # the app always samples (several answers); a greedy manifest setting becomes the coolest one
MAX_GUIDANCE = 5.0  # past this, samples stop answering the prompt (weight 3 already loses: docs/model-experiments.md)
GUIDANCE_CHOICES = (("the model's choice", "auto"), ("off", "0"), ("1", "1"), ("2", "2"), ("3", "3"))


def default_sampling(family: str | None = None) -> SampleSettings:
    """Solve's defaults: the served bundle's sampling settings (its manifest), with the guidance weight of a puzzle
    `family` when one is named (else None: each Solve takes its family's); plain sampling before services start."""
    from app.services import current

    try:
        chosen = current().sampling_defaults(family)
    except RuntimeError:  # no services installed (building the pages alone)
        return SampleSettings(guidance=None if family is None else 0.0)
    return SampleSettings(temperature=max(chosen.temperature, MIN_TEMPERATURE), top_k=chosen.top_k,
                          top_p=chosen.top_p, guidance=None if family is None else chosen.guidance)


@dataclass(frozen=True)
class SampleSettings:
    """Everything that decides a generation, shown with the result so it can be reproduced."""

    n_samples: int = 4
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    seed: int = 0
    guidance: float | None = None  # None: the bundle's weight for the puzzle's family (its manifest's "sampling")

    def __post_init__(self) -> None:
        if not 1 <= self.n_samples <= 16:
            raise ValueError(f"samples must be between 1 and 16, got {self.n_samples}")
        if not 0.0 < self.temperature <= 5.0:
            raise ValueError(f"temperature must be in (0, 5], got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be 0 (off) or positive, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or positive, got {self.seed}")
        if self.guidance is not None and not 0.0 <= self.guidance <= MAX_GUIDANCE:
            raise ValueError(f"guidance must be between 0 (off) and {MAX_GUIDANCE:g}, got {self.guidance}")

    @classmethod
    def from_inputs(cls, n_samples: Any, temperature: Any, top_k: Any, top_p: Any, seed: Any,
                    guidance: Any = None) -> SampleSettings:
        """From UI values (numbers may come as floats or None); seed -1 or empty picks a random seed; guidance None,
        empty or "auto" takes the bundle's weight for the puzzle's family."""
        raw_seed = -1 if seed in (None, "") else int(seed)
        chosen = default_sampling()
        return cls(
            n_samples=int(n_samples if n_samples is not None else 4),
            temperature=float(temperature if temperature is not None else chosen.temperature),
            top_k=int(top_k if top_k is not None else chosen.top_k),
            top_p=float(top_p if top_p is not None else chosen.top_p),
            seed=random.randrange(2**31) if raw_seed < 0 else raw_seed,
            guidance=_guidance(guidance),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _guidance(value: Any) -> float | None:
    """A guidance weight from a UI or API value: None, empty or "auto" leave it to the model (None)."""
    if value in (None, "", "auto"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"guidance must be a number or 'auto', got {value!r}") from None


@dataclass
class SolveResult:
    samples: list[np.ndarray]
    settings: SampleSettings
    bundle_id: str
    scores: list[float] = field(default_factory=list)  # one per candidate, higher = more likely
    pick: int | None = None  # index of the best-scoring candidate
    model_name: str = ""  # the model in words, for visitors (model_name()); bundle_id names it exactly
    from_attributes: bool = False  # the samples came from the bundle's matrix or sequence path, not the visual sentence

    def settings_markdown(self) -> str:
        """The settings line under the samples; the bundle's exact id is a tooltip on the model's name, not jargon."""
        s = self.settings
        exact = html.escape(f"bundle {self.bundle_id}", quote=True)
        model = f'<span title="{exact}">{html.escape(self.model_name or self.bundle_id)}</span>'
        guidance = f"{s.guidance:g}" if s.guidance else "off"
        if self.from_attributes:  # the matrix and sequence paths sample at the temperature alone
            return (f"**Settings used** — model {model}, samples {s.n_samples}, temperature {s.temperature:g}, "
                    f"seed {s.seed}; answered from what a reader saw in each picture (its shapes, sizes, colours "
                    "and places), drawn in a plain style")
        return (
            f"**Settings used** — model {model}, samples {s.n_samples}, temperature {s.temperature:g}, "
            f"top-k {s.top_k or 'off'}, top-p {s.top_p:g}, guidance {guidance}, seed {s.seed}"
        )


ProgressFn = Callable[[float, str], None]
SOLVE_TIME_LIMIT_S = 120.0  # one solve (generation + ranking) may take this long before it is stopped


class SolveTimeout(RuntimeError):
    """A model call ran past its time limit."""


def with_deadline(progress: ProgressFn | None, seconds: float) -> ProgressFn:
    """A progress callback that also stops the call (SolveTimeout) once `seconds` have passed.

    The runtime reports progress after every generated token, so the check runs often enough to matter.
    """
    import time

    deadline = time.monotonic() + seconds

    def report(fraction: float, message: str) -> None:
        if time.monotonic() > deadline:
            raise SolveTimeout(f"the model took longer than {seconds:g} s and was stopped; try fewer samples "
                               "or a shorter prompt")
        if progress is not None:
            progress(fraction, message)

    return report


def _to_images(batch: Any) -> list[np.ndarray]:
    """A runtime's image output (list of arrays or one (N, H, W, 3) array) -> list of uint8 arrays."""
    return [np.ascontiguousarray(np.asarray(image, dtype=np.uint8)) for image in batch]


def solve(
    bundle: Bundle, images: Sequence[np.ndarray], settings: SampleSettings, candidates: Sequence[np.ndarray] = (),
    progress: ProgressFn | None = None, family: str | None = None,
) -> SolveResult:
    """Generate `settings.n_samples` answers in one batch (guided as the bundle guides a `family` puzzle's unless the
    settings say); also rank the candidates (as a `family` puzzle's, see `rank`) when there are any.

    The whole call is bounded by SOLVE_TIME_LIMIT_S: past it, SolveTimeout (a RuntimeError) at the next step.
    """
    progress = with_deadline(progress, SOLVE_TIME_LIMIT_S)
    if settings.guidance is None:
        settings = replace(settings, guidance=bundle.sampling_for(family).guidance)
    samples = bundle.complete(
        list(images),
        n_samples=settings.n_samples,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        seed=settings.seed,
        progress=progress,
        guidance=settings.guidance,
        family=family,
    )
    result = SolveResult(samples=_to_images(samples), settings=settings, bundle_id=bundle_id(bundle),
                         model_name=model_name(bundle),
                         from_attributes=bundle.answers_from_attributes(list(images), family))
    if candidates:
        result.scores = rank(bundle, images, candidates, progress, family)
        result.pick = int(np.argmax(result.scores))
    return result


def rank(
    bundle: Bundle, images: Sequence[np.ndarray], candidates: Sequence[np.ndarray], progress: ProgressFn | None = None,
    family: str | None = None,
) -> list[float]:
    """One score per candidate (the model's log-likelihood of it following the prompt, under the bundle's scoring
    rule for the puzzle's family)."""
    if not candidates:
        raise ValueError("there are no candidates to rank")
    prompts.check_candidate_count(len(candidates))  # callers with files count them before reading them too
    scores = bundle.score(list(images), list(candidates), progress=progress, family=family)
    return [float(score) for score in np.asarray(scores, dtype=np.float64).reshape(-1)]


RANKING_ROLES = ("answer", "pick", "other")  # one colour each in the chart, whatever the puzzle


def candidate_probabilities(scores: Sequence[float]) -> list[float]:
    """Each candidate's probability among the candidates (softmax of the log-likelihoods), summing to 1.

    Raw log-likelihoods are large negative numbers that differ by a few units, so they read as equal bars.
    """
    values = np.asarray(scores, dtype=np.float64)
    weights = np.exp(values - values.max())
    return [float(weight) for weight in weights / weights.sum()]


def ranking_rows(scores: Sequence[float], pick: int | None, answer_index: int | None = None) -> list[dict[str, Any]]:
    """Rows for the ranking chart: candidate number, probability, raw score, role and whether the model picked it.

    The role decides the colour: the right answer, else the model's (wrong) pick, else another candidate.
    """
    rows = []
    for index, (score, probability) in enumerate(zip(scores, candidate_probabilities(scores), strict=True)):
        role = "answer" if index == answer_index else "pick" if index == pick else "other"
        rows.append({"candidate": index + 1, "probability": probability, "score": float(score), "role": role,
                     "picked": index == pick})
    return rows


def _manifest(bundle: Bundle) -> Mapping[str, Any]:
    manifest = getattr(bundle, "manifest", None) or {}
    return manifest if isinstance(manifest, Mapping) else getattr(manifest, "__dict__", {})


def bundle_id(bundle: Bundle) -> str:
    """A short id naming the model that produced an output: manifest name + version, or else a hash of its files and
    of the rules it answers by (its sampling defaults, scoring rules, its matrix, sequence and analogy paths), so
    that the same weights answering by new rules get a new id: the bank ranks its puzzles again and remembered answers
    are made afresh."""
    manifest = _manifest(bundle)
    name = str(manifest.get("name") or "bundle")
    tag = manifest.get("version") or manifest.get("id") or ""
    if not tag:
        files = manifest.get("files") or manifest.get("sha256") or {}
        answers_by = {key: manifest.get(key)
                      for key in ("sampling", "scoring", "matrix_path", "sequence_path", "analogy_path")}
        digest = hashlib.sha256(json.dumps([files, answers_by], sort_keys=True, default=str).encode())
        tag = digest.hexdigest()[:8]
    return f"{name}@{tag}"


def model_name(bundle: Bundle) -> str:
    """The model as a visitor reads it: the bundle's name and the day it was made, e.g. "default (trained 27 Nov
    2026)". Programs and stored results use bundle_id, which tells apart two bundles of one name."""
    manifest = _manifest(bundle)
    name = str(manifest.get("name") or "bundle")
    try:
        made = datetime.datetime.fromisoformat(str(manifest["created"]))
    except (KeyError, TypeError, ValueError):  # an older or hand-made manifest: the name alone
        return name
    return f"{name} (trained {made.day} {made:%b %Y})"


def what_the_model_sees(bundle: Bundle, images: Sequence[np.ndarray],
                        family: str | None = None) -> list[tuple[np.ndarray, str]]:
    """Each input after resizing to the model's size and a tokenizer round trip, captioned; a matrix the bundle's
    matrix path answers, or a sequence of one object its sequence path reads: each picture drawn from what the
    path's reader read."""
    if not images:
        raise ValueError("put at least one image into the prompt first")
    read = bundle.read_as_attributes(list(images), family)
    if read is not None:
        return [(image, f"input {index + 1}, as read") for index, image in enumerate(_to_images(read))]
    round_tripped = _to_images(bundle.roundtrip(list(images)))
    return [(image, f"input {index + 1}") for index, image in enumerate(round_tripped)]
