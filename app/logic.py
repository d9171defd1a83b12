"""Plain functions behind the pages: prompt layouts, solving, ratings, attempts, the challenge.

Nothing here builds UI. Handlers in app/pages/ call these with plain values (numpy images, ids) so each
step can be tested without a browser. The model and the bank arrive through `app.services.Services`.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app import keys
from puzzles.images import png_bytes, to_rgb_array

log = logging.getLogger(__name__)

LAYOUTS = ("analogy", "sequence", "matrix")
MAX_PAIRS = 3
MAX_FRAMES = 8
MATRIX_CELLS = 8
ANALOGY_SLOTS = tuple(slot for k in range(1, MAX_PAIRS + 1) for slot in (f"slot-a{k}", f"slot-a{k}p")) + ("slot-b",)
SEQUENCE_SLOTS = tuple(f"seq-{k}" for k in range(1, MAX_FRAMES + 1))
MATRIX_SLOTS = tuple(f"cell-{k}" for k in range(1, MATRIX_CELLS + 1))
ALL_SLOTS = ANALOGY_SLOTS + SEQUENCE_SLOTS + MATRIX_SLOTS
CHALLENGE_SIZE = 12
RAVEN_HUMAN_ACCURACY = 84.4  # Zhang et al. 2019, RAVEN: average human accuracy (%)


def slot_label(slot: str) -> str:
    """What a slot box shows above it, e.g. slot-a2p -> A2', seq-3 -> frame 3, cell-5 -> row 2, col 2."""
    if slot == "slot-b":
        return "B"
    if slot.startswith("slot-a"):
        number = slot[len("slot-a"):]
        return f"A{number[:-1]}'" if number.endswith("p") else f"A{number}"
    if slot.startswith("seq-"):
        return f"frame {slot[4:]}"
    if slot.startswith("cell-"):
        index = int(slot[5:]) - 1
        return f"row {index // 3 + 1}, col {index % 3 + 1}"
    raise ValueError(f"unknown slot {slot!r}")


def as_image(value: Any) -> np.ndarray | None:
    """Whatever a slot holds (None, numpy array, PIL image, file path) -> uint8 RGB array or None."""
    if value is None:
        return None
    from PIL import Image

    if isinstance(value, (np.ndarray, Image.Image)):
        return to_rgb_array(value)
    if isinstance(value, (tuple, list)) and value:  # gallery items come as (path, caption)
        return as_image(value[0])
    if isinstance(value, dict) and ("path" in value or "image" in value):
        return as_image(value.get("path") or value.get("image"))
    from app.uploads import read_upload_file

    return read_upload_file(str(value))  # a file: read with the upload checks, so a bad one is named


def build_sentence(layout: str, slots: Mapping[str, Any], pairs: int = 1) -> list[np.ndarray]:
    """The prompt images in sentence order for a layout, checking that every needed slot is filled.

    analogy: A1, A1', ..., Ak, Ak', B (k = pairs); sequence: the filled frames 1..n, no gaps;
    matrix: the 8 cells row-major.
    """
    images = {slot: as_image(slots.get(slot)) for slot in ALL_SLOTS}
    if layout == "analogy":
        if not 1 <= int(pairs) <= MAX_PAIRS:
            raise ValueError(f"an analogy has 1 to {MAX_PAIRS} example pairs, not {pairs}")
        names = [name for k in range(1, int(pairs) + 1) for name in (f"slot-a{k}", f"slot-a{k}p")] + ["slot-b"]
        missing = [slot_label(name) for name in names if images[name] is None]
        if missing:
            raise ValueError(f"fill every analogy slot first; empty: {', '.join(missing)}")
        return [images[name] for name in names]
    if layout == "sequence":
        filled = [images[name] for name in SEQUENCE_SLOTS]
        count = next((i for i, image in enumerate(filled) if image is None), len(filled))
        if any(image is not None for image in filled[count:]):
            raise ValueError(f"frames must be filled in order without gaps; frame {count + 1} is empty")
        if count < 2:
            raise ValueError("a sequence needs at least 2 frames")
        return filled[:count]
    if layout == "matrix":
        missing = [slot_label(name) for name in MATRIX_SLOTS if images[name] is None]
        if missing:
            raise ValueError(f"fill all 8 matrix cells first; empty: {', '.join(missing)}")
        return [images[name] for name in MATRIX_SLOTS]
    raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")


def slots_from_puzzle(
    family: str, panels: Sequence[np.ndarray], layout: Mapping[str, Any] | None = None
) -> tuple[str, int, dict[str, np.ndarray | None]]:
    """Where a puzzle's panels go: (play layout, analogy pairs, slot -> image); other slots empty. An ARC task with
    more example pairs than Play holds keeps its first MAX_PAIRS pairs and its test input."""
    slots: dict[str, np.ndarray | None] = {slot: None for slot in ALL_SLOTS}
    panels = list(panels)
    if family == "grid" and len(panels) > 2 * MAX_PAIRS + 1:  # in/out pairs + test input: keep what Play holds
        panels = panels[: 2 * MAX_PAIRS] + panels[-1:]
    if family == "matrix":
        if len(panels) != MATRIX_CELLS:
            raise ValueError(f"a matrix puzzle has 8 panels, this one has {len(panels)}")
        slots.update(zip(MATRIX_SLOTS, panels, strict=True))
        return "matrix", 1, slots
    if family in ("analogy", "grid") and len(panels) % 2 == 1 and 3 <= len(panels) <= 2 * MAX_PAIRS + 1:
        pairs = (len(panels) - 1) // 2
        names = [name for k in range(1, pairs + 1) for name in (f"slot-a{k}", f"slot-a{k}p")] + ["slot-b"]
        slots.update(zip(names, panels, strict=True))
        return "analogy", pairs, slots
    if 2 <= len(panels) <= MAX_FRAMES:
        slots.update(zip(SEQUENCE_SLOTS, panels, strict=False))
        return "sequence", 1, slots
    raise ValueError(f"a {family} puzzle with {len(panels)} panels does not fit the play layouts")


MIN_TEMPERATURE = 0.1  # the app always samples (several answers); a greedy manifest setting becomes the coolest one


def default_sampling() -> SampleSettings:
    """Solve's defaults: the served bundle's sampling settings (its manifest), plain sampling before services start."""
    from app.services import current

    try:
        chosen = current().sampling_defaults()
    except RuntimeError:  # no services installed (building the pages alone)
        return SampleSettings()
    return SampleSettings(temperature=max(chosen.temperature, MIN_TEMPERATURE), top_k=chosen.top_k,
                          top_p=chosen.top_p)


@dataclass(frozen=True)
class SampleSettings:
    """Everything that decides a generation, shown with the result so it can be reproduced."""

    n_samples: int = 4
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    seed: int = 0

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

    @classmethod
    def from_inputs(cls, n_samples: Any, temperature: Any, top_k: Any, top_p: Any, seed: Any) -> SampleSettings:
        """From UI values (numbers may come as floats or None); seed -1 or empty picks a random seed."""
        raw_seed = -1 if seed in (None, "") else int(seed)
        chosen = default_sampling()
        return cls(
            n_samples=int(n_samples if n_samples is not None else 4),
            temperature=float(temperature if temperature is not None else chosen.temperature),
            top_k=int(top_k if top_k is not None else chosen.top_k),
            top_p=float(top_p if top_p is not None else chosen.top_p),
            seed=random.randrange(2**31) if raw_seed < 0 else raw_seed,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SolveResult:
    samples: list[np.ndarray]
    settings: SampleSettings
    bundle_id: str
    scores: list[float] = field(default_factory=list)  # one per candidate, higher = more likely
    pick: int | None = None  # index of the best-scoring candidate

    def settings_markdown(self) -> str:
        s = self.settings
        return (
            f"**Settings used** — bundle `{self.bundle_id}`, samples {s.n_samples}, temperature {s.temperature:g}, "
            f"top-k {s.top_k or 'off'}, top-p {s.top_p:g}, seed {s.seed}"
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
    bundle: Any, images: Sequence[np.ndarray], settings: SampleSettings, candidates: Sequence[np.ndarray] = (),
    progress: ProgressFn | None = None,
) -> SolveResult:
    """Generate `settings.n_samples` answers in one batch; also rank the candidates when there are any.

    The whole call is bounded by SOLVE_TIME_LIMIT_S: past it, SolveTimeout (a RuntimeError) at the next step.
    """
    progress = with_deadline(progress, SOLVE_TIME_LIMIT_S)
    samples = bundle.complete(
        list(images),
        n_samples=settings.n_samples,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        seed=settings.seed,
        progress=progress,
    )
    result = SolveResult(samples=_to_images(samples), settings=settings, bundle_id=bundle_id(bundle))
    if candidates:
        result.scores = rank(bundle, images, candidates, progress)
        result.pick = int(np.argmax(result.scores))
    return result


def rank(
    bundle: Any, images: Sequence[np.ndarray], candidates: Sequence[np.ndarray], progress: ProgressFn | None = None
) -> list[float]:
    """One score per candidate (the model's log-likelihood of it following the prompt)."""
    if not candidates:
        raise ValueError("there are no candidates to rank")
    scores = bundle.score(list(images), list(candidates), progress=progress)
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


def bundle_id(bundle: Any) -> str:
    """A short id naming the model that produced an output: manifest name + version/hash when present."""
    manifest = getattr(bundle, "manifest", None) or {}
    if not isinstance(manifest, Mapping):
        manifest = getattr(manifest, "__dict__", {})
    name = str(manifest.get("name") or "bundle")
    tag = manifest.get("version") or manifest.get("id") or ""
    if not tag:
        files = manifest.get("files") or manifest.get("sha256") or {}
        digest = hashlib.sha256(repr(sorted(files.items()) if isinstance(files, Mapping) else files).encode())
        tag = digest.hexdigest()[:8]
    return f"{name}@{tag}"


def what_the_model_sees(bundle: Any, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    """Each input after resizing to the model's size and a tokenizer round trip, captioned."""
    if not images:
        raise ValueError("put at least one image into the prompt first")
    round_tripped = _to_images(bundle.roundtrip(list(images)))
    return [(image, f"input {index + 1}") for index, image in enumerate(round_tripped)]


# Visitor ids are issued by the server and signed, so a caller cannot pick an id (to write as someone else, or
# to dodge the per-visitor rate limits with made-up ids). The key is $GELATO_VISITOR_SECRET or the file
# `visitor_secret` in the data dir (app.keys), so ids stay valid across restarts and on every replica.
VISITOR_SECRET_ENV = "GELATO_VISITOR_SECRET"
VISITOR_SECRET_FILE = "visitor_secret"
_VISITOR_RANDOM_HEX = 32
_VISITOR_SIGNATURE_HEX = 16
_visitor_key: bytes | None = None


def install_visitor_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> None:
    """Sign visitor ids with $GELATO_VISITOR_SECRET, else <data_dir>/visitor_secret (created when missing)."""
    global _visitor_key
    _visitor_key = keys.load_secret(data_dir, VISITOR_SECRET_ENV, VISITOR_SECRET_FILE, environ)


def _current_visitor_key() -> bytes:
    global _visitor_key
    if _visitor_key is None:  # no server installed one (a script, a test): the environment, else this process's own
        _visitor_key = os.environ.get(VISITOR_SECRET_ENV, "").encode() or secrets.token_bytes(32)
    return _visitor_key


def _visitor_signature(random_part: str) -> str:
    digest = hmac.new(_current_visitor_key(), random_part.encode(), hashlib.sha256).hexdigest()
    return digest[:_VISITOR_SIGNATURE_HEX]


def new_visitor_id() -> str:
    random_part = uuid.uuid4().hex
    return random_part + _visitor_signature(random_part)


def is_visitor_id(value: Any) -> bool:
    """Whether `value` is an id this server issued (right length, hex, valid signature)."""
    if not isinstance(value, str) or len(value) != _VISITOR_RANDOM_HEX + _VISITOR_SIGNATURE_HEX:
        return False
    if any(ch not in "0123456789abcdef" for ch in value):
        return False
    random_part, signature = value[:_VISITOR_RANDOM_HEX], value[_VISITOR_RANDOM_HEX:]
    return hmac.compare_digest(signature, _visitor_signature(random_part))


def ensure_visitor_id(value: Any) -> str:
    """The visitor id kept in the browser, or a fresh one when it is missing, malformed or not ours."""
    return value if is_visitor_id(value) else new_visitor_id()


def image_hash(image: np.ndarray) -> str:
    return hashlib.sha256(png_bytes(image)).hexdigest()


def pick_challenge(
    puzzles: Sequence[Mapping[str, Any]], size: int = CHALLENGE_SIZE, seed: int | None = None
) -> list[str]:
    """Up to `size` matrix puzzle ids of rising difficulty, spread over the difficulty levels on offer."""
    matrices = [p for p in puzzles if p.get("family") == "matrix" and p.get("candidates_count", 8)]
    if not matrices:
        raise ValueError("the bank has no published matrix puzzles for a challenge")
    rng = random.Random(seed)
    shuffled = list(matrices)
    rng.shuffle(shuffled)
    by_level: dict[int, list[Mapping[str, Any]]] = {}
    for puzzle in shuffled:
        by_level.setdefault(int(puzzle.get("difficulty") or 1), []).append(puzzle)
    chosen: list[Mapping[str, Any]] = []
    while len(chosen) < size and any(by_level.values()):
        for level in sorted(by_level):  # round robin over levels keeps the spread even
            if by_level[level] and len(chosen) < size:
                chosen.append(by_level[level].pop())
    chosen.sort(key=lambda p: (int(p.get("difficulty") or 1), str(p.get("id"))))
    return [str(p["id"]) for p in chosen]


@dataclass
class ChallengeScore:
    answered: int
    correct: int
    model_correct: int
    seconds: float

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.answered if self.answered else 0.0

    @property
    def model_percent(self) -> float:
        return 100.0 * self.model_correct / self.answered if self.answered else 0.0

    def markdown(self) -> str:
        return (
            "| | accuracy |\n|---|---|\n"
            f"| You | {self.correct}/{self.answered} = {self.percent:.1f}% in {self.seconds:.0f} s |\n"
            f"| The model, same puzzles | {self.model_correct}/{self.answered} = {self.model_percent:.1f}% |\n"
            f"| People on RAVEN (published average) | {RAVEN_HUMAN_ACCURACY}% |\n"
            "| Chance (8 choices) | 12.5% |\n"
        )


# --- the bank, seen from the pages (ids and plain values in, plain values out) ----------------------------------

PER_PAGE = 12
GAVE_UP = "I give up"
# The answer radios start with eight candidates (the usual count) so the API accepts any of them; opening a
# puzzle narrows the choices to its own candidates.
ANSWER_CHOICES = [f"#{index}" for index in range(1, 9)] + [GAVE_UP]


def decode_png(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return to_rgb_array(image)


class BankWriteError(ValueError):
    """The bank refused a write (read-only file, full disk, database down): shown to the visitor as is."""


@contextmanager
def bank_write(what: str) -> Iterator[None]:
    """Turn a database failure during a write into BankWriteError naming what was not saved and why."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    try:
        yield
    except (OperationalError, DBAPIError) as error:
        reason = str(getattr(error, "orig", error)).splitlines()[0][:200]
        log.error("bank write failed (%s): %s", what, reason)
        raise BankWriteError(f"{what} could not be saved: the bank is not accepting writes right now "
                             f"({reason}); please try again later") from error


def fetch_puzzle(bank: Any, puzzle_id: str) -> dict[str, Any]:
    """A puzzle as a plain dict (images as arrays); ValueError naming the id when it is not in the bank."""
    from puzzles.bank import repository

    if not puzzle_id:
        raise ValueError("no puzzle chosen")
    try:
        stored = repository.get_puzzle(bank, str(puzzle_id))
    except repository.NotFoundError as error:
        raise ValueError(str(error)) from error
    puzzle = stored.puzzle
    return {
        "id": puzzle.id, "status": stored.status, "family": puzzle.family, "title": puzzle.title,
        "panels": list(puzzle.panels), "candidates": list(puzzle.candidates), "answer": puzzle.answer,
        "answer_index": puzzle.answer_index, "layout": dict(puzzle.layout), "tags": list(puzzle.tags),
        "difficulty": puzzle.difficulty, "meta": dict(puzzle.meta or {}),
    }


def answer_index_of(bank: Any, puzzle_id: str | None) -> int | None:
    if not puzzle_id:
        return None
    try:
        return fetch_puzzle(bank, puzzle_id)["answer_index"]
    except ValueError:
        return None


def save_png(directory: Any, image: np.ndarray) -> str:
    """Write an image once under `directory`, named by its content hash; returns the path."""
    data = png_bytes(image)
    path = Path(directory) / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def save_run(temp_dir: Any, prompt: Sequence[np.ndarray], result: SolveResult, puzzle_id: str | None) -> dict[str, Any]:
    """What a later rating needs about a solve, as file paths and plain values (kept in gr.State)."""
    directory = Path(temp_dir) / "runs"
    return {
        "prompt": [save_png(directory, image) for image in prompt],
        "samples": [save_png(directory, image) for image in result.samples],
        "settings": result.settings.as_dict(),
        "bundle_id": result.bundle_id,
        "puzzle_id": puzzle_id,
    }


def rate_sample(
    bank: Any, visitor_id: str, run: Mapping[str, Any] | None, sample: int, vote: str, correct: bool
) -> int:
    """Store this visitor's rating of sample `sample` (0-based) of the last solve; a second one updates the first."""
    from puzzles.bank import repository

    if not run or not run.get("samples"):
        raise ValueError("solve first: there is no sample to rate")
    if vote not in ("up", "down"):
        raise ValueError(f"a rating is 'up' or 'down', not {vote!r}")
    samples = run["samples"]
    if not 0 <= sample < len(samples):
        raise ValueError(f"there is no sample {sample + 1}: the last solve made {len(samples)}, "
                         f"numbered 1 to {len(samples)}")
    from app import limits

    limits.ratings.check(bank, visitor_id)
    output = as_image(samples[sample])
    puzzle_id = run.get("puzzle_id") or None
    prompt = None if puzzle_id else [as_image(path) for path in run["prompt"]]
    with bank_write("your rating"):
        return repository.add_rating(
            bank, visitor=visitor_id, output=output, score=1 if vote == "up" else -1, puzzle_id=puzzle_id,
            prompt=prompt, bundle_id=run.get("bundle_id", ""), settings=dict(run.get("settings") or {}),
            sample_index=sample, is_correct=bool(correct),
        )


def submit_prompt(
    bank: Any, visitor_id: str, layout: str, images: Sequence[np.ndarray], answer: np.ndarray | None,
    candidates: Sequence[np.ndarray], title: str,
) -> str:
    """Save the prompt as a pending puzzle; candidates are kept when the answer is one of them."""
    from puzzles.bank import repository
    from puzzles.puzzle import Puzzle

    answer_index = None
    if answer is not None and candidates:
        wanted = image_hash(answer)
        answer_index = next((i for i, c in enumerate(candidates) if image_hash(c) == wanted), None)
    layout_hint: dict[str, Any] = {"kind": layout}
    if layout == "analogy":
        layout_hint["pairs"] = (len(images) - 1) // 2
    puzzle = Puzzle(
        family=layout, panels=list(images), answer=answer,
        candidates=list(candidates) if answer_index is not None else [], answer_index=answer_index,
        title=title.strip()[:200] or f"Visitor {layout}", layout=layout_hint, source={"submitted": "playground"},
    )
    try:
        with bank_write("your puzzle"):
            return repository.submit_puzzle(bank, puzzle, visitor_id)
    except repository.PuzzleExistsError as error:
        raise ValueError(f"this puzzle is already in the bank ({puzzle.id})") from error


def random_puzzle_id(bank: Any, family: str | None = None) -> str | None:
    from puzzles.bank import repository

    stored = repository.random_puzzle(bank, family=family)
    return stored.puzzle.id if stored is not None else None


def choice_label(summary: Any) -> str:
    return f"{summary.title or summary.family} [{summary.id}]"


def id_from_choice(choice: str) -> str:
    """'Title [id]' -> id (a bare id passes through)."""
    choice = choice.strip()
    if choice.endswith("]") and "[" in choice:
        return choice[choice.rindex("[") + 1 : -1]
    return choice


def example_choices(bank: Any, per_family: int = 3) -> list[str]:
    """A few published puzzles of each play layout, as dropdown labels."""
    from puzzles.bank import repository

    choices: list[str] = []
    for family in LAYOUTS:
        items, _ = repository.list_puzzles(bank, family=family, per_page=per_family)
        choices += [choice_label(item) for item in items]
    return choices


def bank_thumbnails(bank: Any, limit: int = 16) -> list[tuple[np.ndarray, str]]:
    """Images from published puzzles to drag into slots: the first panels of a few puzzles."""
    from puzzles.bank import repository

    items, _ = repository.list_puzzles(bank, per_page=max(1, limit // 2))
    hashes = list(dict.fromkeys(h for item in items for h in item.panel_hashes[:2]))[:limit]
    return [(decode_png(repository.get_image(bank, h)), h[:8]) for h in hashes]


def puzzle_picture(puzzle: Mapping[str, Any], cell: int = 64) -> np.ndarray:
    """The prompt of a puzzle as one picture, laid out the way its family reads."""
    family, panels = puzzle["family"], puzzle["panels"]
    columns = 3 if family == "matrix" else 2 if family in ("analogy", "grid") else min(len(panels) + 1, 5)
    from puzzles.draw import montage

    return montage(panels, columns, cell)


@dataclass(frozen=True)
class BankFilters:
    family: str | None = None
    layout: str | None = None
    tag: str | None = None
    difficulty: tuple[int, int] | None = None
    model_wrong: bool = False

    @classmethod
    def from_inputs(cls, family: Any, layout: Any, tag: Any, low: Any, high: Any, model_wrong: Any) -> BankFilters:
        low_level, high_level = int(low or 1), int(high or 5)
        if low_level > high_level:
            raise ValueError(f"lowest difficulty {low_level} is above the highest {high_level}")
        return cls(
            family=family if family and family != "any" else None,
            layout=layout if layout and layout != "any" else None,
            tag=str(tag).strip() or None if tag else None,
            difficulty=None if (low_level, high_level) == (1, 5) else (low_level, high_level),
            model_wrong=bool(model_wrong),
        )


def bank_page(bank: Any, filters: BankFilters, page: int) -> tuple[list[tuple[np.ndarray, str]], list[str], int]:
    """One page of the bank gallery: (picture, caption) items, their ids, and the number of pages."""
    from puzzles.bank import repository

    items, total = repository.list_puzzles(
        bank, family=filters.family, layout=filters.layout, tag=filters.tag, difficulty=filters.difficulty,
        model_wrong=True if filters.model_wrong else None, page=max(0, int(page)), per_page=PER_PAGE,
    )
    pictures = []
    for item in items:
        panels = [decode_png(repository.get_image(bank, h)) for h in item.panel_hashes]
        picture = puzzle_picture({"family": item.family, "panels": panels}, cell=48)
        pictures.append((picture, f"{item.title or item.family} · level {item.difficulty}"))  # words, no id
    pages = max(1, -(-total // PER_PAGE))
    return pictures, [item.id for item in items], pages


def model_pick(bank: Any, bundle: Any, puzzle: Mapping[str, Any]) -> int | None:
    """The candidate the model ranks first (remembered in the bank for the "model gets it wrong" filter)."""
    from puzzles.bank import repository

    if not puzzle["candidates"]:
        return None
    scores = rank(bundle, puzzle["panels"], puzzle["candidates"])
    pick = int(np.argmax(scores))
    if puzzle.get("answer_index") is not None:
        try:
            with bank_write("the model's result"):
                repository.record_model_result(bank, puzzle["id"], bundle_id(bundle), pick)
        except BankWriteError as error:  # only a cache for the "model gets it wrong" filter: keep answering
            log.warning("%s", error)
    return pick


PICK_WORDS = "The model picked"


def pick_line(pick: int, answer_index: int | None) -> str:
    """The line that says which candidate the model picked, and whether it is the answer."""
    verdict = "" if answer_index is None else f" ({'right' if pick == answer_index else 'wrong'})"
    return f"{PICK_WORDS} **#{pick + 1}**{verdict}."


def known_model_pick(bank: Any, bundle: Any | None, puzzle_id: str) -> int | None:
    """The candidate this bundle picked for the puzzle, as the bank remembers it (ranked once per bundle, see
    record_model_picks); None when the bundle is not loaded yet or has not ranked this puzzle."""
    from puzzles.bank import repository

    if bundle is None:
        return None
    tag = bundle_id(bundle)
    results = repository.puzzle_stats(bank, puzzle_id)["model_results"]
    return next((r["picked_index"] for r in results if r["bundle_id"] == tag and r["picked_index"] is not None), None)


def record_model_picks(bank: Any, bundle: Any) -> int:
    """Rank every published puzzle that has candidates and an answer but no result from this bundle yet, so the
    "model gets it wrong" filter knows the whole bank from the start. Returns how many were ranked; a puzzle the
    model cannot take (a prompt longer than its context) is skipped."""
    from puzzles.bank import repository

    done, page, tag = 0, 0, bundle_id(bundle)
    while True:
        items, total = repository.list_puzzles(bank, page=page, per_page=200)
        for item in items:
            if not item.candidate_hashes or item.answer_index is None:
                continue
            results = repository.puzzle_stats(bank, item.id)["model_results"]
            if any(result["bundle_id"] == tag for result in results):
                continue
            try:
                model_pick(bank, bundle, fetch_puzzle(bank, item.id))
                done += 1
            except (RuntimeError, ValueError) as error:
                log.info("model pick skipped for %s: %s", item.id, error)
        page += 1
        if page * 200 >= total or not items:
            return done


def record_attempt(bank: Any, visitor_id: str, puzzle_id: str, choice: int | None, seconds: float | None,
                   correct: bool | None = None) -> bool:
    """Store a visitor's answer; `correct` is given for puzzles checked without candidates (ARC grids)."""
    from app import limits
    from puzzles.bank import repository

    limits.attempts.check(bank, visitor_id)
    try:
        with bank_write("your answer"):
            return repository.add_attempt(bank, puzzle_id, visitor_id, choice, seconds=seconds, correct=correct)
    except repository.NotFoundError as error:
        raise ValueError(str(error)) from error


def choice_index(choice: Any) -> int | None:
    """'#3' / '3' / 3 -> 2 (0-based); 'I give up' or empty -> None."""
    if choice is None or choice == "" or choice == GAVE_UP:
        return None
    text = str(choice).lstrip("#").strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"choose a candidate number (1, 2, ...) or {GAVE_UP!r}, not {choice!r}")
    return int(text) - 1


def stats_markdown(stats: Mapping[str, Any], model_correct: bool | None) -> str:
    """Human success rate on a puzzle next to the model's result."""
    attempts = stats.get("attempts", 0)
    rate = stats.get("success_rate")
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    human = f"{100 * rate:.0f}% of {tries}" if rate is not None else "no attempts yet"
    model = "no candidates to rank" if model_correct is None else ("right" if model_correct else "wrong")
    return f"**People:** {human} solved it · **The model:** {model}"
