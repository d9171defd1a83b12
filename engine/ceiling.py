"""The tokenizer's ceiling: what no LVM on its codes can beat, measured per family before any LVM is trained.

    python -m engine.ceiling --bundle engine/bundles/default --puzzles matrix:all,analogy:all,sequence:all --n 120

Per held-out puzzle with candidates:
- distinct: the answer's codes differ from every distractor's (a candidate the tokenizer cannot tell apart is a
  point no LVM can win, in multiple choice or generation);
- nearest: the answer after the round trip (encode, decode) is still the candidate nearest to the true answer in
  pixel space (a perfect LVM's generated answer would be judged right);
- differing codes: how many of the answer's codes the closest distractor changes (median), and the round trip's
  PSNR against the true answer.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from engine.evaluate import configuration, load_puzzles, nearest_candidate, psnr
from engine.serving.runtime import Bundle
from puzzles.images import to_square
from puzzles.puzzle import Puzzle


def puzzle_ceiling(bundle: Bundle, puzzle: Puzzle) -> dict[str, Any]:
    """The ceiling measures of one puzzle with candidates."""
    size = bundle.image_size
    candidates = [to_square(c, size) for c in puzzle.candidates]
    codes = bundle.encode(candidates)
    answer = puzzle.answer_index
    differing = [int((codes[i] != codes[answer]).sum()) for i in range(len(codes)) if i != answer]
    roundtrip = bundle.decode(codes[answer : answer + 1])[0]
    return {"family": puzzle.family, "configuration": configuration(puzzle), "distinct": min(differing) > 0,
            "nearest": nearest_candidate(roundtrip, candidates) == answer, "closest_differs": min(differing),
            "psnr": psnr(roundtrip, candidates[answer])}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"n": len(rows), "distinct": float(np.mean([r["distinct"] for r in rows])),
            "nearest": float(np.mean([r["nearest"] for r in rows])),
            "closest_differs_median": float(np.median([r["closest_differs"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows]))}


def ceiling(bundle: Bundle, puzzles: list[Puzzle]) -> dict[str, Any]:
    """Per family and per configuration: the share of puzzles whose answer survives the tokenizer."""
    rows = [puzzle_ceiling(bundle, p) for p in puzzles if p.candidates and p.answer_index is not None]
    if not rows:
        raise ValueError("no puzzles with candidates")
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_family[row["family"]].append(row)
    families = {}
    for family, members in by_family.items():
        configurations = {name: summarise([r for r in members if r["configuration"] == name])
                          for name in sorted({r["configuration"] for r in members})}
        families[family] = {**summarise(members), "configurations": configurations}
    return {"bundle": bundle.name, "tokens_per_image": bundle.tokens_per_image, "image_size": bundle.image_size,
            "overall": summarise(rows), "families": families}


def format_table(report: dict[str, Any]) -> str:
    lines = ["family | n | distinct | nearest after round trip | closest distractor differs (codes) | PSNR",
             "--- | --- | --- | --- | --- | ---"]
    for family, m in [*report["families"].items(), ("all", report["overall"])]:
        lines.append(f"{family} | {m['n']} | {m['distinct'] * 100:.1f}% | {m['nearest'] * 100:.1f}% | "
                     f"{m['closest_differs_median']:.0f} of {report['tokens_per_image']} | {m['psnr']:.1f} dB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m engine.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="engine/bundles/default", help="model bundle directory")
    parser.add_argument("--puzzles", default="matrix:all,analogy:all,sequence:all", help="spec, pack or directory")
    parser.add_argument("--n", type=int, default=120, help="puzzles per spec entry")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    bundle = Bundle.load(args.bundle)
    report = ceiling(bundle, load_puzzles(args.puzzles, args.n, bundle.image_size))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(format_table(report) + "\n")
    return report


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.ceiling")
