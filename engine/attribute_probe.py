"""Rules or sight: the LVM's decoder trained on the matrices' attributes as tokens instead of their pixels' codes;
and what came of it, the bundle's matrix path (engine/serving/matrix_path.py serves it).

A matrix the visual model gets wrong may be one whose rule it cannot learn, or one whose attributes it cannot see
in a panel's codes. This probe removes the seeing: each panel becomes, per component (at most two), one token for
its type, size, colour and the set of grid positions it fills, and a decoder learns the rules from those (the
reasoner). `reader` puts the seeing back without the codes: a small convolutional reader, fitted on training
matrices' pictures and their attributes; `sight` has it read the card's held-out pictures and the reasoner rank
the candidates from what was read; `export` adds both to a bundle. docs/model-experiments.md, sections 31-32, has
what they showed; engine/recipes/matrix_path.sh the commands that made the shipped pair, e.g.

    python -m engine.attribute_probe data --n 150000 --seed 47000000 --out runs/mp/matrices.npy
    python -m engine.attribute_probe train --data runs/mp/matrices.npy --minutes 40 --n-layer 4 --d-model 192 \
        --ffn-hidden 512 --out runs/mp/reasoner
    python -m engine.attribute_probe sight-data --n 12000 --seed 49000000 --draw-size 96 --out runs/mp/pictures96.npz
    python -m engine.attribute_probe reader --data runs/mp/pictures32.npz runs/mp/pictures96.npz --minutes 40 \
        --out runs/mp/reader.pt
    python -m engine.attribute_probe sight --reader runs/mp/reader.pt --reasoner runs/mp/reasoner/model.pt
    python -m engine.attribute_probe export --reader runs/mp/reader.pt --reasoner runs/mp/reasoner/model.pt \
        --bundle engine/bundles/default

`train` logs held-out multiple choice (the card's matrices: 50 per layout, the sum of the answer tokens'
log-likelihoods per candidate) every `--eval-every-min` CPU-minutes to OUT/log.jsonl, and keeps the weights of the
last check (with the decoder's shape) in OUT/model.pt.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.path_training import Checks, fit_reader, train_for_cpu_minutes
from engine.serving.matrix_path import (
    BOS,
    CELLS,
    HEAD,
    LAYOUT0,
    PANEL_TOKENS,
    PROMPT_TOKENS,
    READER_OUTPUTS,
    READER_SIZE,
    SLOTS,
    VOCAB,
    Gate,
    panel_tokens,
    read_outputs,
)
from puzzles.matrix_panels import LAYOUTS
from puzzles.puzzle import Puzzle
from puzzles.seeds import check_training_seed

CANDIDATES = 8
ROW = PROMPT_TOKENS + CANDIDATES * PANEL_TOKENS + 1  # a stored puzzle: prompt, candidates, answer index


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


def training_matrices(n: int, seed: int, progress: bool = True, size: int = READER_SIZE) -> Iterator[Puzzle]:
    """Matrices drawn at `size` px on training seeds seed .. seed + n - 1 (a seed whose candidates the generator
    cannot draw apart is skipped)."""
    from tqdm import tqdm

    from puzzles.generators import generate

    check_training_seed(seed)
    check_training_seed(seed + n - 1)
    for offset in tqdm(range(n), desc="matrices", mininterval=10, disable=not progress):
        try:
            yield generate("matrix", seed + offset, size=size)
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
    n_layer: int = 6  # the shipped LVM's shape by default; the bundle's matrix path ships a smaller one
    d_model: int = 256
    ffn_hidden: int = 704


def sentences(rows: np.ndarray) -> np.ndarray:
    """Stored rows -> training sentences: the prompt followed by the answer's tokens."""
    answers = rows[:, -1].astype(np.int64)
    candidates = rows[:, PROMPT_TOKENS:-1].reshape(len(rows), CANDIDATES, PANEL_TOKENS)
    return np.concatenate([rows[:, :PROMPT_TOKENS], candidates[np.arange(len(rows)), answers]], 1).astype(np.int64)


def reasoner_config(n_layer: int = 6, d_model: int = 256, ffn_hidden: int = 704) -> Any:
    """The probe decoder's LVMConfig: a LLaMA-like decoder over the attribute vocabulary, 4 heads."""
    from engine.model import LVMConfig

    return LVMConfig(vocab_size=VOCAB, context_length=PROMPT_TOKENS + PANEL_TOKENS, n_layer=n_layer,
                     d_model=d_model, n_head=4, n_kv_head=4, ffn_hidden=ffn_hidden)


def reasoner_model(weights: str | Path | None = None, **shape: int) -> Any:
    """The probe's decoder (`reasoner_config(**shape)`), or the trained one a `train` run saved at `weights`."""
    import torch

    from engine.model import LVM, LVMConfig

    if weights is None:
        return LVM(reasoner_config(**shape))
    saved = torch.load(weights, map_location="cpu")
    model = LVM(LVMConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    return model


def train_probe(config: ProbeConfig) -> list[dict[str, Any]]:
    """Train the probe for config.minutes CPU-minutes; returns the held-out checks (also in OUT/log.jsonl)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(config.seed)
    rows = np.load(config.data)
    if rows.ndim != 2 or rows.shape[1] != ROW:
        raise ValueError(f"{config.data}: expected rows of {ROW} tokens from `attribute_probe data`")
    model = reasoner_model(n_layer=config.n_layer, d_model=config.d_model, ffn_hidden=config.ffn_hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.1)
    items = held_out_matrices(config.per_layout)
    weights = torch.full((PROMPT_TOKENS + PANEL_TOKENS - 1,), config.context_weight)
    weights[0] = 0.0  # the layout token follows BOS whatever the puzzle
    weights[-PANEL_TOKENS:] = 1.0
    rng = np.random.default_rng(config.seed)

    def loss(used: float) -> Any:
        batch = torch.from_numpy(sentences(rows[rng.integers(len(rows), size=config.batch_size)]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(batch[:, :-1])[0]
        losses = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="none")
        return (losses.view(len(batch), -1) * weights).sum() / (weights.sum() * len(batch))

    def lr(step: int, used: float) -> float:
        warmup = min(1.0, (step + 1) / 50)
        return config.lr * warmup * (0.1 + 0.45 * (1 + math.cos(math.pi * used / config.minutes)))

    def measure(used: float, step: int) -> dict[str, Any]:
        puzzles = step * config.batch_size
        return held_out_check(model, items, used, puzzles, puzzles * weights.numel())

    def save(path: Path) -> None:
        torch.save({"config": asdict(model.config), "state": model.state_dict()}, path)

    return train_for_cpu_minutes(model, optimizer, config.minutes, loss, lr, clip=1.0,
                                 checks=Checks(Path(config.out), config.eval_every_min, measure, save))


# --- sight: the attributes read back from the 32 px pixels the LVM sees ------------------------------------------

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


def write_sight_data(n: int, seed: int, out: str | Path, progress: bool = True, draw_size: int = READER_SIZE) -> int:
    """The pictures and attributes of n training matrices in one .npz, drawn at `draw_size` px and shrunk to the
    reader's 32 as serving shrinks them (the bank's matrices are drawn at 96); returns the matrices kept."""
    from puzzles.images import to_square

    images, targets, layouts = [], [], []
    for puzzle in training_matrices(n, seed, progress, draw_size):
        pictures, described = panel_targets(puzzle)
        images.append(np.stack([to_square(picture, READER_SIZE) for picture in pictures]))
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
        nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, READER_OUTPUTS))


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


def load_reader(path: str | Path) -> Any:
    """A reader a `reader` run saved."""
    import torch

    reader = reader_model()
    reader.load_state_dict(torch.load(path, map_location="cpu"))
    return reader.eval()


def train_reader(data: str | Path | list[str | Path], minutes: float, seed: int = 0) -> Any:
    """Fit the reader on the pictures of `data` (one sight-data file or several) for `minutes` CPU-minutes."""
    import torch

    torch.manual_seed(seed)
    files = [np.load(path) for path in (data if isinstance(data, list) else [data])]
    images = torch.from_numpy(np.concatenate([f["images"] for f in files])).permute(0, 3, 1, 2)
    targets = torch.from_numpy(np.concatenate([f["targets"] for f in files])).long()
    layouts = torch.from_numpy(np.concatenate([f["layouts"] for f in files])).long()
    return fit_reader(reader_model(), images, lambda outputs, batch: reader_loss(outputs, targets[batch],
                                                                                 layouts[batch]), minutes, seed)


def sight_report(reader: Any, reasoner: Any, per_layout: int, draw_size: int = READER_SIZE) -> dict[str, Any]:
    """On the card's held-out matrices (drawn at `draw_size` px, shrunk to 32): the share of pictures the reader
    reads whole (every attribute right), and multiple choice when the reasoner (a trained probe) ranks the
    candidates from the reader's tokens instead of the true ones; both per layout."""
    import torch

    from engine.evaluate import load_puzzles
    from puzzles.images import to_square

    read_whole: dict[str, list[bool]] = {}
    read_items = []
    for puzzle in load_puzzles("matrix:all", per_layout * len(LAYOUTS), draw_size):
        pictures = np.stack([to_square(picture, READER_SIZE) for picture in panel_targets(puzzle)[0]])
        with torch.no_grad():
            reading = read_outputs(reader(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0).numpy())
        tokens = reading.panels
        true_prompt, true_candidates, answer = attribute_sentence(puzzle)
        truth = [true_prompt[2 + i * PANEL_TOKENS:2 + (i + 1) * PANEL_TOKENS] for i in range(8)] + true_candidates
        name = puzzle.meta["layout"]
        read_whole.setdefault(name, []).extend(read == true for read, true in zip(tokens, truth, strict=True))
        read_items.append((name, ([BOS, LAYOUT0 + LAYOUTS.index(reading.layout)] + sum(tokens[:8], []), tokens[8:],
                                  answer)))
    return {"pictures_read_whole": {name: float(np.mean(hits)) for name, hits in read_whole.items()},
            "multiple_choice_from_pixels": multiple_choice(reasoner, read_items)}


# --- export: the reader and the reasoner as a bundle's matrix path (engine.serving.matrix_path) --------------------


def export_matrix_path(reader_path: str | Path, reasoner_path: str | Path, bundle: str | Path, gate: Gate) -> dict:
    """Add reader.onnx (fp16-stored) and reasoner.onnx (int8 weights) to a bundle and name them in its manifest
    as its matrix path, used where the reading passes `gate`."""
    import torch

    from engine.bundle import read_manifest
    from engine.path_training import PathGraph, add_graphs, logits_only

    bundle = Path(bundle)
    size = int(read_manifest(bundle)["image_size"])
    if size != READER_SIZE:
        raise ValueError(f"the reader reads {READER_SIZE} px pictures; {bundle} serves {size} px")
    reader, reasoner = load_reader(reader_path), reasoner_model(reasoner_path).eval()
    pictures, rows, length = torch.export.Dim("pictures"), torch.export.Dim("rows"), torch.export.Dim("length")
    graphs = [
        PathGraph("reader.onnx", reader, (torch.rand(16, 3, size, size),), ["images"], ["attributes"],
                  ({0: pictures},), "fp16"),
        PathGraph("reasoner.onnx", logits_only(reasoner), (torch.full((8, PROMPT_TOKENS + PANEL_TOKENS - 1), BOS),),
                  ["tokens"], ["logits"], ({0: rows, 1: length},), "int8")]
    return add_graphs(bundle, graphs, "matrix_path", {
        "reader": "reader.onnx", "reasoner": "reasoner.onnx", "sure": asdict(gate),
        "parameters": {"reader": sum(p.numel() for p in reader.parameters()), "reasoner": reasoner.num_parameters()},
        "reasoner_config": asdict(reasoner.config)})


def main(argv: list[str] | None = None) -> None:
    from engine.path_training import add_reader_command, add_seeded_command, add_train_command

    parser = argparse.ArgumentParser(prog="python -m engine.attribute_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add_seeded_command(commands, "data", "write training matrices as attribute rows", ".npy file")
    train = add_train_command(commands, "train the probe and log held-out multiple choice", ProbeConfig.minutes)
    train.add_argument("--eval-every-min", type=float, default=ProbeConfig.eval_every_min)
    train.add_argument("--per-layout", type=int, default=ProbeConfig.per_layout)
    for name in ("n_layer", "d_model", "ffn_hidden"):
        train.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(ProbeConfig, name))
    sight_data = add_seeded_command(commands, "sight-data", "write training matrices' pictures and attributes (.npz)",
                                    ".npz file")
    sight_data.add_argument("--draw-size", type=int, default=READER_SIZE,
                            help="draw at this size, then shrink to the reader's 32 px (as serving does)")
    add_reader_command(commands, "pictures")
    sight = commands.add_parser("sight", help="rank held-out candidates from what a reader reads")
    sight.add_argument("--reader", required=True, help=".pt file of a `reader` run")
    sight.add_argument("--reasoner", required=True, help="model.pt of a `train` run")
    sight.add_argument("--per-layout", type=int, default=ProbeConfig.per_layout)
    sight.add_argument("--draw-size", type=int, default=READER_SIZE, help="draw the held-out matrices at this size")
    sight.add_argument("--json", help="write the report here too")
    export = commands.add_parser("export", help="add a reader and a reasoner to a bundle as its matrix path")
    export.add_argument("--reader", required=True, help=".pt file of a `reader` run")
    export.add_argument("--reasoner", required=True, help="model.pt of a `train` run")
    export.add_argument("--bundle", required=True, help="the bundle directory to add them to")
    export.add_argument("--sure-attribute", type=float, default=Gate.attribute,
                        help="a picture is read surely when each of its attributes is at least this likely")
    export.add_argument("--sure-pictures", type=float, default=Gate.pictures,
                        help="the path answers when at least this share of the pictures is read surely")
    args = parser.parse_args(argv)
    if args.command == "data":
        print(f"{write_data(args.n, args.seed, args.out)} matrices -> {args.out}")
    elif args.command == "sight-data":
        print(f"{write_sight_data(args.n, args.seed, args.out, draw_size=args.draw_size)} matrices -> {args.out}")
    elif args.command == "export":
        gate = Gate(args.sure_attribute, args.sure_pictures)
        print(json.dumps(export_matrix_path(args.reader, args.reasoner, args.bundle, gate), indent=2))
    elif args.command == "reader":
        import torch

        torch.save(train_reader(args.data, args.minutes).state_dict(), args.out)
        print(f"reader -> {args.out}")
    elif args.command == "sight":
        report = sight_report(load_reader(args.reader), reasoner_model(args.reasoner).eval(), args.per_layout,
                              args.draw_size)
        print(json.dumps(report, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    else:
        train_probe(ProbeConfig(data=args.data, out=args.out, minutes=args.minutes, eval_every_min=args.eval_every_min,
                                per_layout=args.per_layout, n_layer=args.n_layer, d_model=args.d_model,
                                ffn_hidden=args.ffn_hidden))


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.attribute_probe")
