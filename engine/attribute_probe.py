"""Rules or sight: the LVM's decoder trained on the matrices' attributes as tokens instead of their pixels' codes.

A matrix the visual model gets wrong may be one whose rule it cannot learn, or one whose attributes it cannot see
in a panel's codes. This probe removes the seeing: each panel becomes, per component (at most two), one token for
its type, size, colour and the set of grid positions it fills, and the same decoder shape learns the rules from
those. docs/model-experiments.md, section 31, has what it showed.

    python -m engine.attribute_probe data --n 150000 --seed 47000000 --out runs/probe/matrices.npy
    python -m engine.attribute_probe train --data runs/probe/matrices.npy --minutes 15 --out runs/probe/run

`train` logs held-out multiple choice (the card's matrices: 50 per layout, the sum of the answer tokens'
log-likelihoods per candidate) every `--eval-every-min` CPU-minutes to OUT/log.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puzzles.puzzle import Puzzle
from puzzles.seeds import check_training_seed

LAYOUTS = ("center", "grid2x2", "grid3x3", "left_right", "up_down", "out_in", "out_in_grid")
LEVELS = {"type": 5, "size": 5, "colour": 6}
POSITION_SETS = 512  # subsets of at most 9 grid cells
SLOTS = 2  # components per panel (outer/inner, left/right, top/bottom; one for the rest)
PANEL_TOKENS = SLOTS * (len(LEVELS) + 1)
TYPE0, SIZE0, COLOUR0 = 0, 5, 10
POSITIONS0 = COLOUR0 + LEVELS["colour"]
LAYOUT0 = POSITIONS0 + POSITION_SETS
EMPTY = LAYOUT0 + len(LAYOUTS)
BOS = EMPTY + 1
VOCAB = 544  # BOS + 1, rounded up to a multiple of 8
PROMPT_TOKENS = 2 + 8 * PANEL_TOKENS  # BOS, layout, 8 context panels
CANDIDATES = 8
ROW = PROMPT_TOKENS + CANDIDATES * PANEL_TOKENS + 1  # a stored puzzle: prompt, candidates, answer index


def panel_tokens(panel: dict[str, dict[str, Any]], components: list[str]) -> list[int]:
    """One panel's attributes as tokens: type, size, colour, positions per component slot."""
    tokens: list[int] = []
    for slot in range(SLOTS):
        if slot >= len(components):
            tokens += [EMPTY] * (len(LEVELS) + 1)
            continue
        values = panel[components[slot]]
        cells = sum(1 << cell for cell in values["positions"])
        for name, limit in (*LEVELS.items(), ("positions", POSITION_SETS)):
            value = cells if name == "positions" else values[name]
            if not 0 <= value < limit:
                raise ValueError(f"{name} {value} is outside the probe's {limit} levels")
        tokens += [TYPE0 + values["type"], SIZE0 + values["size"], COLOUR0 + values["colour"], POSITIONS0 + cells]
    return tokens


def attribute_sentence(puzzle: Puzzle) -> tuple[list[int], list[list[int]], int]:
    """A generated matrix as (prompt tokens, each candidate's tokens, answer index), from its meta."""
    meta = puzzle.meta
    if puzzle.family != "matrix" or "panels" not in meta or puzzle.answer_index is None:
        raise ValueError(f"puzzle {puzzle.id} is not a generated matrix with its attributes in meta")
    components = meta["components"]
    if len(components) > SLOTS:
        raise ValueError(f"layout {meta['layout']} has {len(components)} components; the probe holds {SLOTS}")
    prompt = [BOS, LAYOUT0 + LAYOUTS.index(meta["layout"])]
    for panel in meta["panels"]:
        prompt += panel_tokens(panel, components)
    candidates = [panel_tokens(candidate, components) for candidate in meta["candidates"]]
    return prompt, candidates, int(puzzle.answer_index)


def write_data(n: int, seed: int, out: str | Path, progress: bool = True) -> int:
    """n training matrices from consecutive seeds as rows of ROW tokens (a seed whose candidates the generator
    cannot draw apart is skipped); returns the rows kept."""
    from tqdm import tqdm

    from puzzles.generators import generate

    check_training_seed(seed)
    check_training_seed(seed + n - 1)
    rows = np.zeros((n, ROW), np.int16)
    kept = 0
    for offset in tqdm(range(n), desc="matrices", mininterval=10, disable=not progress):
        try:
            puzzle = generate("matrix", seed + offset, size=32)
        except RuntimeError:  # "candidates keep rendering alike": the generator gave up on this seed
            continue
        prompt, candidates, answer = attribute_sentence(puzzle)
        rows[kept] = prompt + sum(candidates, []) + [answer]
        kept += 1
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.save(out, rows[:kept])
    return kept


def held_out_matrices(per_layout: int) -> list[tuple[str, tuple[list[int], list[list[int]], int]]]:
    """The card's held-out matrices (each layout in turn), as (layout, attribute sentence)."""
    from engine.evaluate import load_puzzles

    puzzles = load_puzzles("matrix:all", per_layout * len(LAYOUTS), 32)
    return [(puzzle.meta["layout"], attribute_sentence(puzzle)) for puzzle in puzzles]


def multiple_choice(model: Any, items: list[tuple[str, tuple[list[int], list[list[int]], int]]]) -> dict[str, float]:
    """Per layout, the share of items whose answer has the highest summed log-likelihood."""
    import torch

    right: dict[str, list[bool]] = {}
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for layout, (prompt, candidates, answer) in items:
            tokens = torch.tensor([prompt + candidate for candidate in candidates])
            log_probs = torch.log_softmax(model(tokens[:, :-1])[0].float(), dim=-1)
            picked = log_probs.gather(-1, tokens[:, 1:, None])[..., 0][:, -PANEL_TOKENS:].sum(-1)
            right.setdefault(layout, []).append(int(picked.argmax()) == answer)
    model.train()
    return {layout: float(np.mean(hits)) for layout, hits in right.items()}


def held_out_check(model: Any, items: list[Any], cpu_minutes: float, puzzles: int, tokens: int) -> dict[str, Any]:
    """One log record: the training so far and held-out multiple choice (mean of the layouts, and each)."""
    per_layout = multiple_choice(model, items)
    return {"cpu_minutes": round(cpu_minutes, 2), "puzzles": puzzles, "tokens": tokens,
            "multiple_choice": float(np.mean(list(per_layout.values()))), "layouts": per_layout}


@dataclass
class ProbeConfig:
    data: str
    out: str
    minutes: float = 15.0  # CPU-minutes of training (process time, so a shared machine gives equal compute)
    eval_every_min: float = 5.0
    per_layout: int = 50  # held-out matrices per layout
    batch_size: int = 32
    lr: float = 1e-3
    context_weight: float = 0.3  # loss weight of the prompt's tokens (the answer's: 1), as the LVM trains
    seed: int = 0


def sentences(rows: np.ndarray) -> np.ndarray:
    """Stored rows -> training sentences: the prompt followed by the answer's tokens."""
    answers = rows[:, -1].astype(np.int64)
    candidates = rows[:, PROMPT_TOKENS:-1].reshape(len(rows), CANDIDATES, PANEL_TOKENS)
    return np.concatenate([rows[:, :PROMPT_TOKENS], candidates[np.arange(len(rows)), answers]], 1).astype(np.int64)


def train_probe(config: ProbeConfig) -> list[dict[str, Any]]:
    """Train the probe for config.minutes CPU-minutes; returns the held-out checks (also in OUT/log.jsonl)."""
    import torch
    import torch.nn.functional as F

    from engine.model import LVM, LVMConfig

    torch.manual_seed(config.seed)
    rows = np.load(config.data)
    if rows.ndim != 2 or rows.shape[1] != ROW:
        raise ValueError(f"{config.data}: expected rows of {ROW} tokens from `attribute_probe data`")
    model = LVM(LVMConfig(vocab_size=VOCAB, context_length=PROMPT_TOKENS + PANEL_TOKENS, n_layer=6, d_model=256,
                          n_head=4, n_kv_head=4, ffn_hidden=704))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.1)
    items = held_out_matrices(config.per_layout)
    weights = torch.full((PROMPT_TOKENS + PANEL_TOKENS - 1,), config.context_weight)
    weights[0] = 0.0  # the layout token follows BOS whatever the puzzle
    weights[-PANEL_TOKENS:] = 1.0
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    checks: list[dict[str, Any]] = []
    started, step, next_check = time.process_time(), 0, 0.0
    with (out / "log.jsonl").open("a") as log:
        while True:
            used = (time.process_time() - started) / 60
            if used >= next_check or used >= config.minutes:
                puzzles = step * config.batch_size
                check = held_out_check(model, items, used, puzzles, puzzles * weights.numel())
                checks.append(check)
                log.write(json.dumps(check) + "\n")
                log.flush()
                print(json.dumps(check), flush=True)
                next_check += config.eval_every_min
                if used >= config.minutes:
                    return checks
            batch = torch.from_numpy(sentences(rows[rng.integers(len(rows), size=config.batch_size)]))
            warmup = min(1.0, (step + 1) / 50)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * warmup * (0.1 + 0.45 * (1 + math.cos(math.pi * used / config.minutes)))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(batch[:, :-1])[0]
            losses = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="none")
            loss = (losses.view(len(batch), -1) * weights).sum() / (weights.sum() * len(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="write training matrices as attribute rows")
    data.add_argument("--n", type=int, required=True)
    data.add_argument("--seed", type=int, required=True, help="first training seed")
    data.add_argument("--out", required=True, help=".npy file")
    train = commands.add_parser("train", help="train the probe and log held-out multiple choice")
    train.add_argument("--data", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--minutes", type=float, default=ProbeConfig.minutes)
    train.add_argument("--eval-every-min", type=float, default=ProbeConfig.eval_every_min)
    train.add_argument("--per-layout", type=int, default=ProbeConfig.per_layout)
    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            print(f"{write_data(args.n, args.seed, args.out)} matrices -> {args.out}")
        else:
            train_probe(ProbeConfig(data=args.data, out=args.out, minutes=args.minutes,
                                    eval_every_min=args.eval_every_min, per_layout=args.per_layout))
    except ValueError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
