"""Rules or sight: the LVM's decoder trained on the matrices' attributes as tokens instead of their pixels' codes.

A matrix the visual model gets wrong may be one whose rule it cannot learn, or one whose attributes it cannot see
in a panel's codes. This probe removes the seeing: each panel becomes, per component (at most two), one token for
its type, size, colour and the set of grid positions it fills, and the same decoder shape learns the rules from
those. `sight` puts the seeing back without the codes: a small convolutional reader, fitted on training matrices'
32 px pictures and their attributes, reads the held-out pictures, and the trained decoder ranks the candidates
from what was read. docs/model-experiments.md, section 31, has what both showed.

    python -m engine.attribute_probe data --n 150000 --seed 47000000 --out runs/probe/matrices.npy
    python -m engine.attribute_probe train --data runs/probe/matrices.npy --minutes 15 --out runs/probe/run
    python -m engine.attribute_probe sight-data --n 20000 --seed 48500000 --out runs/probe/pictures.npz
    python -m engine.attribute_probe sight --data runs/probe/pictures.npz --reasoner runs/probe/run/model.pt \\
        --minutes 10 --json runs/probe/sight.json

`train` logs held-out multiple choice (the card's matrices: 50 per layout, the sum of the answer tokens'
log-likelihoods per candidate) every `--eval-every-min` CPU-minutes to OUT/log.jsonl, and keeps the weights of the
last check in OUT/model.pt.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puzzles.generators.matrix import GREY_LEVELS, LAYOUT_COMPONENTS, LAYOUTS, SHAPE_KINDS, SIZE_LEVELS
from puzzles.puzzle import Puzzle
from puzzles.seeds import check_training_seed

LEVELS = {"type": len(SHAPE_KINDS), "size": len(SIZE_LEVELS), "colour": len(GREY_LEVELS)}
CELLS = max(len(component.slots) for layout in LAYOUT_COMPONENTS.values() for component in layout)  # 3 x 3 grid
POSITION_SETS = 1 << CELLS  # a component's filled cells, one token for the set
SLOTS = max(len(layout) for layout in LAYOUT_COMPONENTS.values())  # outer/inner, left/right, top/bottom
PANEL_TOKENS = SLOTS * (len(LEVELS) + 1)
TYPE0 = 0
SIZE0 = TYPE0 + LEVELS["type"]
COLOUR0 = SIZE0 + LEVELS["size"]
POSITIONS0 = COLOUR0 + LEVELS["colour"]
LAYOUT0 = POSITIONS0 + POSITION_SETS
EMPTY = LAYOUT0 + len(LAYOUTS)
BOS = EMPTY + 1
VOCAB = -(-(BOS + 1) // 8) * 8  # rounded up to a multiple of 8, as the LVM's vocabulary
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


def training_matrices(n: int, seed: int, progress: bool = True) -> Iterator[Puzzle]:
    """Matrices at 32 px on training seeds seed .. seed + n - 1 (a seed whose candidates the generator cannot draw
    apart is skipped)."""
    from tqdm import tqdm

    from puzzles.generators import generate

    check_training_seed(seed)
    check_training_seed(seed + n - 1)
    for offset in tqdm(range(n), desc="matrices", mininterval=10, disable=not progress):
        try:
            yield generate("matrix", seed + offset, size=32)
        except RuntimeError:  # "candidates keep rendering alike": the generator gave up on this seed
            continue


def write_data(n: int, seed: int, out: str | Path, progress: bool = True) -> int:
    """n training matrices as rows of ROW tokens; returns the rows kept."""
    rows = np.zeros((n, ROW), np.int16)
    kept = 0
    for puzzle in training_matrices(n, seed, progress):
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


def reasoner_model(weights: str | Path | None = None) -> Any:
    """The probe's decoder: the shipped LVM's shape over the attribute vocabulary (trained weights when given)."""
    import torch

    from engine.model import LVM, LVMConfig

    model = LVM(LVMConfig(vocab_size=VOCAB, context_length=PROMPT_TOKENS + PANEL_TOKENS, n_layer=6, d_model=256,
                          n_head=4, n_kv_head=4, ffn_hidden=704))
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu"))
    return model


def train_probe(config: ProbeConfig) -> list[dict[str, Any]]:
    """Train the probe for config.minutes CPU-minutes; returns the held-out checks (also in OUT/log.jsonl)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(config.seed)
    rows = np.load(config.data)
    if rows.ndim != 2 or rows.shape[1] != ROW:
        raise ValueError(f"{config.data}: expected rows of {ROW} tokens from `attribute_probe data`")
    model = reasoner_model()
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
                torch.save(model.state_dict(), out / "model.pt")
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


# --- sight: the attributes read back from the 32 px pixels the LVM sees ------------------------------------------

HEAD = (*LEVELS.values(), CELLS)  # per slot: type, size, colour classes, then one bit per cell


def panel_targets(puzzle: Puzzle) -> tuple[np.ndarray, np.ndarray]:
    """A matrix's 16 pictures (8 panels, 8 candidates) at their size, and each one's (SLOTS, 4) attributes: type,
    size, colour and the cells' bit mask per component, -1 for an empty slot."""
    meta = puzzle.meta
    images = np.stack([*puzzle.panels, *puzzle.candidates])
    targets = np.full((len(images), SLOTS, 4), -1, np.int16)
    for index, described in enumerate([*meta["panels"], *meta["candidates"]]):
        for slot, component in enumerate(meta["components"]):
            values = described[component]
            targets[index, slot] = (values["type"], values["size"], values["colour"],
                                    sum(1 << cell for cell in values["positions"]))
    return images, targets


def write_sight_data(n: int, seed: int, out: str | Path, progress: bool = True) -> int:
    """The pictures and attributes of n training matrices (32 px) in one .npz; returns the matrices kept."""
    images, targets, layouts = [], [], []
    for puzzle in training_matrices(n, seed, progress):
        pictures, described = panel_targets(puzzle)
        images.append(pictures)
        targets.append(described)
        layouts += [LAYOUTS.index(puzzle.meta["layout"])] * len(pictures)
    np.savez(out, images=np.concatenate(images), targets=np.concatenate(targets), layouts=np.array(layouts, np.int8))
    return len(images)


def reader_model() -> Any:
    """A small convolutional reader: a 32 px picture -> its layout and, per slot, type, size, colour and cells."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, len(LAYOUTS) + SLOTS * sum(HEAD)))


def reader_loss(outputs: Any, targets: Any, layouts: Any) -> Any:
    import torch
    import torch.nn.functional as F

    loss = F.cross_entropy(outputs[:, :len(LAYOUTS)], layouts)
    slots = outputs[:, len(LAYOUTS):].view(len(outputs), SLOTS, sum(HEAD))
    present = targets[..., 0] >= 0
    start = 0
    for field, classes in enumerate(HEAD[:3]):
        loss = loss + F.cross_entropy(slots[..., start:start + classes][present], targets[..., field][present])
        start += classes
    bits = ((targets[..., 3:4] >> torch.arange(CELLS)) & 1).float()
    return loss + F.binary_cross_entropy_with_logits(slots[..., start:][present], bits[present]) * CELLS


def read_tokens(outputs: Any) -> tuple[int, list[list[int]]]:
    """Reader outputs for a matrix's pictures -> the layout most pictures show, and each picture's panel tokens."""
    layout = int(outputs[:, :len(LAYOUTS)].argmax(-1).mode().values)
    slots = outputs[:, len(LAYOUTS):].view(len(outputs), SLOTS, sum(HEAD))
    described = []
    for picture in slots:
        panel = {}
        for slot in range(len(LAYOUT_COMPONENTS[LAYOUTS[layout]])):
            start, values = 0, {}
            for name, classes in zip(LEVELS, HEAD[:3], strict=True):
                values[name] = int(picture[slot, start:start + classes].argmax())
                start += classes
            values["positions"] = [cell for cell in range(CELLS) if picture[slot, start + cell] > 0]
            panel[str(slot)] = values
        described.append(panel_tokens(panel, [str(slot) for slot in range(len(panel))]))
    return layout, described


def train_reader(data: str | Path, minutes: float, seed: int = 0) -> Any:
    """Fit the reader on the pictures of `data` for `minutes` CPU-minutes."""
    import torch

    torch.manual_seed(seed)
    arrays = np.load(data)
    images = torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2)
    targets, layouts = torch.from_numpy(arrays["targets"]).long(), torch.from_numpy(arrays["layouts"]).long()
    reader = reader_model()
    optimizer = torch.optim.AdamW(reader.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    started = time.process_time()
    while (used := (time.process_time() - started) / 60) < minutes:
        batch = torch.from_numpy(rng.integers(len(images), size=128))
        for group in optimizer.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * used / minutes))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = reader(images[batch].float() / 255.0)
        loss = reader_loss(outputs.float(), targets[batch], layouts[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return reader.eval()


def sight_report(reader: Any, reasoner: Any, per_layout: int) -> dict[str, Any]:
    """On the card's held-out matrices: the share of pictures the reader reads whole (every attribute right), and
    multiple choice when the reasoner (a trained probe) ranks the candidates from the reader's tokens instead of the
    true ones; both per layout."""
    import torch

    from engine.evaluate import load_puzzles

    reading: dict[str, list[bool]] = {}
    read_items = []
    for puzzle in load_puzzles("matrix:all", per_layout * len(LAYOUTS), 32):
        pictures, _ = panel_targets(puzzle)
        with torch.no_grad():
            outputs = reader(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0)
        layout, tokens = read_tokens(outputs)
        true_prompt, true_candidates, answer = attribute_sentence(puzzle)
        truth = [true_prompt[2 + i * PANEL_TOKENS:2 + (i + 1) * PANEL_TOKENS] for i in range(8)] + true_candidates
        name = puzzle.meta["layout"]
        reading.setdefault(name, []).extend(read == true for read, true in zip(tokens, truth, strict=True))
        read_items.append((name, ([BOS, LAYOUT0 + layout] + sum(tokens[:8], []), tokens[8:], answer)))
    return {"pictures_read_whole": {name: float(np.mean(hits)) for name, hits in reading.items()},
            "multiple_choice_from_pixels": multiple_choice(reasoner, read_items)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.attribute_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    sight_data = commands.add_parser("sight-data", help="write training matrices' pictures and attributes (.npz)")
    sight_data.add_argument("--n", type=int, required=True)
    sight_data.add_argument("--seed", type=int, required=True, help="first training seed")
    sight_data.add_argument("--out", required=True, help=".npz file")
    sight = commands.add_parser("sight", help="fit the reader, then rank held-out candidates from what it reads")
    sight.add_argument("--data", required=True, help="from sight-data")
    sight.add_argument("--reasoner", required=True, help="model.pt of a `train` run")
    sight.add_argument("--minutes", type=float, default=10.0, help="CPU-minutes to fit the reader")
    sight.add_argument("--per-layout", type=int, default=ProbeConfig.per_layout)
    sight.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    if args.command == "data":
        print(f"{write_data(args.n, args.seed, args.out)} matrices -> {args.out}")
    elif args.command == "sight-data":
        print(f"{write_sight_data(args.n, args.seed, args.out)} matrices -> {args.out}")
    elif args.command == "sight":
        report = sight_report(train_reader(args.data, args.minutes), reasoner_model(args.reasoner).eval(),
                              args.per_layout)
        print(json.dumps(report, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    else:
        train_probe(ProbeConfig(data=args.data, out=args.out, minutes=args.minutes,
                                eval_every_min=args.eval_every_min, per_layout=args.per_layout))


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.attribute_probe")
