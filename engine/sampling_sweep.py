"""Choose a bundle's sampling defaults (what the app's Solve uses) by generative accuracy on held-out puzzles.

    python -m engine.sampling_sweep --bundle engine/bundles/default --puzzles matrix:all,analogy:all,sequence:all \\
        --n 48 --first 350 --settings "t=0;t=1;t=0.5;t=0.5,g=1;t=0.5,g=2;t=1,p=0.7" --json sweep.json [--write]

For every puzzle and setting, --samples samples are drawn in one batch (seeds fixed); a sample is right when its
nearest candidate in pixel space is the answer (engine.evaluate's generative accuracy, counted per sample to cut
the noise). The table gives each family's accuracy per setting; the best setting is the one with the highest mean
over families among those that sample (temperature > 0: the app draws several answers, and greedy ones are all
alike); greedy decoding is measured beside them for reference. Settings with g= (guidance: each code drawn away
from what the last prompt image alone predicts) at the best setting's t, k and p give a family its guidance weight
where they beat it puzzle by puzzle beyond noise. --write stores it all in the bundle's manifest under "sampling"
(no weight file changes, so the files' checksums stay valid); the app and engine.evaluate read it there.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from engine.bundle import update_manifest
from engine.evaluate import context_panels, load_puzzles, nearest_candidate
from engine.serving.decode import SamplingOptions
from engine.serving.runtime import Bundle
from puzzles.images import to_square
from puzzles.puzzle import Puzzle

SHORT_NAMES = {"t": "temperature", "k": "top_k", "p": "top_p", "g": "guidance"}
# a family samples guided only where guidance wins puzzle by puzzle beyond this p (as scoring rules, engine.evaluate)
GUIDANCE_EVIDENCE = 0.01


def parse_settings(text: str) -> list[SamplingOptions]:
    """'t=0;t=0.7,k=10' -> [SamplingOptions(0.0, 0, 1.0), SamplingOptions(0.7, 10, 1.0)]."""
    settings = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        values: dict[str, Any] = {}
        for item in entry.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep or key not in SHORT_NAMES:
                raise ValueError(f"setting {entry!r}: {item!r} is not t=, k=, p= or g=")
            try:
                values[SHORT_NAMES[key]] = int(value) if key == "k" else float(value)
            except ValueError:
                raise ValueError(f"setting {entry!r}: {value!r} is not a number") from None
        settings.append(SamplingOptions(**values))
    if not settings:
        raise ValueError("no sampling settings given")
    return settings


def label(options: SamplingOptions) -> str:
    guided = f",g={options.guidance:g}" if options.guidance else ""
    return f"t={options.temperature:g},k={options.top_k},p={options.top_p:g}{guided}"


def sample_hits(bundle: Bundle, puzzle: Puzzle, options: SamplingOptions, samples: int) -> list[bool]:
    """For each of `samples` samples at `options`: is its nearest candidate the answer?"""
    size = bundle.image_size
    candidates = [to_square(c, size) for c in puzzle.candidates]
    drawn = bundle.complete(context_panels(bundle, puzzle), n_samples=samples, temperature=options.temperature,
                            top_k=options.top_k, top_p=options.top_p, seed=0, guidance=options.guidance,
                            family=puzzle.family)
    return [nearest_candidate(image, candidates) == puzzle.answer_index for image in drawn]


def sweep(bundle: Bundle, puzzles: list[Puzzle], settings: list[SamplingOptions], samples: int = 4,
          progress: Any = None) -> dict[str, Any]:
    """Per setting: generative accuracy per family and their mean; the best setting (see `choose`)."""
    usable = [p for p in puzzles if p.candidates and p.answer_index is not None]
    if not usable:
        raise ValueError("no puzzles with candidates to measure generation on")
    results = []
    for options in settings:
        hits: dict[str, list[int]] = defaultdict(list)  # per family: right samples of each puzzle
        greedy = options.temperature == 0  # greedy samples are all alike: one is enough
        for puzzle in usable:
            hits[puzzle.family].append(sum(sample_hits(bundle, puzzle, options, 1 if greedy else samples)))
            if progress is not None:
                progress()
        families = {family: float(np.sum(right) / (len(right) * (1 if greedy else samples)))
                    for family, right in hits.items()}
        results.append({"sampling": asdict(options), "label": label(options), "families": families,
                        "mean": float(np.mean(list(families.values()))), "hits": dict(hits)})
    return {"bundle": bundle.name, "puzzles": len(usable), "samples_per_puzzle": samples, "settings": results,
            "best": choose(results)}


def choose(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The unguided setting with the best mean over families among those that sample (temperature > 0: the app
    draws several answers, and greedy ones are all alike), and per family the guidance weight (with that
    setting's temperature, top-k and top-p) that beats it puzzle by puzzle beyond noise, the most accurate one."""
    from engine.compare import sign_test_p

    plain = [r for r in results if r["sampling"]["guidance"] == 0]
    sampling = [r for r in plain if r["sampling"]["temperature"] > 0] or plain or results
    best = max(sampling, key=lambda result: result["mean"])
    same = {key: value for key, value in best["sampling"].items() if key != "guidance"}
    guided = [r for r in results if r["sampling"]["guidance"] > 0
              and all(r["sampling"][key] == value for key, value in same.items())]
    guidance = {}
    for family, base in best["hits"].items():
        winners = [r for r in guided if sign_test_p(sum(g > b for g, b in zip(r["hits"][family], base, strict=True)),
                                                    sum(g < b for g, b in zip(r["hits"][family], base, strict=True)))
                   < GUIDANCE_EVIDENCE and r["families"][family] > best["families"][family]]
        if winners:
            guidance[family] = max(winners, key=lambda r: r["families"][family])["sampling"]["guidance"]
    return {**same, "guidance": guidance}


def write_sampling(directory: str | Path, options: dict[str, Any], source: str) -> None:
    """Store the chosen sampling defaults in a bundle's manifest (the weights and their checksums are untouched)."""
    update_manifest(directory, sampling={**options, "chosen_by": source})


def format_table(report: dict[str, Any]) -> str:
    families = list(report["settings"][0]["families"])
    lines = [" | ".join(["setting", *families, "mean"]), " | ".join(["---"] * (len(families) + 2))]
    for result in report["settings"]:
        cells = [f"{result['families'][f] * 100:.1f}%" for f in families]
        lines.append(" | ".join([result["label"], *cells, f"{result['mean'] * 100:.1f}%"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m engine.sampling_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="model bundle directory")
    parser.add_argument("--puzzles", default="matrix:all,analogy:all,sequence:all", help="spec, pack or directory")
    parser.add_argument("--n", type=int, default=48, help="puzzles per spec entry")
    parser.add_argument("--first", type=int, default=0, help="skip this many held-out puzzles of each entry "
                                                             "(choose on other puzzles than you compare on)")
    parser.add_argument("--settings", default="t=0;t=1;t=0.7;t=0.5;t=1,k=5;t=0.7,k=10;t=1,p=0.7",
                        help="';'-separated settings of t= (temperature, 0 greedy), k= (top-k), p= (top-p), "
                             "g= (guidance)")
    parser.add_argument("--samples", type=int, default=4, help="samples per puzzle and setting")
    parser.add_argument("--json", required=True, help="where to write the report")
    parser.add_argument("--write", action="store_true", help="store the best setting in the bundle's manifest")
    args = parser.parse_args(argv)
    try:
        settings = parse_settings(args.settings)
    except ValueError as error:
        parser.error(str(error))
    from tqdm import tqdm

    bundle = Bundle.load(args.bundle)
    puzzles = load_puzzles(args.puzzles, args.n, bundle.image_size, args.first)
    with tqdm(total=len(puzzles) * len(settings), desc="sweep", file=sys.stderr) as bar:
        report = sweep(bundle, puzzles, settings, args.samples, progress=lambda: bar.update(1))
    report["command"] = "python -m engine.sampling_sweep " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    best = report["best"]
    sys.stdout.write(format_table(report) + f"\nbest: {label(SamplingOptions(**{**best, 'guidance': 0}))}, "
                     f"guidance {best['guidance'] or 'none'}\n")
    if args.write:
        write_sampling(args.bundle, report["best"], report["command"])
    return report


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.sampling_sweep")
