"""Compare two evaluation reports of the same puzzles, puzzle by puzzle: a paired (exact) sign test per family.

    python -m engine.compare BASELINE.json CANDIDATE.json [--metric multiple_choice|generative] [--by-configuration]
        [--json OUT]

A candidate bundle replaces the default only when it wins overall (p < 0.05) and loses no family beyond noise
(docs/model-experiments.md). Puzzles are paired by id; two reports of the same puzzle spec are paired by seed
order instead (bundles of different image sizes render the same seeds as puzzles of different ids). Only puzzles
both reports scored count.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

METRICS = {"multiple_choice": "multiple_choice_correct", "generative": "generative_correct"}


@dataclass
class PairedResult:
    n: int  # puzzles both reports scored
    baseline_accuracy: float
    candidate_accuracy: float
    only_baseline: int  # right in the baseline only
    only_candidate: int  # right in the candidate only
    p_value: float  # two-sided exact sign test over the discordant pairs


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of `wins` against `losses` at p = 1/2 (ties dropped)."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def paired(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], key: str) -> PairedResult:
    """The puzzle-by-puzzle comparison of two lists of report entries on `key` (True/False/None)."""
    ours = {entry["id"]: entry[key] for entry in candidate if entry.get(key) is not None}
    pairs = [(bool(entry[key]), bool(ours[entry["id"]])) for entry in baseline
             if entry.get(key) is not None and entry["id"] in ours]
    if not pairs:
        raise ValueError("the two reports share no scored puzzle: evaluate both on the same puzzle spec and --n")
    only_base = sum(a and not b for a, b in pairs)
    only_cand = sum(b and not a for a, b in pairs)
    return PairedResult(len(pairs), sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs),
                        only_base, only_cand, sign_test_p(only_cand, only_base))


def by_seed_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with the id replaced by (family, configuration, k-th of them): the seed order of one spec."""
    seen: dict[tuple[str, str], int] = {}
    keyed = []
    for entry in entries:
        group = (entry["family"], str(entry.get("configuration")))
        seen[group] = seen.get(group, -1) + 1
        keyed.append({**entry, "id": f"{group[0]}/{group[1]}/{seen[group]}"})
    return keyed


def compare(baseline: dict[str, Any], candidate: dict[str, Any], metric: str,
            by_configuration: bool = False) -> dict[str, PairedResult]:
    """Per family and "all": the paired result of `metric` (a METRICS name); with `by_configuration`, also per
    family/configuration (matrix layout, analogy transform, sequence kind) after each family's row."""
    key = METRICS[metric]
    if baseline.get("puzzle_source") and baseline.get("puzzle_source") == candidate.get("puzzle_source"):
        baseline = {**baseline, "puzzles": by_seed_order(baseline["puzzles"])}
        candidate = {**candidate, "puzzles": by_seed_order(candidate["puzzles"])}
    results = {}
    for family in dict.fromkeys(entry["family"] for entry in baseline["puzzles"]):
        mine = [e for e in baseline["puzzles"] if e["family"] == family]
        theirs = [e for e in candidate["puzzles"] if e["family"] == family]
        groups = {family: (mine, theirs)}
        if by_configuration:
            for config in dict.fromkeys(str(e.get("configuration")) for e in mine):
                groups[f"{family}/{config}"] = ([e for e in mine if str(e.get("configuration")) == config],
                                                [e for e in theirs if str(e.get("configuration")) == config])
        for name, (ours, others) in groups.items():
            if any(e.get(key) is not None for e in ours) and any(e.get(key) is not None for e in others):
                results[name] = paired(ours, others, key)
    results["all"] = paired(baseline["puzzles"], candidate["puzzles"], key)
    return results


def format_comparison(results: dict[str, PairedResult], metric: str) -> str:
    width = max(16, *(len(name) for name in results))
    lines = [f"{metric:{width}} {'n':>5} {'baseline':>9} {'candidate':>9} {'only base':>9} {'only cand':>9} {'p':>8}"]
    for name, r in results.items():
        lines.append(f"{name:{width}} {r.n:>5} {100 * r.baseline_accuracy:>8.1f}% {100 * r.candidate_accuracy:>8.1f}% "
                     f"{r.only_baseline:>9} {r.only_candidate:>9} {r.p_value:>8.2g}")
    return "\n".join(lines)


def read_report(path: Path) -> dict[str, Any]:
    from engine.evaluate import validate_report

    if not path.is_file():
        raise FileNotFoundError(f"evaluation report not found: {path}")
    report = json.loads(path.read_text())
    validate_report(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, dict[str, PairedResult]]:
    parser = argparse.ArgumentParser(prog="python -m engine.compare", description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="evaluation JSON of the bundle in use (engine.evaluate --json)")
    parser.add_argument("candidate", type=Path, help="evaluation JSON of the bundle that would replace it")
    parser.add_argument("--metric", choices=[*METRICS, "both"], default="both")
    parser.add_argument("--by-configuration", action="store_true",
                        help="also compare each matrix layout, analogy transform and sequence kind")
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args(argv)
    baseline, candidate = read_report(args.baseline), read_report(args.candidate)
    metrics = list(METRICS) if args.metric == "both" else [args.metric]
    found = {metric: compare(baseline, candidate, metric, args.by_configuration) for metric in metrics}
    print("\n\n".join(format_comparison(results, metric) for metric, results in found.items()))
    if args.json:
        args.json.write_text(json.dumps({m: {k: asdict(v) for k, v in r.items()} for m, r in found.items()}, indent=1))
    return found


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.compare")
