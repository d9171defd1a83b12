"""Train a relation scorer for analogies (engine/serving/analogy_path.py serves it) and add it to a bundle.

An analogy's candidates differ from the answer by the change they make to the query, and the LVM's patch codes
lose the changes that move pixels far (flips, quarter turns, a transpose: 8-44% multiple choice on the card's
held-out analogies). The scorer embeds each (before, after) pair: a small convolutional net over both pictures and
their difference, beside how far `after` lies from each of the 8 flips and quarter turns of `before` (so a
mirror-image change is a pattern of 8 numbers, not a long-range pixel match). A candidate scores by how close the
(query, candidate) pair's embedding lies to the example pairs'; trained on the generator's analogies with each puzzle's
8 candidates as the classes. Serving adds its log-probabilities, times a weight chosen on held-out analogies, to
the LVM's. docs/model-experiments.md, section 34; engine/recipes/analogy_path.sh, e.g.

    python -m engine.analogy_probe data --n 50000 --seed 55000000 --out runs/ap/analogies.npz
    python -m engine.analogy_probe train --data runs/ap/analogies.npz --minutes 25 --out runs/ap/scorer
    python -m engine.analogy_probe weigh --scorer runs/ap/scorer/model.pt --bundle engine/bundles/default \
        --json runs/ap/weigh.json
    python -m engine.analogy_probe export --scorer runs/ap/scorer/model.pt --weight 4 --bundle engine/bundles/default
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.path_training import Checks, train_for_cpu_minutes
from puzzles.seeds import check_training_seed

SIZE = 32
MAX_PAIRS = 3
CANDIDATES = 8


def write_data(n: int, seed: int, out: str | Path, progress: bool = True) -> int:
    """n training analogies drawn at 32 px: up to 3 example pairs (zeros past the puzzle's count), the query and
    the 8 candidates, with the pair count, the answer's index and the transform, in one .npz."""
    from tqdm import tqdm

    from puzzles.generators import generate

    check_training_seed(seed)
    check_training_seed(seed + n - 1)
    pictures = np.zeros((n, 2 * MAX_PAIRS + 1 + CANDIDATES, SIZE, SIZE, 3), np.uint8)
    pairs, answers, transforms = np.zeros(n, np.int8), np.zeros(n, np.int8), []
    kept = 0
    for offset in tqdm(range(n), desc="analogies", mininterval=10, disable=not progress):
        try:
            puzzle = generate("analogy", seed + offset, size=SIZE)
        except RuntimeError:  # no fair puzzle at this seed
            continue
        count = (len(puzzle.panels) - 1) // 2
        pictures[kept, :2 * count] = puzzle.panels[:-1]
        pictures[kept, 2 * MAX_PAIRS] = puzzle.panels[-1]
        pictures[kept, 2 * MAX_PAIRS + 1:] = puzzle.candidates
        pairs[kept], answers[kept] = count, puzzle.answer_index
        transforms.append(puzzle.meta["transform"])
        kept += 1
    np.savez(out, pictures=pictures[:kept], pairs=pairs[:kept], answers=answers[:kept], transforms=np.array(transforms))
    return kept


def scorer_model(dim: int = 64) -> Any:
    """The pair embedder: (before, after) pictures in [0, 1], (N, 3, 32, 32) each -> (N, dim) unit vectors."""
    import torch
    from torch import nn

    class PairEmbedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dim = dim
            self.net = nn.Sequential(
                nn.Conv2d(9, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1),
                nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4 * 4, dim))
            self.turns = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, dim))

        def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
            poses = [before, before.flip(-1), before.flip(-2), before.flip(-1).flip(-2)]
            poses += [pose.transpose(-1, -2) for pose in poses]
            distances = torch.stack([(after - pose).abs().mean((1, 2, 3)) for pose in poses], -1)
            # how far each pose lies against the nearest: the pattern, whatever the pictures' contrast
            relative = (distances + 0.02) / (distances.min(-1, keepdim=True).values + 0.02)  # >= 1: its log is finite
            turns = self.turns(torch.cat([distances * 10, relative.log()], -1))
            features = self.net(torch.cat([before, after, after - before], 1)) + turns
            return features / features.norm(dim=-1, keepdim=True).clamp(min=1e-6)

    return PairEmbedder()


@dataclass
class ScorerConfig:
    data: str
    out: str
    minutes: float = 30.0  # CPU-minutes (process time)
    eval_every_min: float = 5.0
    held_out: int = 350
    batch_size: int = 32
    lr: float = 2e-3
    dim: int = 64
    sharpness: float = 10.0  # cosine similarities times this are the candidates' logits
    seed: int = 0


def candidate_logits(model: Any, pictures: Any, pairs: Any, sharpness: float) -> Any:
    """(B, 15, 3, 32, 32) puzzles as written by `write_data` -> (B, 8) logits: each candidate's similarity to the
    mean of the example pairs' embeddings."""
    import torch

    batch = len(pictures)
    examples = pictures[:, :2 * MAX_PAIRS].reshape(batch, MAX_PAIRS, 2, 3, SIZE, SIZE)
    embedded = model(examples[:, :, 0].flatten(0, 1), examples[:, :, 1].flatten(0, 1)).view(batch, MAX_PAIRS, -1)
    present = (torch.arange(MAX_PAIRS)[None, :] < pairs[:, None]).float()[..., None]
    rule = (embedded * present).sum(1) / present.sum(1)
    query = pictures[:, 2 * MAX_PAIRS][:, None].expand(-1, CANDIDATES, -1, -1, -1)
    candidates = model(query.flatten(0, 1), pictures[:, 2 * MAX_PAIRS + 1:].flatten(0, 1)).view(batch, CANDIDATES, -1)
    return sharpness * (candidates * rule[:, None]).sum(-1)


def held_out_analogies(n: int, first: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The card's held-out analogies in `write_data`'s layout."""
    from engine.evaluate import load_puzzles

    puzzles = load_puzzles("analogy", n, SIZE, first)
    pictures = np.zeros((len(puzzles), 2 * MAX_PAIRS + 1 + CANDIDATES, SIZE, SIZE, 3), np.uint8)
    for index, puzzle in enumerate(puzzles):
        count = (len(puzzle.panels) - 1) // 2
        pictures[index, :2 * count] = puzzle.panels[:-1]
        pictures[index, 2 * MAX_PAIRS] = puzzle.panels[-1]
        pictures[index, 2 * MAX_PAIRS + 1:] = puzzle.candidates
    return (pictures, np.array([(len(p.panels) - 1) // 2 for p in puzzles]),
            np.array([p.answer_index for p in puzzles]), [p.id for p in puzzles])


def as_tensor(pictures: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(pictures).permute(0, 1, 4, 2, 3).float() / 255.0


def evaluate_scorer(model: Any, held_out: tuple, sharpness: float) -> np.ndarray:
    """Each held-out analogy's 8 logits."""
    import torch

    pictures, pairs, _, _ = held_out
    model.eval()
    with torch.no_grad():
        logits = torch.cat([candidate_logits(model, as_tensor(pictures[i:i + 64]), torch.from_numpy(pairs[i:i + 64]),
                                             sharpness) for i in range(0, len(pictures), 64)])
    model.train()
    return logits.numpy()


def train_scorer(config: ScorerConfig) -> list[dict[str, Any]]:
    """Train for config.minutes CPU-minutes; held-out multiple choice to OUT/log.jsonl, weights to OUT/model.pt."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(config.seed)
    data = np.load(config.data)
    pictures, pairs, answers = data["pictures"], data["pairs"].astype(np.int64), data["answers"].astype(np.int64)
    model = scorer_model(config.dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    held_out = held_out_analogies(config.held_out)
    rng = np.random.default_rng(config.seed)

    def loss(used: float) -> Any:
        chosen = rng.integers(len(pictures), size=config.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = candidate_logits(model, as_tensor(pictures[chosen]), torch.from_numpy(pairs[chosen]),
                                      config.sharpness)
        return F.cross_entropy(logits.float(), torch.from_numpy(answers[chosen]))

    def lr(step: int, used: float) -> float:
        warmup = min(1.0, (step + 1) / 50)
        return config.lr * warmup * 0.5 * (1 + math.cos(math.pi * used / config.minutes))

    def measure(used: float, step: int) -> dict[str, Any]:
        logits = evaluate_scorer(model, held_out, config.sharpness)
        return {"cpu_minutes": round(used, 2), "analogies": step * config.batch_size,
                "multiple_choice": float(np.mean(logits.argmax(-1) == held_out[2]))}

    def save(path: Path) -> None:
        torch.save({"dim": config.dim, "sharpness": config.sharpness, "state": model.state_dict()}, path)

    return train_for_cpu_minutes(model, optimizer, config.minutes, loss, lr, clip=1.0,
                                 checks=Checks(Path(config.out), config.eval_every_min, measure, save))


def load_scorer(path: str | Path) -> tuple[Any, float]:
    import torch

    saved = torch.load(path, map_location="cpu")
    model = scorer_model(saved["dim"])
    model.load_state_dict(saved["state"])
    return model.eval(), float(saved["sharpness"])


def lvm_and_relation_scores(bundle_dir: str | Path, scorer: Any, sharpness: float, n: int,
                            first: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Per held-out analogy: its transform, the answer's index, the LVM's scores (the bundle's own rule, its
    analogy path left out) and the scorer's logits."""
    from engine.evaluate import load_puzzles
    from engine.serving.runtime import Bundle

    bundle = Bundle.load(bundle_dir)
    bundle.analogy_path = None
    puzzles = load_puzzles("analogy", n, SIZE, first)
    held_out = held_out_analogies(n, first)
    relation = evaluate_scorer(scorer, held_out, sharpness)
    return [(p.meta["transform"], int(p.answer_index), bundle.score(p.panels, p.candidates, family="analogy"),
             relation[i]) for i, p in enumerate(puzzles)]


def weight_table(scored: list[tuple[str, int, np.ndarray, np.ndarray]], weights: list[float]) -> dict[str, Any]:
    """Multiple choice of the LVM and the scorer together at each weight (0: the LVM alone), in all and per
    transform, and each puzzle's right or wrong (for a paired comparison)."""
    from engine.serving.analogy_path import log_softmax

    table: dict[str, Any] = {}
    for weight in weights:
        right = [int(np.argmax(log_softmax(lvm) + weight * log_softmax(rel)) == answer)
                 for _, answer, lvm, rel in scored]
        per: dict[str, list[int]] = {}
        for (transform, *_), hit in zip(scored, right, strict=True):
            per.setdefault(transform, []).append(hit)
        table[str(weight)] = {"multiple_choice": float(np.mean(right)), "right": right,
                              "transforms": {t: round(float(np.mean(h)), 3) for t, h in sorted(per.items())}}
    alone = [int(np.argmax(rel) == answer) for _, answer, _, rel in scored]
    table["scorer alone"] = {"multiple_choice": float(np.mean(alone)), "right": alone}
    return table


def export_analogy_path(scorer_path: str | Path, bundle: str | Path, weight: float) -> dict:
    """Add analogy_embedder.onnx (fp16-stored) to a bundle and name it in its manifest as its analogy path."""
    import torch

    from engine.bundle import read_manifest
    from engine.path_training import PathGraph, add_graphs

    bundle = Path(bundle)
    if int(read_manifest(bundle)["image_size"]) != SIZE:
        raise ValueError(f"the scorer reads {SIZE} px pictures; {bundle} serves another size")
    scorer, sharpness = load_scorer(scorer_path)
    name, pairs = "analogy_embedder.onnx", torch.export.Dim("pairs")
    graph = PathGraph(name, scorer, (torch.rand(9, 3, SIZE, SIZE), torch.rand(9, 3, SIZE, SIZE)), ["before", "after"],
                      ["relation"], ({0: pairs}, {0: pairs}), "fp16")
    return add_graphs(bundle, [graph], "analogy_path", {
        "embedder": name, "weight": weight, "sharpness": sharpness,
        "parameters": sum(p.numel() for p in scorer.parameters())})


def main(argv: list[str] | None = None) -> None:
    from engine.path_training import add_seeded_command, add_train_command

    parser = argparse.ArgumentParser(prog="python -m engine.analogy_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add_seeded_command(commands, "data", "write training analogies' pictures (.npz)", ".npz file")
    train = add_train_command(commands, "train the scorer and log held-out multiple choice", ScorerConfig.minutes)
    train.add_argument("--dim", type=int, default=ScorerConfig.dim)
    weigh = commands.add_parser("weigh", help="multiple choice of the LVM and the scorer together, per weight")
    weigh.add_argument("--scorer", required=True, help="model.pt of a `train` run")
    weigh.add_argument("--bundle", required=True, help="the bundle whose LVM it joins")
    weigh.add_argument("--n", type=int, default=200)
    weigh.add_argument("--first", type=int, default=350, help="skip this many held-out analogies")
    weigh.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    weigh.add_argument("--json", required=True, help="write the table here")
    export = commands.add_parser("export", help="add the scorer to a bundle as its analogy path")
    export.add_argument("--scorer", required=True, help="model.pt of a `train` run")
    export.add_argument("--bundle", required=True)
    export.add_argument("--weight", type=float, required=True, help="its log-probabilities' weight beside the LVM's")
    args = parser.parse_args(argv)
    if args.command == "data":
        print(f"{write_data(args.n, args.seed, args.out)} analogies -> {args.out}")
    elif args.command == "weigh":
        scorer, sharpness = load_scorer(args.scorer)
        table = weight_table(lvm_and_relation_scores(args.bundle, scorer, sharpness, args.n, args.first),
                             args.weights)
        Path(args.json).write_text(json.dumps(table) + "\n")
        for weight, row in table.items():
            print(f"{weight:>14}: {row['multiple_choice']:.3f}  {row.get('transforms', '')}")
    elif args.command == "export":
        print(json.dumps(export_analogy_path(args.scorer, args.bundle, args.weight), indent=2))
    else:
        train_scorer(ScorerConfig(data=args.data, out=args.out, minutes=args.minutes, dim=args.dim))


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.analogy_probe")
