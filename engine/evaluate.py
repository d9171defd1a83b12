"""Evaluate a model bundle on puzzles: multiple choice, generation, PSNR, time; a table and a JSON report.

    python -m engine.evaluate --bundle DIR --puzzles SPEC|PACK|DIR [--n N] --json OUT

SPEC is a comma-separated list of `family[:variant]` entries generated on held-out seeds:
`matrix` (layout drawn per seed), `matrix:center` (one layout), `matrix:all` (every layout in turn; the same
for `analogy:all` over transforms and `sequence:all` over kinds), `arc:arcagi1-eval` (ARC tasks in order).
PACK is a puzzle pack (directory with pack.json, or .zip); DIR a tree of RAVEN/I-RAVEN .npz files.

Per puzzle: multiple-choice accuracy ranks the candidates by log-likelihood; generative accuracy takes one
sample at the bundle's sampling defaults for its family (what the app uses; --temperature/--top-k/--top-p/
--guidance override them, seed 0) and checks that its nearest candidate in pixel space is the answer (ARC: the
grid read back from the image equals the answer, pass@1 greedy and pass@2 with one extra sample); PSNR of the
generated answer against the true one, and of the tokenizer's reconstruction of the true answer (the ceiling).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.bundle import update_manifest
from engine.serving.decode import SamplingOptions
from engine.serving.runtime import SCORING_RULES, Bundle, rules_for
from engine.serving.sentences import select_panels
from puzzles.images import to_square
from puzzles.puzzle import Puzzle
from puzzles.seeds import eval_seed

log = logging.getLogger(__name__)

SCHEMA = "gelato-evaluation/1"
DEFAULT_N = 20
ARC_FAMILIES = ("arc", "grid")
METRIC_KEYS = ("n", "n_multiple_choice", "multiple_choice_accuracy", "n_generative", "generative_accuracy",
               "pass_at_2", "psnr_generated", "psnr_ceiling", "seconds")


# --- where puzzles come from ----------------------------------------------------------------------------------


def generated_puzzles(family: str, variant: str | None, n: int, size: int, first: int = 0) -> list[Puzzle]:
    """n puzzles of one spec entry on held-out seeds eval_seed(first..first+n-1)."""
    from puzzles.generators import generate

    return [generate(family, eval_seed(index), size=size, **entry_options(family, variant, index))
            for index in range(first, first + n)]


def entry_options(family: str, variant: str | None, index: int) -> dict[str, str]:
    """The generator options of a spec entry's index-th puzzle ('all' takes each variant in turn)."""
    from puzzles.generators import VARIANT_OPTIONS, variant_options, variant_values

    if family not in VARIANT_OPTIONS:
        raise ValueError(f"unknown puzzle family {family!r} in the spec; use matrix, analogy, sequence or arc")
    if variant == "all":
        values = variant_values(family)[1]
        return variant_options(family, values[index % len(values)])
    return variant_options(family, variant)


def arc_puzzles(dataset: str | None, n: int, size: int, first: int = 0) -> list[Puzzle]:
    """n tasks of an ARC dataset from task `first` (default: the ARC-AGI-1 evaluation set), first test pair each."""
    from puzzles.generators import grid

    dataset = dataset or "arcagi1-eval"
    if dataset not in grid.DATASETS:
        raise ValueError(f"unknown ARC dataset {dataset!r}; choose from {', '.join(grid.DATASETS)}")
    tasks = grid.load_tasks(dataset)[first:first + n]
    return [grid.generate(eval_seed(i), size=size, dataset=dataset, task_id=task.id)
            for i, task in enumerate(tasks, start=first)]


def parse_spec(spec: str) -> list[tuple[str, str | None]]:
    """'matrix:all,analogy' -> [('matrix', 'all'), ('analogy', None)]."""
    entries = []
    for part in spec.split(","):
        family, _, variant = part.strip().partition(":")
        if not family:
            raise ValueError(f"empty entry in puzzle spec {spec!r}")
        entries.append((family, variant or None))
    return entries


def raven_puzzles(directory: Path, size: int) -> list[Puzzle]:
    """Every RAVEN/I-RAVEN .npz under a directory, in path order (configuration = the sub-directory)."""
    from puzzles.importers import import_raven

    return import_raven(directory, size=size)


def load_puzzles(source: str, n: int | None, size: int, first: int = 0) -> list[Puzzle]:
    """Puzzles from a pack (.zip or directory with pack.json), a RAVEN .npz tree, or a generator spec; `first`
    skips that many of each source (a second held-out set, e.g. for choosing a setting apart from comparing)."""
    path = Path(source)
    if path.exists():
        if path.suffix == ".zip" or (path / "pack.json").is_file():
            from puzzles.pack import read_pack

            puzzles = read_pack(path)
        elif path.is_dir():
            puzzles = raven_puzzles(path, size)
        else:
            raise ValueError(f"{path}: not a puzzle pack (.zip or a directory with pack.json) nor a directory")
        return puzzles[first:first + n] if n is not None else puzzles[first:]
    count = n if n is not None else DEFAULT_N
    puzzles = []
    for family, variant in parse_spec(source):
        if family in ARC_FAMILIES:
            puzzles += arc_puzzles(variant, count, size, first)
        else:
            puzzles += generated_puzzles(family, variant, count, size, first)
    return puzzles


# --- scoring one puzzle ---------------------------------------------------------------------------------------


@dataclass
class PuzzleResult:
    id: str
    family: str
    configuration: str
    multiple_choice_correct: bool | None  # None: the puzzle has no candidates
    chosen_candidate: int | None
    generative_correct: bool | None  # None: neither candidates nor a readable answer grid
    pass_at_2: bool | None  # ARC only
    psnr_generated: float | None
    psnr_ceiling: float | None
    seconds: float
    correct_by_rule: dict[str, bool] | None = None  # multiple choice under each scoring rule of its family (rules_for)
    # "component.attribute" where the chosen candidate differs from the answer ([] when right); None unless the
    # puzzle's meta lists every candidate's attributes (generated matrices)
    attributes_wrong: list[str] | None = None
    # a wrong choice: whether it has less ink than the answer (a pull to panels with less drawn shows as a share
    # well above one half); None when the choice is right or there is none
    chosen_lighter: bool | None = None


def configuration(puzzle: Puzzle) -> str:
    """Matrix layout, analogy transform, sequence kind, ARC dataset; 'all' when the puzzle does not say."""
    for key in ("layout", "transform", "kind", "configuration", "dataset"):
        value = puzzle.meta.get(key)
        if isinstance(value, str):
            return value
    if isinstance(puzzle.layout.get("kind"), str):
        return puzzle.layout["kind"]
    return str(puzzle.source.get("dataset") or puzzle.source.get("configuration") or "all")


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (capped at 100 dB for identical images)."""
    error = np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2)
    return 100.0 if error == 0 else min(100.0, 10.0 * math.log10(255.0**2 / error))


def nearest_candidate(image: np.ndarray, candidates: list[np.ndarray]) -> int:
    errors = [np.mean((image.astype(np.float64) - c.astype(np.float64)) ** 2) for c in candidates]
    return int(np.argmin(errors))


def read_grid_or_none(image: np.ndarray) -> list[list[int]] | None:
    from puzzles.generators.grid import read_grid

    try:
        return read_grid(image)
    except ValueError:  # the image is not a rendered grid
        return None


def attributes_wrong(puzzle: Puzzle, chosen: int | None) -> list[str] | None:
    """Where the chosen candidate's attributes differ from the answer's, by the matrix generator's meta."""
    described = puzzle.meta.get("candidates")
    if chosen is None or puzzle.answer_index is None or not isinstance(described, list) \
            or len(described) != len(puzzle.candidates) \
            or not all(isinstance(c, dict) and all(isinstance(v, dict) for v in c.values()) for c in described):
        return None
    answer, picked = described[puzzle.answer_index], described[chosen]
    return [f"{component}.{attribute}" for component, values in sorted(answer.items())
            for attribute, value in sorted(values.items()) if picked.get(component, {}).get(attribute) != value]


def ink(image: np.ndarray) -> float:
    """How much is drawn on a panel: its mean darkness, 0 (white) to 255 (black)."""
    return 255.0 - float(np.mean(image))


def chosen_lighter(candidates: list[np.ndarray], chosen: int | None, answer_index: int | None) -> bool | None:
    """Whether a wrong choice has less ink than the answer (None when right or not a choice)."""
    if chosen is None or answer_index is None or chosen == answer_index:
        return None
    return ink(candidates[chosen]) < ink(candidates[answer_index])


def context_panels(bundle: Bundle, puzzle: Puzzle) -> list[np.ndarray]:
    """The panels that fit the bundle's context with the answer (same selection as training)."""
    keep = select_panels(puzzle.family, len(puzzle.panels), bundle.max_images, puzzle.layout)
    return [puzzle.panels[index] for index in keep]


def evaluate_puzzle(bundle: Bundle, puzzle: Puzzle, sampling: SamplingOptions | None = None) -> PuzzleResult:
    """One puzzle's result; generation samples at `sampling`, the bundle's for the puzzle's family when None."""
    started = time.perf_counter()
    sampling = sampling or bundle.sampling_for(puzzle.family)
    size = bundle.image_size
    panels = context_panels(bundle, puzzle)
    candidates = [to_square(c, size) for c in puzzle.candidates]
    has_choices = bool(candidates) and puzzle.answer_index is not None
    by_rule = ({rule: int(np.argmax(bundle.score(panels, candidates, scoring=rule, family=puzzle.family)))
                for rule in rules_for(puzzle.family)} if has_choices else None)
    chosen = by_rule[bundle.scoring_rule(puzzle.family)] if by_rule else None
    is_grid = puzzle.family == "grid"
    if is_grid:
        samples = [*bundle.complete(panels, n_samples=1, temperature=0.0),
                   *bundle.complete(panels, n_samples=1, temperature=1.0, seed=0)]
    else:
        samples = bundle.complete(panels, n_samples=1, temperature=sampling.temperature, top_k=sampling.top_k,
                                  top_p=sampling.top_p, seed=0, guidance=sampling.guidance, family=puzzle.family)
    answer = to_square(puzzle.answer, size) if puzzle.answer is not None else None
    generative, pass2 = None, None
    if is_grid and answer is not None:
        truth = puzzle.meta.get("answer_grid") or read_grid_or_none(puzzle.answer)
        hits = [truth is not None and read_grid_or_none(sample) == truth for sample in samples]
        generative, pass2 = hits[0], any(hits)
    elif has_choices:
        generative = nearest_candidate(samples[0], candidates) == puzzle.answer_index
    return PuzzleResult(
        id=puzzle.id,
        family=puzzle.family,
        configuration=configuration(puzzle),
        multiple_choice_correct=None if chosen is None else chosen == puzzle.answer_index,
        chosen_candidate=chosen,
        correct_by_rule=None if by_rule is None else {r: c == puzzle.answer_index for r, c in by_rule.items()},
        attributes_wrong=attributes_wrong(puzzle, chosen),
        chosen_lighter=chosen_lighter(candidates, chosen, puzzle.answer_index),
        generative_correct=generative,
        pass_at_2=pass2,
        psnr_generated=None if answer is None else psnr(samples[0], answer),
        psnr_ceiling=None if answer is None else psnr(bundle.roundtrip([answer])[0], answer),
        seconds=time.perf_counter() - started,
    )


# --- summaries and the report ---------------------------------------------------------------------------------


def _mean(values: Iterable[float | bool | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarise(results: list[PuzzleResult]) -> dict[str, Any]:
    """The metrics of a group of puzzle results (accuracies in [0, 1], None where nothing was measurable)."""
    return {
        "n": len(results),
        "n_multiple_choice": sum(r.multiple_choice_correct is not None for r in results),
        "multiple_choice_accuracy": _mean(r.multiple_choice_correct for r in results),
        "n_generative": sum(r.generative_correct is not None for r in results),
        "generative_accuracy": _mean(r.generative_correct for r in results),
        "pass_at_2": _mean(r.pass_at_2 for r in results),
        "psnr_generated": _mean(r.psnr_generated for r in results),
        "psnr_ceiling": _mean(r.psnr_ceiling for r in results),
        "seconds": sum(r.seconds for r in results),
        "multiple_choice_accuracy_by_rule": {
            rule: _mean(r.correct_by_rule.get(rule) for r in results if r.correct_by_rule) for rule in SCORING_RULES
        },
        "multiple_choice_errors_by_attribute": errors_by_attribute(results),
        "wrong_choices_lighter_than_answer": _mean(r.chosen_lighter for r in results),
    }


def errors_by_attribute(results: list[PuzzleResult]) -> dict[str, float]:
    """Per attribute, the share of described puzzles whose chosen candidate got it wrong (a wrong choice may
    miss several attributes, so the shares can add up to more than the error rate)."""
    described = [r.attributes_wrong for r in results if r.attributes_wrong is not None]
    names = sorted({name for wrong in described for name in wrong})
    return {name: sum(name in wrong for wrong in described) / len(described) for name in names}


def build_report(results: list[PuzzleResult]) -> dict[str, Any]:
    families: dict[str, Any] = {}
    for family in dict.fromkeys(r.family for r in results):
        in_family = [r for r in results if r.family == family]
        configurations = {name: summarise([r for r in in_family if r.configuration == name])
                          for name in sorted({r.configuration for r in in_family})}
        families[family] = {**summarise(in_family), "configurations": configurations}
    return {"overall": summarise(results), "families": families, "puzzles": [asdict(r) for r in results]}


def evaluate(
    bundle: Bundle, puzzles: list[Puzzle], progress: Callable[[float, str], None] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate every puzzle; return the report (see `validate_report` for its structure). Generation samples
    at the bundle's settings for each puzzle's family, with `overrides` (SamplingOptions fields) for all."""
    if not puzzles:
        raise ValueError("no puzzles to evaluate")
    sampling = {family: replace(bundle.sampling_for(family), **(overrides or {}))
                for family in dict.fromkeys(puzzle.family for puzzle in puzzles)}
    results = []
    for index, puzzle in enumerate(puzzles):
        results.append(evaluate_puzzle(bundle, puzzle, sampling[puzzle.family]))
        if progress is not None:
            progress((index + 1) / len(puzzles), f"{puzzle.family} {index + 1}/{len(puzzles)}")
    report = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "bundle": {"name": bundle.name, "directory": str(bundle.directory), "provider": bundle.provider,
                   "weights": bundle.manifest.get("weights", "fp32")},
        "sampling": sampling_record(sampling),
        **build_report(results),
    }
    validate_report(report)
    return report


def sampling_record(by_family: dict[str, SamplingOptions]) -> dict[str, Any]:
    """The settings a report sampled at, in the manifest's form: one temperature, top-k and top-p (the same for
    every family), and the families that sampled guided with their weights."""
    first = next(iter(by_family.values()))
    return {"temperature": first.temperature, "top_k": first.top_k, "top_p": first.top_p,
            "guidance": {family: options.guidance for family, options in by_family.items() if options.guidance > 0}}


# A family leaves the plain sum only for a rule that wins beyond this p: three families, one alternative each, and
# a matrix choice at p 0.038 on 200 puzzles did not hold on 350 others (docs/model-experiments.md, section 18).
SCORING_EVIDENCE = 0.01


def best_scoring(report: dict[str, Any]) -> dict[str, str]:
    """Per family, the scoring rule to use where it is not "sum": the most accurate rule among those that win
    against the sum puzzle by puzzle beyond noise (paired sign test p < SCORING_EVIDENCE) in the report."""
    from engine.compare import sign_test_p

    rules = {}
    for family in report["families"]:
        entries = [e["correct_by_rule"] for e in report["puzzles"] if e["family"] == family and e["correct_by_rule"]]
        better = {}
        for rule in rules_for(family)[1:]:
            wins = sum(e[rule] and not e["sum"] for e in entries if rule in e)
            losses = sum(e["sum"] and not e[rule] for e in entries if rule in e)
            if wins > losses and sign_test_p(wins, losses) < SCORING_EVIDENCE:
                better[rule] = sum(e[rule] for e in entries)
        if better:
            rules[family] = max(better, key=better.__getitem__)
    return rules


def _check_metrics(metrics: Any, where: str) -> None:
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: metrics must be an object")
    for key in METRIC_KEYS:
        if key not in metrics:
            raise ValueError(f"{where}: missing {key!r}")
    for key in ("n", "n_multiple_choice", "n_generative"):
        if not isinstance(metrics[key], int) or metrics[key] < 0:
            raise ValueError(f"{where}.{key}: must be a non-negative integer, got {metrics[key]!r}")
    for key in ("multiple_choice_accuracy", "generative_accuracy", "pass_at_2"):
        value = metrics[key]
        if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ValueError(f"{where}.{key}: must be null or in [0, 1], got {value!r}")
    for key in ("psnr_generated", "psnr_ceiling", "seconds"):
        if metrics[key] is not None and not isinstance(metrics[key], (int, float)):
            raise ValueError(f"{where}.{key}: must be null or a number, got {metrics[key]!r}")


def validate_report(report: Any) -> None:
    """Raise ValueError naming the first problem if `report` is not an evaluation report of SCHEMA."""
    if not isinstance(report, dict):
        raise ValueError("report must be a JSON object")
    for key in ("schema", "created", "bundle", "overall", "families", "puzzles"):
        if key not in report:
            raise ValueError(f"report: missing {key!r}")
    if report["schema"] != SCHEMA:
        raise ValueError(f"report.schema: expected {SCHEMA!r}, got {report['schema']!r}")
    for key in ("name", "provider"):
        if not isinstance(report["bundle"].get(key), str):
            raise ValueError(f"report.bundle.{key}: must be a string")
    _check_metrics(report["overall"], "report.overall")
    if not isinstance(report["families"], dict):
        raise ValueError("report.families: must be an object")
    for family, metrics in report["families"].items():
        _check_metrics(metrics, f"report.families.{family}")
        if not isinstance(metrics.get("configurations"), dict) or not metrics["configurations"]:
            raise ValueError(f"report.families.{family}.configurations: must be a non-empty object")
        for name, inner in metrics["configurations"].items():
            _check_metrics(inner, f"report.families.{family}.configurations.{name}")
        if sum(inner["n"] for inner in metrics["configurations"].values()) != metrics["n"]:
            raise ValueError(f"report.families.{family}: configuration counts do not add up to n")
    if not isinstance(report["puzzles"], list) or len(report["puzzles"]) != report["overall"]["n"]:
        raise ValueError("report.puzzles: must list one entry per evaluated puzzle")
    required = [name for name, spec in PuzzleResult.__dataclass_fields__.items() if spec.default is MISSING]
    for index, entry in enumerate(report["puzzles"]):  # later, optional fields may be absent from older reports
        missing = [key for key in required if key not in entry]
        if missing:
            raise ValueError(f"report.puzzles[{index}]: missing {', '.join(missing)}")


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.2f}"


def _lighter_text(family: str, metrics: dict[str, Any]) -> str:
    """"matrix 58.0% (center 42.3%, grid3x3 69.6%)": a family's share of wrong choices lighter than the answer."""
    inner = [f"{name} {_cell(m.get('wrong_choices_lighter_than_answer'), True)}"
             for name, m in metrics["configurations"].items() if m.get("wrong_choices_lighter_than_answer") is not None]
    text = f"{family} {_cell(metrics['wrong_choices_lighter_than_answer'], True)}"
    return f"{text} ({', '.join(inner)})" if len(inner) > 1 else text


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table: one row per family and per configuration, then the total."""
    header = f"{'family / configuration':34} {'n':>5} {'MC acc':>8} {'gen acc':>8} {'pass@2':>8} " \
             f"{'PSNR':>7} {'ceiling':>8} {'seconds':>8}"

    def row(label: str, m: dict[str, Any]) -> str:
        return (f"{label:34} {m['n']:>5} {_cell(m['multiple_choice_accuracy'], True):>8} "
                f"{_cell(m['generative_accuracy'], True):>8} {_cell(m['pass_at_2'], True):>8} "
                f"{_cell(m['psnr_generated']):>7} {_cell(m['psnr_ceiling']):>8} {m['seconds']:>8.1f}")

    lines = [header, "-" * len(header)]
    for family, metrics in report["families"].items():
        lines.append(row(family, metrics))
        if len(metrics["configurations"]) > 1:
            lines += [row(f"  {name}", inner) for name, inner in metrics["configurations"].items()]
    lines += ["-" * len(header), row("all", report["overall"])]
    errors = report["overall"].get("multiple_choice_errors_by_attribute")
    if errors:
        lines.append("choices wrong by attribute: " + ", ".join(f"{name} {100 * share:.1f}%"
                                                               for name, share in errors.items()))
    lighter = [_lighter_text(family, metrics) for family, metrics in report["families"].items()
               if metrics.get("wrong_choices_lighter_than_answer") is not None]
    if lighter:
        lines.append("wrong choices with less ink than the answer (about half when nothing pulls): "
                     + "; ".join(lighter))
    by_rule = {family: " / ".join(f"{rule} {_cell(value, True)}" for rule, value in
                                  metrics["multiple_choice_accuracy_by_rule"].items() if value is not None)
               for family, metrics in report["families"].items() if metrics["n_multiple_choice"]}
    if by_rule:
        lines.append("multiple choice by scoring rule: " + "; ".join(f"{f} {text}" for f, text in by_rule.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="model bundle directory")
    parser.add_argument("--puzzles", required=True, help="SPEC (e.g. matrix:all,analogy,sequence), PACK or DIR")
    parser.add_argument("--n", type=int, default=None, help=f"puzzles per spec entry (default {DEFAULT_N}; "
                                                            "packs and directories: all)")
    parser.add_argument("--json", required=True, help="where to write the JSON report")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature for generative "
                                                                         "accuracy (default: the bundle's; 0 greedy)")
    parser.add_argument("--top-k", type=int, default=None, help="top-k cut (default: the bundle's; 0 off)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus mass (default: the bundle's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance weight for every family (default: "
                                                                      "the bundle's per family; 0 unguided)")
    parser.add_argument("--first", type=int, default=0, help="skip this many held-out puzzles of each entry "
                                                             "(choose settings on other puzzles than you compare on)")
    parser.add_argument("--write-scoring", action="store_true",
                        help="store in the bundle's manifest, per family, a scoring rule that beats the plain sum "
                             "on these puzzles beyond noise (best_scoring)")
    args = parser.parse_args(argv)
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")
    if args.first < 0:
        parser.error("--first must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    bundle = Bundle.load(args.bundle)
    overrides = {name: value for name, value in (("temperature", args.temperature), ("top_k", args.top_k),
                                                 ("top_p", args.top_p), ("guidance", args.guidance))
                 if value is not None}
    try:
        SamplingOptions(**overrides)
    except ValueError as error:
        parser.error(str(error))
    puzzles = load_puzzles(args.puzzles, args.n, bundle.image_size, args.first)
    with tqdm(total=len(puzzles), desc="evaluating", file=sys.stderr) as bar:
        report = evaluate(bundle, puzzles, progress=lambda fraction, message: bar.update(1), overrides=overrides)
    report["puzzle_source"] = args.puzzles
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(format_table(report) + "\n")
    if args.write_scoring:
        rules = best_scoring(report)
        source = f"engine.evaluate --puzzles {args.puzzles} --n {args.n} --first {args.first}"
        update_manifest(args.bundle, scoring={"rules": rules, "chosen_by": source})
        sys.stdout.write(f"scoring rules written to {args.bundle}: {rules or 'sum for every family'}\n")
    return report


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.evaluate")
